package lab

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
)

func TestDeletedResourceVersion(t *testing.T) {
	np := func(rv string) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", ResourceVersion: rv}}
	}
	u := &unstructured.Unstructured{}
	u.SetResourceVersion("77")
	tests := []struct {
		name   string
		events []watch.Event
		close  bool
		want   int64
		err    string
	}{
		{name: "typed object after a modification", events: []watch.Event{{Type: watch.Modified, Object: np("41")}, {Type: watch.Deleted, Object: np("42")}}, want: 42},
		{name: "unstructured object", events: []watch.Event{{Type: watch.Deleted, Object: u}}, want: 77},
		{name: "bad resourceVersion", events: []watch.Event{{Type: watch.Deleted, Object: np("x")}}, err: `resourceVersion "x" of deleted networkpolicy p`},
		{name: "watch ends first", close: true, err: "ended before its DELETED event"},
		{name: "context done", err: "wait for the deletion of networkpolicy p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := watch.NewFakeWithChanSize(len(tt.events), false)
			for _, ev := range tt.events {
				w.Action(ev.Type, ev.Object)
			}
			if tt.close {
				w.Stop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			got, err := DeletedResourceVersion(ctx, w, "networkpolicy p")
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
