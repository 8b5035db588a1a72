//go:build datapath

package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// TC verdicts of BPF_PROG_TEST_RUN.
const (
	tcActOK   = 0
	tcActShot = 2
)

// synPacket builds an Ethernet+IPv4+TCP SYN.
func synPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	pkt := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	th := ip[20:]
	binary.BigEndian.PutUint16(th[0:], sport)
	binary.BigEndian.PutUint16(th[2:], dport)
	th[12] = 5 << 4
	th[13] = 0x02
	return pkt
}

// probingMaps runs probe after every write the policy part makes, so a test sees each
// intermediate state the datapath sees.
type probingMaps struct {
	policyMaps
	probe func(op string)
}

func (m probingMaps) UpsertEndpoint(ifindex uint32, e maps.Endpoint) error {
	defer m.probe(fmt.Sprintf("endpoint %d", ifindex))
	return m.policyMaps.UpsertEndpoint(ifindex, e)
}

func (m probingMaps) UpsertIPCacheEntries(es []maps.IPCacheEntry) error {
	defer m.probe("ipcache upsert")
	return m.policyMaps.UpsertIPCacheEntries(es)
}

func (m probingMaps) DeleteIPCacheEntries(ps []netip.Prefix) error {
	defer m.probe("ipcache delete")
	return m.policyMaps.DeleteIPCacheEntries(ps)
}

func (m probingMaps) UpsertPolicies(es []maps.PolicyEntry) error {
	defer m.probe("policy upsert")
	return m.policyMaps.UpsertPolicies(es)
}

func (m probingMaps) DeletePolicies(ks []maps.PolicyKey) error {
	defer m.probe("policy delete")
	return m.policyMaps.DeletePolicies(ks)
}

func (m probingMaps) UpsertCIDRPolicies(es []maps.CIDRPolicyEntry) error {
	defer m.probe("cidr upsert")
	return m.policyMaps.UpsertCIDRPolicies(es)
}

func (m probingMaps) DeleteCIDRPolicies(ks []maps.CIDRPolicyKey) error {
	defer m.probe("cidr delete")
	return m.policyMaps.DeleteCIDRPolicies(ks)
}

// TestRestartedAgentKeepsNewPodDenied (issue 11 item 1): client is allowed into web (a local
// endpoint) on the real BPF maps; the agent restarts over the same pins and state directory while
// a new pod, attacker, appears whose labels a from-scratch numbering would give client's old
// identity. A real SYN through sl_to_container after every map write of the restarted agent's
// first apply: attacker -> web:8080 is dropped in every state, and client -> web:8080 passes in
// every state (no renumbering window).
func TestRestartedAgentKeepsNewPodDenied(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentid-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsNone}))

	web := netip.MustParseAddr("10.244.1.5")
	client := netip.MustParseAddr("10.244.2.9")
	attacker := netip.MustParseAddr("10.244.2.66")
	sport := uint16(40000)
	verdict := func(src netip.Addr) uint32 {
		sport++ // a new flow each time: no conntrack hit
		ret, err := dp.ToContainer().Run(&ebpf.RunOptions{Data: synPacket(src, web, sport, 8080)})
		require.NoError(t, err)
		return ret
	}
	// In BPF_PROG_TEST_RUN skb->ifindex is the loopback device: the endpoint is keyed 1.
	addWebAt1 := func(f *policyFixture) {
		ep := &Endpoint{Ifindex: 1}
		ep.ContainerID, ep.PodNamespace, ep.PodName, ep.IP, ep.MAC = "web", "shop", webPod.Name, web.String(), "02:00:00:00:00:05"
		require.NoError(t, ep.parse())
		f.eps.register(ep)
	}

	dir := t.TempDir()
	f := newPolicyFixtureIn(t, dir)
	f.p.maps = dp.Maps
	addWebAt1(f)
	require.NoError(t, f.netpols.Add(allowClient("7")))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.Equal(t, uint32(tcActOK), verdict(client), "client -> web allowed")
	require.Equal(t, uint32(tcActShot), verdict(attacker), "attacker (not in the ipcache: world) -> web denied")

	// Restart over the same pins and state directory; attacker appears meanwhile.
	f.p.maps = nil
	g := newPolicyFixtureIn(t, dir)
	var states []string
	g.p.maps = probingMaps{policyMaps: dp.Maps, probe: func(op string) {
		states = append(states, fmt.Sprintf("after %s: client %d attacker %d", op, verdict(client), verdict(attacker)))
	}}
	addWebAt1(g)
	require.NoError(t, g.netpols.Add(allowClient("7")))
	require.NoError(t, g.pods.Add(attackerPod))
	require.NoError(t, g.p.compileAndApply(t.Context()))
	require.NotEmpty(t, states, "the new pod's ipcache entry is written")
	for _, s := range states {
		assert.Regexp(t, fmt.Sprintf(`: client %d attacker %d$`, tcActOK, tcActShot), s)
	}
	t.Logf("states seen by the datapath during the restarted agent's first apply: %q", states)
	assert.Equal(t, uint32(tcActShot), verdict(attacker), "attacker -> web stays denied")
	assert.Equal(t, uint32(tcActOK), verdict(client), "client -> web still allowed")
}

// failingUpserts fails every sl_policy upsert while fail is set.
type failingUpserts struct {
	policyMaps
	fail *error
}

func (m failingUpserts) UpsertPolicies(es []maps.PolicyEntry) error {
	if *m.fail != nil {
		return *m.fail
	}
	return m.policyMaps.UpsertPolicies(es)
}

// TestPolicyWriteFailureDropsWithItsOwnReason (issue 11 item 2): a policy selecting web whose
// sl_policy write fails on the real maps leaves web deny-all, not on its old allow-all: a real SYN
// from client is dropped with POLICY_WRITE_FAILED. Once the write succeeds, client is allowed.
func TestPolicyWriteFailureDropsWithItsOwnReason(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentwf-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsNone}))

	web, client := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.9")
	sport := uint16(41000)
	verdict := func() uint32 {
		sport++
		ret, err := dp.ToContainer().Run(&ebpf.RunOptions{Data: synPacket(client, web, sport, 8080)})
		require.NoError(t, err)
		return ret
	}
	drops := func() uint64 {
		c, err := dp.Maps.ReadCounters()
		require.NoError(t, err)
		return c.Drops[uint8(flowevent.DropPolicyWriteFailed)]
	}

	var fail error
	f := newPolicyFixture(t)
	f.p.maps = failingUpserts{policyMaps: dp.Maps, fail: &fail}
	ep := &Endpoint{Ifindex: 1}
	ep.ContainerID, ep.PodNamespace, ep.PodName, ep.IP, ep.MAC = "web", "shop", webPod.Name, web.String(), "02:00:00:00:00:05"
	require.NoError(t, ep.parse())
	f.eps.register(ep)
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.Equal(t, uint32(tcActOK), verdict(), "no policy: web allows all")

	fail = errors.New("injected sl_policy write failure")
	require.NoError(t, f.netpols.Add(allowClient("8")))
	require.ErrorContains(t, f.p.compileAndApply(t.Context()), "injected")
	before := drops()
	assert.Equal(t, uint32(tcActShot), verdict(), "web is deny-all after the failed write")
	assert.Equal(t, before+1, drops(), "dropped as POLICY_WRITE_FAILED")

	fail = nil
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Equal(t, uint32(tcActOK), verdict(), "written: client -> web:8080 allowed")
	st, err := dp.Maps.LookupEndpoint(1)
	require.NoError(t, err)
	assert.Equal(t, maps.EndpointIngressEnforced, st.Flags)
}
