package lab

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
)

// DeletedResourceVersion waits on w (a watch of one object, named what in errors) for its DELETED
// event and returns the resourceVersion that event carries: hand it to the agents' policy-revision
// wait to know every node programmed the deletion. It gives up when ctx is done.
func DeletedResourceVersion(ctx context.Context, w watch.Interface, what string) (int64, error) {
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch of %s ended before its DELETED event", what)
			}
			if ev.Type != watch.Deleted {
				continue
			}
			obj, err := meta.Accessor(ev.Object)
			if err != nil {
				return 0, fmt.Errorf("DELETED event of %s carries %T: %w", what, ev.Object, err)
			}
			rv, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("resourceVersion %q of deleted %s: %w", obj.GetResourceVersion(), what, err)
			}
			return rv, nil
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for the deletion of %s: %w", what, ctx.Err())
		}
	}
}
