package scenarios

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyRevisionAnnotation is the annotation each agent keeps on its Node: the highest resourceVersion
// of the Pod/Namespace/NetworkPolicy events it has programmed into the maps.
const PolicyRevisionAnnotation = "starlab.dev/policy-revision"

// DefaultProgramTimeout bounds WaitProgrammed when ctx has no earlier deadline.
const DefaultProgramTimeout = 60 * time.Second

// poll calls check every interval until it returns done, an error, or the deadline passes; on timeout
// the last "why not yet" is in the error.
func poll(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	last := "not checked yet"
	for {
		done, why, err := check(ctx)
		if err != nil && ctx.Err() == nil {
			last = err.Error()
		} else if done {
			return nil
		} else if why != "" {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not done after %s: %s", what, time.Since(start).Round(time.Millisecond), last)
		case <-time.After(interval):
		}
	}
}

// WaitProgrammed waits until every node's agent has programmed resourceVersion rv (its Node annotation
// starlab.dev/policy-revision >= rv) and the observer reports every node connected. It returns how long
// it waited. Never a fixed sleep: it polls every 100 ms up to DefaultProgramTimeout.
func (e *Env) WaitProgrammed(ctx context.Context, rv int64) (time.Duration, error) {
	start := time.Now()
	err := poll(ctx, DefaultProgramTimeout, 100*time.Millisecond, fmt.Sprintf("policy revision %d programmed on every node", rv), func(ctx context.Context) (bool, string, error) {
		nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", fmt.Errorf("list nodes: %w", err)
		}
		var behind []string
		for _, n := range nodes.Items {
			v, ok := n.Annotations[PolicyRevisionAnnotation]
			if !ok {
				behind = append(behind, n.Name+" (no "+PolicyRevisionAnnotation+" annotation: agent not running?)")
				continue
			}
			got, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				behind = append(behind, fmt.Sprintf("%s (annotation %q is not an integer)", n.Name, v))
				continue
			}
			if got < rv {
				behind = append(behind, fmt.Sprintf("%s at %d", n.Name, got))
			}
		}
		if len(behind) > 0 {
			return false, "nodes behind: " + strings.Join(behind, ", "), nil
		}
		st, err := e.ObserverStatus(ctx)
		if err != nil {
			return false, "", err
		}
		if st.Unavailable > 0 || st.Connected < len(nodes.Items) {
			var bad []string
			for _, n := range st.Nodes {
				if n.State != "connected" {
					bad = append(bad, n.Name+" "+n.State+" "+n.Error)
				}
			}
			return false, fmt.Sprintf("observer connected to %d of %d nodes: %s", st.Connected, len(nodes.Items), strings.Join(bad, "; ")), nil
		}
		return true, "", nil
	})
	return time.Since(start), err
}

// WaitDeploymentsAvailable waits until every Deployment in namespaces has all its replicas available
// and no replica of an older revision left (a rollout finished, as `kubectl rollout status` waits).
func (e *Env) WaitDeploymentsAvailable(ctx context.Context, timeout time.Duration, namespaces ...string) error {
	return poll(ctx, timeout, 250*time.Millisecond, "demo deployments available in "+strings.Join(namespaces, ", "), func(ctx context.Context) (bool, string, error) {
		var waiting []string
		for _, ns := range namespaces {
			deps, err := e.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", fmt.Errorf("list deployments in %s: %w", ns, err)
			}
			if len(deps.Items) == 0 {
				waiting = append(waiting, ns+" has no deployments")
			}
			for _, d := range deps.Items {
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				switch {
				case d.Status.AvailableReplicas < want || d.Status.UpdatedReplicas < want || d.Status.ObservedGeneration < d.Generation:
					waiting = append(waiting, fmt.Sprintf("%s/%s %d/%d available", ns, d.Name, d.Status.AvailableReplicas, want))
				case d.Status.Replicas > d.Status.UpdatedReplicas: // as kubectl rollout status: old pods still there
					waiting = append(waiting, fmt.Sprintf("%s/%s %d old replicas pending termination", ns, d.Name, d.Status.Replicas-d.Status.UpdatedReplicas))
				}
			}
		}
		return len(waiting) == 0, strings.Join(waiting, ", "), nil
	})
}
