//go:build e2e

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/internal/kubeready"
)

// BenchmarkAgentRestartToProgrammed measures, on the lab TestMain set up, how long a restarted agent
// takes from its container's start to its maps fully programmed, on every node: each iteration
// deletes every agent pod at once (as `kubectl delete pod` or a rolling update does) and, per node,
// takes the time from the new agent container's start (containerd's startedAt, read with crictl in
// the kind node: the host's clock) to the first answer of the new agent's GET /v1/status that shows
// it ready with every endpoint it had before restored, as many service frontends as before, and a
// policy revision at least the one programmed before (the revision is stored only after the services
// were written and the initial policy applied). The status is polled every 10 ms from the moment
// the pods are deleted; answers received before the new container started are the old agent's and
// are ignored. It reports the nearest-rank p50 and the max over all nodes and iterations, also for
// the first answer of the new agent's API (datapath loaded and endpoints restored).
//
//	STARLAB_LAB=e2e11 go test -tags e2e -run '^$' -bench AgentRestartToProgrammed -benchtime 5x ./scenarios
func BenchmarkAgentRestartToProgrammed(b *testing.B) {
	if e2e.env == nil {
		b.Fatal("the lab was not set up (see TestMain's log)")
	}
	e := e2e.env
	ctx := b.Context()
	if _, err := e.applyWorkloads(ctx, "hardening.yaml"); err != nil {
		b.Fatal(err)
	}
	if err := e.WaitDeploymentsAvailable(ctx, 3*time.Minute, hardNamespace); err != nil {
		b.Fatal(err)
	}
	var programmed, apiUp []time.Duration
	b.ResetTimer()
	for b.Loop() {
		res, err := restartAgentsMeasured(ctx, e)
		if err != nil {
			b.Fatal(err)
		}
		for node, r := range res {
			b.Logf("%s: API up %s, fully programmed %s after the container started", node, r.apiUp.Round(time.Millisecond), r.programmed.Round(time.Millisecond))
			programmed = append(programmed, r.programmed)
			apiUp = append(apiUp, r.apiUp)
		}
	}
	b.StopTimer()
	p, a := SummarizeLatencies(programmed), SummarizeLatencies(apiUp)
	b.ReportMetric(float64(p.P50.Microseconds())/1000, "programmed-p50-ms")
	b.ReportMetric(float64(p.Max.Microseconds())/1000, "programmed-max-ms")
	b.ReportMetric(float64(a.P50.Microseconds())/1000, "api-p50-ms")
	b.ReportMetric(float64(a.Max.Microseconds())/1000, "api-max-ms")
	b.Logf("fully programmed: n=%d min=%s p50=%s max=%s; API up: p50=%s max=%s", p.N, p.Min, p.P50, p.Max, a.P50, a.Max)
}

// restartResult is one node's measurement.
type restartResult struct {
	apiUp, programmed time.Duration // from the new agent container's start
}

// statusSample is one answer of an agent's status API and when it arrived.
type statusSample struct {
	at time.Time
	st agentapi.Status
}

// restartAgentsMeasured deletes every agent pod and measures each node's new agent (see
// BenchmarkAgentRestartToProgrammed).
func restartAgentsMeasured(ctx context.Context, e *Env) (map[string]restartResult, error) {
	ips, err := e.nodeIPs(ctx)
	if err != nil {
		return nil, err
	}
	before := map[string]agentapi.Status{}
	for node, ip := range ips {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := agentClient(ip).Status(sctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of the agent on %s before the restart: %w", node, err)
		}
		before[node] = st
	}
	pods := e.Client.CoreV1().Pods(helmrelease.DefaultNamespace)
	old, err := pods.List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
	if err != nil {
		return nil, fmt.Errorf("list agent pods: %w", err)
	}
	oldUIDs := map[types.UID]bool{}
	for _, p := range old.Items {
		oldUIDs[p.UID] = true
	}

	pctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	samples := map[string][]statusSample{}
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }() // the pollers end before the samples are dropped
	for node, ip := range ips {
		wg.Go(func() {
			c := agentClient(ip)
			for pctx.Err() == nil {
				sctx, cancel := context.WithTimeout(pctx, time.Second)
				st, err := c.Status(sctx)
				cancel()
				if err == nil {
					mu.Lock()
					samples[node] = append(samples[node], statusSample{at: time.Now(), st: st})
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	for _, p := range old.Items {
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			return nil, fmt.Errorf("delete agent pod %s: %w", p.Name, err)
		}
	}

	started := map[string]time.Time{}
	out := map[string]restartResult{}
	err = poll(ctx, 3*time.Minute, 50*time.Millisecond, "every new agent fully programmed", func(ctx context.Context) (bool, string, error) {
		if len(started) < len(ips) {
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
			if err != nil {
				return false, "", err
			}
			for _, p := range list.Items {
				if oldUIDs[p.UID] || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].ContainerID == "" {
					continue
				}
				if _, ok := started[p.Spec.NodeName]; ok || p.Status.ContainerStatuses[0].State.Running == nil {
					continue
				}
				at, err := containerStartedAt(ctx, p.Spec.NodeName, p.Status.ContainerStatuses[0].ContainerID)
				if err != nil {
					return false, "", err
				}
				started[p.Spec.NodeName] = at
			}
		}
		mu.Lock()
		defer mu.Unlock()
		var waiting []string
		for node := range ips {
			if _, done := out[node]; done {
				continue
			}
			at, ok := started[node]
			if !ok {
				waiting = append(waiting, node+" (new agent not started)")
				continue
			}
			var r restartResult
			for _, s := range samples[node] {
				if !s.at.After(at) {
					continue // the old agent's answer
				}
				if r.apiUp == 0 {
					r.apiUp = s.at.Sub(at)
				}
				if fullyProgrammed(s.st, before[node]) {
					r.programmed = s.at.Sub(at)
					break
				}
			}
			if r.programmed == 0 {
				waiting = append(waiting, node)
				continue
			}
			out[node] = r
		}
		return len(waiting) == 0, "waiting for " + strings.Join(waiting, ", "), nil
	})
	if err != nil {
		return nil, err
	}
	// Every new agent Ready before the next iteration (the kubelet's probe, the node's Ready).
	return out, poll(ctx, 2*time.Minute, 250*time.Millisecond, "new agent pods ready on every node", func(ctx context.Context) (bool, string, error) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for _, p := range list.Items {
			if !oldUIDs[p.UID] && p.DeletionTimestamp == nil && kubeready.Pod(&p) {
				ready++
			}
		}
		return ready == len(old.Items), fmt.Sprintf("%d/%d new agents ready", ready, len(old.Items)), nil
	})
}

// fullyProgrammed reports whether the new agent's status st shows the state the old one had.
func fullyProgrammed(st, before agentapi.Status) bool {
	return st.Ready && len(st.Endpoints) == len(before.Endpoints) && st.Services == before.Services &&
		st.PolicyRevision >= before.PolicyRevision && st.PolicyRevision > 0
}

// containerStartedAt reads when a container started from containerd in the kind node (nanoseconds;
// the API's startedAt has whole seconds).
func containerStartedAt(ctx context.Context, node, containerID string) (time.Time, error) {
	id := containerID
	if _, after, ok := strings.Cut(containerID, "://"); ok {
		id = after
	}
	out, err := nodeExec(ctx, node, "crictl inspect "+id)
	if err != nil {
		return time.Time{}, err
	}
	var v struct {
		Status struct {
			StartedAt time.Time `json:"startedAt"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return time.Time{}, fmt.Errorf("crictl inspect %s on %s: %w", id, node, err)
	}
	if v.Status.StartedAt.IsZero() {
		return time.Time{}, fmt.Errorf("crictl inspect %s on %s: no status.startedAt", id, node)
	}
	return v.Status.StartedAt, nil
}
