package conformance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/demo"
)

// fakeProber answers from a function of (source, target); unit tests only.
type fakeProber struct {
	mu      sync.Mutex
	batches map[string]int
	answer  func(from string, t demo.BatchTarget, call int) bool
}

func (f *fakeProber) Batch(_ context.Context, from string, targets []demo.BatchTarget, _ time.Duration) ([]demo.ProbeResult, error) {
	f.mu.Lock()
	f.batches[from]++
	call := f.batches[from]
	f.mu.Unlock()
	out := make([]demo.ProbeResult, len(targets))
	for i, t := range targets {
		out[i] = demo.ProbeResult{Target: t.Target, Protocol: t.Protocol, Reachable: f.answer(from, t, call), LocalAddr: "0.0.0.0:1234"}
	}
	return out, nil
}

func TestRunProbesAndReconfirm(t *testing.T) {
	u := NewUniverse()
	target := u.IPs["x/a"].String() + ":80"
	fp := &fakeProber{batches: map[string]int{}, answer: func(from string, tg demo.BatchTarget, call int) bool {
		// y/b's first TCP connection to x/a:80 is lost; the second one works.
		return !(from == "y/b" && tg.Target == target && tg.Protocol == "tcp" && call == 1)
	}}
	probes := MatrixProbes(u, AllModes())
	require.Len(t, probes, 2*72*4)
	_, err := RunProbes(context.Background(), fp, u, probes, time.Second)
	require.NoError(t, err)
	assert.Len(t, fp.batches, 9, "one batch per source pod")
	o, err := u.Oracle(u.StateOf(Step{}))
	require.NoError(t, err)
	n, err := Reconfirm(context.Background(), fp, probes, o, time.Second)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	for _, p := range probes {
		assert.True(t, p.Reachable, "%s -> %s %s/%d", p.From, p.To, p.Protocol, p.Port)
		if p.Mode == ModePodIP && p.From == "y/b" && p.To == "x/a" && p.Port == 80 && p.Protocol == "TCP" {
			assert.True(t, p.Reconfirmed)
			assert.Equal(t, u.IPs["y/b"].String(), p.SrcIP)
		}
	}
}

func TestServiceNameModeDialsNamesAndAllowsDNS(t *testing.T) {
	u := NewUniverse()
	var targets []string
	var mu sync.Mutex
	fp := &fakeProber{batches: map[string]int{}, answer: func(_ string, tg demo.BatchTarget, _ int) bool {
		mu.Lock()
		targets = append(targets, tg.Target)
		mu.Unlock()
		return true
	}}
	probes := MatrixProbes(u, []string{ModeServiceName})
	_, err := RunProbes(context.Background(), fp, u, probes, time.Second)
	require.NoError(t, err)
	assert.Contains(t, targets, "s-b.y.svc.cluster.local.:80")
	for _, p := range probes {
		if p.From == "x/a" && p.To == "y/b" && p.Port == 80 && p.Protocol == "UDP" {
			assert.Equal(t, u.ServiceIPs["y/b"].String()+":80", p.Dst, "flows are matched on the ClusterIP the name resolves to")
			assert.Equal(t, "s-b.y.svc.cluster.local.:80", p.Target)
		}
	}

	// Every policy isolating egress gets the DNS rule; the cells the suite probes do not change.
	for _, c := range Generate(u) {
		for _, s := range c.Steps {
			st := u.StateOf(s)
			dns := WithDNSEgress(st)
			o1, err := u.Oracle(st)
			require.NoError(t, err)
			o2, err := u.Oracle(dns)
			require.NoError(t, err)
			for name, np := range dns.Policies {
				if isolatesEgress(st.Policies[name]) {
					require.NotEmpty(t, np.Spec.Egress, "%s %s", c.Name, name)
					last := np.Spec.Egress[len(np.Spec.Egress)-1]
					assert.Equal(t, int32(53), last.Ports[0].Port.IntVal)
				} else {
					assert.Same(t, st.Policies[name], np)
				}
			}
			for _, from := range u.Pods() {
				for _, to := range u.Pods() {
					for _, col := range Columns() {
						v1, err := expect(o1, ModeServiceName, from, to, col)
						require.NoError(t, err)
						v2, err := expect(o2, ModeServiceName, from, to, col)
						require.NoError(t, err)
						require.Equal(t, v1.Allowed, v2.Allowed, "%s step %s: %s -> %s %s", c.Name, s.Name, from, to, col)
					}
				}
			}
		}
	}
}
