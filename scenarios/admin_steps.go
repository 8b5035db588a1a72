package scenarios

import (
	"context"
	"embed"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// adminPolicies are the ClusterNetworkPolicies features/admin-policy.feature layers over the stars demo.
//
//go:embed testdata/admin-policy/*.yaml
var adminPolicies embed.FS

// adminSteps are the steps of features/admin-policy.feature, one value per scenario.
type adminSteps struct {
	w *World
	e *Env
	// applied are the ClusterNetworkPolicy files applied in this scenario (deleted afterwards).
	applied []string
}

func newAdminSteps(w *World) *adminSteps { return &adminSteps{w: w, e: w.Env} }

func (s *adminSteps) steps() []step {
	return []step{
		{`^I apply the cluster network policy "([^"]*)"$`, s.applyClusterPolicy},
		{`^"([^"]*)" connecting to "([^"]*)" is (FORWARDED|DROPPED) by (ClusterNetworkPolicy|NetworkPolicy) "([^"]*)" in the (Admin|NetworkPolicy|Baseline) tier( after an Admin Pass by "[^"]*")?$`, s.connectionDecidedBy},
	}
}

func adminPolicyFile(name string) ([]byte, error) {
	data, err := adminPolicies.ReadFile("testdata/admin-policy/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("unknown cluster network policy %q (scenarios/testdata/admin-policy/<name>.yaml): %w", name, err)
	}
	return data, nil
}

// applyClusterPolicy applies one ClusterNetworkPolicy of scenarios/testdata/admin-policy and waits until
// every node has programmed it; the scenario's cleanup deletes it.
func (s *adminSteps) applyClusterPolicy(ctx context.Context, name string) error {
	t := godog.T(ctx)
	data, err := adminPolicyFile(name)
	require.NoError(t, err)
	if len(s.applied) == 0 {
		s.w.Cleanup(s.deleteApplied)
	}
	s.applied = append(s.applied, name)
	rv, err := s.e.Apply(ctx, data)
	require.NoError(t, err, "apply ClusterNetworkPolicy %s (is the CRD installed? the chart installs it)", name)
	waited, err := s.e.WaitProgrammed(ctx, rv)
	require.NoError(t, err, "ClusterNetworkPolicy %s (resourceVersion %d) not programmed on every node", name, rv)
	godog.Logf(ctx, "cluster network policy %s (resourceVersion %d) programmed on every node %s after apply", name, rv, waited.Round(time.Millisecond))
	return nil
}

func (s *adminSteps) deleteApplied(ctx context.Context) error {
	var rv int64
	for _, name := range s.applied {
		data, err := adminPolicyFile(name)
		if err != nil {
			return err
		}
		r, err := s.e.Delete(ctx, data)
		if err != nil {
			return err
		}
		rv = max(rv, r)
	}
	if rv == 0 {
		return nil
	}
	_, err := s.e.WaitProgrammed(ctx, rv)
	return err
}

// connectionDecidedBy connects from a stars workload to another's Service once and finds the
// connection's ingress flow at the observer: its verdict, and the policy and tier that decided it among
// allowed_by (FORWARDED) or denied_by (DROPPED), and the Admin Pass listed before it when one is named.
// A ClusterNetworkPolicy is named by its name, a NetworkPolicy by namespace/name.
func (s *adminSteps) connectionDecidedBy(ctx context.Context, from, to, verdict, kind, policy, tier, passClause string) error {
	t := godog.T(ctx)
	fw, err := lookupStarsWorkload(from)
	require.NoError(t, err)
	tw, err := lookupStarsWorkload(to)
	require.NoError(t, err)
	start := time.Now()
	res, err := s.e.Probe(ctx, fw.Ref, tw.Target, "tcp")
	require.NoError(t, err)
	require.Equal(t, verdict == "FORWARDED", res.Reachable, "%s -> %s: connection reachable=%v (%s)", from, to, res.Reachable, res.Error)
	_, portStr, err := net.SplitHostPort(res.LocalAddr)
	require.NoError(t, err, "the probe reported no local address (%q)", res.LocalAddr)
	port, err := strconv.ParseUint(portStr, 10, 16)
	require.NoError(t, err)
	want := flow.Policy{Kind: kind, Name: policy, Tier: tier}
	if kind == flow.PolicyKindNetworkPolicy {
		want.Namespace, want.Name, _ = strings.Cut(policy, "/")
	}
	pass := ""
	if passClause != "" {
		_, rest, _ := strings.Cut(passClause, `"`)
		pass = strings.TrimSuffix(rest, `"`)
	}
	q := flow.Query{Since: start.Add(-time.Second), Allow: []flow.Filter{{SourceNamespace: []string{fw.Ref.Namespace}, SourcePort: []uint16{uint16(port)}}}}
	var seen []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		fl, err := s.e.Observe(ctx, q)
		require.NoError(t, err)
		_ = s.e.AppendFlows(fl)
		seen = seen[:0]
		for _, f := range fl {
			seen = append(seen, FormatFlow(f))
			if f.IsReply || string(f.Verdict) != verdict || f.TrafficDirection != flow.DirectionIngress {
				continue
			}
			by := f.AllowedBy
			if verdict == "DROPPED" {
				by = f.DeniedBy
			}
			if decidedBy(by, want, pass) {
				godog.Logf(ctx, "%s -> %s %s by %s %s (%s tier): %s", from, to, verdict, kind, policy, tier, FormatFlow(f))
				return nil
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	require.Failf(t, "no deciding flow", "no %s INGRESS flow of the connection %s -> %s (source port %d) decided by %s %q in the %s tier%s; the observer has:\n%s",
		verdict, from, to, port, kind, policy, tier, passClause, strings.Join(seen, "\n"))
	return nil
}

// decidedBy reports whether the flow's policies name want (kind, namespace, name, tier) as the deciding
// one, not as a Pass, preceded by an Admin Pass of the ClusterNetworkPolicy pass when pass is not "".
func decidedBy(by []flow.Policy, want flow.Policy, pass string) bool {
	passed := pass == ""
	for _, p := range by {
		if p.Action == flow.ActionPass {
			passed = passed || (p.Kind == flow.PolicyKindClusterNetworkPolicy && p.Name == pass && p.Tier == flow.TierAdmin)
			continue
		}
		if want.SamePolicy(p) && p.Tier == want.Tier {
			return passed
		}
	}
	return false
}
