//go:build datapath

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/flow"
)

// Issue 15 through the agent and the real datapath: ClusterNetworkPolicies and NetworkPolicies
// compiled by the policy part into the real BPF maps, packets run through the real
// sl_to_container (BPF_PROG_TEST_RUN), the flow events read from the real ring buffer and
// attributed as the agent does. An Admin Deny beats the NetworkPolicy allow; an Admin Pass hands
// the decision back to the NetworkPolicy; a Baseline Deny applies when no NetworkPolicy selects
// the pod; and a policy change that denies cuts the established flow (issue 11 revisions).
func TestAgentClusterPolicyTiersInDatapath(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentcnp-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsFlows}))

	rd, err := flowevent.NewReader(dp.Maps.Events, flowevent.ReaderOptions{Counters: dp.Maps.Counters})
	require.NoError(t, err)
	var mu sync.Mutex
	var events []flowevent.Event
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = rd.Run(ctx, func(e *flowevent.Event) { mu.Lock(); events = append(events, *e); mu.Unlock() }) }()
	t.Cleanup(func() { _ = rd.Close() })

	web := netip.MustParseAddr("10.244.1.5")
	client := netip.MustParseAddr("10.244.2.9")
	sport := uint16(41000)
	// packet runs one client -> web:8080 packet (a new source port per SYN) and returns the verdict
	// and, for a SYN, the flow event it produced, attributed.
	packet := func(flags byte) (uint32, *flowevent.Event) {
		if flags == 0x02 {
			sport++
		}
		mu.Lock()
		n := len(events)
		mu.Unlock()
		pkt := synPacket(client, web, sport, 8080)
		pkt[14+20+13] = flags
		ret, err := dp.ToContainer().Run(&ebpf.RunOptions{Data: pkt})
		require.NoError(t, err)
		if flags != 0x02 {
			return ret, nil
		}
		var ev *flowevent.Event
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for i := n; i < len(events); i++ {
				if events[i].SrcPort == sport {
					ev = &events[i]
					return true
				}
			}
			return false
		}, 5*time.Second, 10*time.Millisecond, "flow event of the SYN from port %d", sport)
		return ret, ev
	}

	f := newPolicyFixtureIn(t, t.TempDir())
	f.p.maps = dp.Maps
	ep := &Endpoint{Ifindex: 1} // BPF_PROG_TEST_RUN: skb->ifindex is the loopback device
	ep.ContainerID, ep.PodNamespace, ep.PodName, ep.IP, ep.MAC = "web", "shop", webPod.Name, web.String(), "02:00:00:00:00:05"
	require.NoError(t, ep.parse())
	f.eps.register(ep)
	attributed := func(ev *flowevent.Event) (allowed, denied []flow.Policy) {
		return attribute(f.p.PolicyResult(), ev)
	}
	apply := func() { require.NoError(t, f.p.compileAndApply(t.Context())) }

	// NetworkPolicy allows client -> web:8080; an Admin rule denies it.
	require.NoError(t, f.netpols.Add(allowClient("7")))
	guard := adminPolicy("guard", 10, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny)
	require.NoError(t, f.cnps.Add(guard))
	apply()
	ret, ev := packet(0x02)
	assert.Equal(t, uint32(tcActShot), ret, "Admin Deny beats the NetworkPolicy allow")
	assert.Equal(t, flowevent.VerdictDropped, ev.Verdict)
	assert.Equal(t, flowevent.DropPolicyDenied, ev.DropReason)
	_, denied := attributed(ev)
	assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "guard", Tier: flow.TierAdmin, Rule: "from-shop", Action: flow.ActionDeny}}, denied)

	// The Admin rule passes: the NetworkPolicy decides (allow), the Pass is named first.
	pass := adminPolicy("guard", 10, cnpv1beta1.ClusterNetworkPolicyRuleActionPass)
	pass.ResourceVersion = "2"
	require.NoError(t, f.cnps.Update(pass))
	apply()
	ret, ev = packet(0x02)
	assert.Equal(t, uint32(tcActOK), ret, "Admin Pass hands the decision to the NetworkPolicy, which allows")
	allowed, _ := attributed(ev)
	require.Len(t, allowed, 2)
	assert.Equal(t, flow.Policy{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "guard", Tier: flow.TierAdmin, Rule: "from-shop", Action: flow.ActionPass}, allowed[0])
	assert.Equal(t, "allow-client", allowed[1].Name)
	assert.Equal(t, flow.TierNetworkPolicy, allowed[1].Tier)
	ret, _ = packet(0x10)
	require.Equal(t, uint32(tcActOK), ret, "established")

	// Back to Deny: the established flow is cut on its next packet.
	guard.ResourceVersion = "3"
	require.NoError(t, f.cnps.Update(guard))
	apply()
	ret, _ = packet(0x10)
	assert.Equal(t, uint32(tcActShot), ret, "a new Admin Deny cuts the established flow")

	// No NetworkPolicy selects web; a Baseline rule denies all ingress from shop.
	require.NoError(t, f.netpols.Delete(allowClient("7")))
	require.NoError(t, f.cnps.Delete(guard))
	base := adminPolicy("baseline-default", 0, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny)
	base.Spec.Tier = cnpv1beta1.BaselineTier
	base.Spec.Ingress[0].Name = ""
	require.NoError(t, f.cnps.Add(base))
	apply()
	ret, ev = packet(0x02)
	assert.Equal(t, uint32(tcActShot), ret, "Baseline Deny when no NetworkPolicy selects")
	_, denied = attributed(ev)
	assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "baseline-default", Tier: flow.TierBaseline, Rule: "0", Action: flow.ActionDeny}}, denied)

	// A NetworkPolicy selecting web again: Baseline is not consulted, the NetworkPolicy allows.
	np := allowClient("8")
	np.ObjectMeta = metav1.ObjectMeta{Namespace: "shop", Name: "allow-client", ResourceVersion: "8"}
	require.NoError(t, f.netpols.Add(np))
	apply()
	ret, _ = packet(0x02)
	assert.Equal(t, uint32(tcActOK), ret, "Baseline is not consulted when a NetworkPolicy selects")
}
