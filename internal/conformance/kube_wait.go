package conformance

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PolicyRevisionAnnotation is the annotation every Starlab agent keeps on its Node: the highest
// resourceVersion of the Pod/Namespace/NetworkPolicy events it has programmed.
const PolicyRevisionAnnotation = "starlab.dev/policy-revision"

// HasRevisionAnnotation reports whether every node carries the Starlab revision annotation (so
// WaitProgrammed can be used; other CNIs are waited for by matrix stability).
func HasRevisionAnnotation(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		if _, ok := n.Annotations[PolicyRevisionAnnotation]; !ok {
			return false, nil
		}
	}
	return len(nodes.Items) > 0, nil
}

// WaitProgrammed waits until every node's annotation reaches rv, and returns how long it took.
func WaitProgrammed(ctx context.Context, cs kubernetes.Interface, rv int64, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := pollUntil(ctx, timeout, 100*time.Millisecond, fmt.Sprintf("policy revision %d programmed on every node", rv), func(ctx context.Context) (bool, string, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", fmt.Errorf("list nodes: %w", err)
		}
		var behind []string
		for _, n := range nodes.Items {
			v := n.Annotations[PolicyRevisionAnnotation]
			got, err := strconv.ParseInt(v, 10, 64)
			if err != nil || got < rv {
				behind = append(behind, fmt.Sprintf("%s at %q", n.Name, v))
			}
		}
		return len(behind) == 0, "nodes behind: " + strings.Join(behind, ", "), nil
	})
	return time.Since(start), err
}
