//go:build datapath

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// Issue 11 item 3 through the agent: a policy change that removes the allow of an established
// flow gives the endpoint a new policy revision, and the flow's next packet through
// sl_to_container (real program, BPF_PROG_TEST_RUN) is dropped; a change that keeps the allow
// keeps the flow.
func TestAgentPolicyChangeCutsEstablishedFlow(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentrev-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsNone}))

	web := netip.MustParseAddr("10.244.1.5")
	client := netip.MustParseAddr("10.244.2.9")
	packet := func(flags byte) uint32 {
		pkt := synPacket(client, web, 40000, 8080)
		pkt[14+20+13] = flags
		ret, err := dp.ToContainer().Run(&ebpf.RunOptions{Data: pkt})
		require.NoError(t, err)
		return ret
	}
	f := newPolicyFixtureIn(t, t.TempDir())
	f.p.maps = dp.Maps
	// In BPF_PROG_TEST_RUN skb->ifindex is the loopback device: the endpoint is keyed 1.
	ep := &Endpoint{Ifindex: 1}
	ep.ContainerID, ep.PodNamespace, ep.PodName, ep.IP, ep.MAC = "web", "shop", webPod.Name, web.String(), "02:00:00:00:00:05"
	require.NoError(t, ep.parse())
	f.eps.register(ep)
	require.NoError(t, f.netpols.Add(allowClient("7")))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.Equal(t, uint32(tcActOK), packet(0x02), "SYN client -> web:8080 allowed")
	require.Equal(t, uint32(tcActOK), packet(0x10), "established")

	// the allow gains a port: still allowed, the flow goes on
	require.NoError(t, f.netpols.Update(allowClientTwoPorts("8")))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.Equal(t, uint32(tcActOK), packet(0x10), "still allowed after a policy change")

	// the allow moves to another port: the established flow is cut
	np := allowClient("9")
	p9090 := intstr.FromInt32(9090)
	np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: &p9090}}
	require.NoError(t, f.netpols.Update(np))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.Equal(t, uint32(tcActShot), packet(0x10), "the established flow is denied by the new policy")
}
