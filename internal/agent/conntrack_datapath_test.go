//go:build datapath

package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/cni"
)

// udpPacket builds an Ethernet+IPv4+UDP datagram with an 8-byte payload (UDP checksum 0: none).
func udpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	pkt := make([]byte, 14+20+8+8)
	binary.BigEndian.PutUint16(pkt[12:], 0x0800)
	ip := pkt[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+8+8)
	ip[8] = 64
	ip[9] = 17
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	uh := ip[20:]
	binary.BigEndian.PutUint16(uh[0:], sport)
	binary.BigEndian.PutUint16(uh[2:], dport)
	binary.BigEndian.PutUint16(uh[4:], 8+8)
	copy(uh[8:], "datagram")
	return pkt
}

// TestReusedIPDoesNotInheritConntrack (issue 11 item 4): a UDP stream from client into web is
// allowed and keeps flowing on its conntrack entry. web is deleted through the endpoint part, and a
// new pod, db, gets the same IP with a deny-all ingress policy. The stream's next datagram, the
// same 5-tuple as before, is dropped: web's conntrack went with web, so db's policy decides.
func TestReusedIPDoesNotInheritConntrack(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentct-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsNone}))

	ip, client := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.9")
	const sport, dport = 40000, 5353
	datagram := func() uint32 {
		ret, err := dp.ToContainer().Run(&ebpf.RunOptions{Data: udpPacket(client, ip, sport, dport)})
		require.NoError(t, err)
		return ret
	}
	flowKey := maps.CTKey{Src: client, Dst: ip, SrcPort: sport, DstPort: dport, Proto: maps.ProtoUDP, Scope: maps.CTIngress}

	f := newPolicyFixture(t)
	f.p.maps = dp.Maps
	f.eps.policy, f.eps.attach, f.eps.ct = f.p, &fakeAttacher{}, dp.Maps
	// In BPF_PROG_TEST_RUN skb->ifindex is the loopback device: every endpoint is at ifindex 1.
	f.eps.linkIndex = func(string) (int, error) { return 1, nil }
	addPod := func(id string, pod *corev1.Pod) {
		req := cni.EndpointRequest{ContainerID: id, HostIfName: "veth-" + id, IP: ip.String(), MAC: "02:00:00:00:00:05",
			PodNamespace: pod.Namespace, PodName: pod.Name}
		require.NoError(t, f.eps.add(t.Context(), req))
		require.NoError(t, f.p.compileAndApply(t.Context()))
	}

	addPod("web", webPod)
	require.Equal(t, uint32(tcActOK), datagram(), "no policy selects web: client -> web allowed")
	require.Equal(t, uint32(tcActOK), datagram(), "the stream keeps flowing")
	_, err = dp.Maps.LookupCT(flowKey)
	require.NoError(t, err, "the stream is tracked")

	// web goes away; db takes its IP, isolated by a deny-all ingress policy.
	f.eps.delete(t.Context(), "web")
	_, err = dp.Maps.LookupCT(flowKey)
	assert.ErrorIs(t, err, ebpf.ErrKeyNotExist, "web's conntrack is flushed with web")
	_, err = dp.Maps.LookupCT(maps.CTKey{Src: ip, Dst: client, SrcPort: dport, DstPort: sport, Proto: maps.ProtoUDP, Scope: maps.CTEgress})
	assert.ErrorIs(t, err, ebpf.ErrKeyNotExist, "and so is its reply entry")
	require.NoError(t, f.pods.Delete(webPod))
	db := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", Labels: map[string]string{"app": "db"}},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String()},
	}
	require.NoError(t, f.pods.Add(db))
	require.NoError(t, f.netpols.Add(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-deny-all", ResourceVersion: "9"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}))
	addPod("db", db)
	assert.Equal(t, uint32(tcActShot), datagram(), "the old stream's next datagram meets db's deny-all policy")
}

// TestRemovedUDPBackendIsLeft (issue 11 item 4): a UDP stream from a local pod to a Service VIP is
// DNAT'd to backend B1 and stays on it through conntrack. B1 leaves the Service's EndpointSlice
// (B2 joins): the services part flushes the stream's conntrack, so its next datagram, the same
// 5-tuple, is load balanced again and reaches B2, not the dead B1.
func TestRemovedUDPBackendIsLeft(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps and programs")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentlb-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	require.NoError(t, dp.Maps.SetConfig(maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, EventLevel: maps.EventsNone}))

	client, vip := netip.MustParseAddr("10.244.1.9"), netip.MustParseAddr("10.96.0.50")
	// In BPF_PROG_TEST_RUN skb->ifindex is the loopback device: the client endpoint is at ifindex 1
	// (no policy flags: it may send anywhere).
	require.NoError(t, dp.Maps.UpsertEndpoint(1, maps.Endpoint{IP: client, Identity: maps.IdentityFirstPod, MAC: []byte{2, 0, 0, 0, 0, 9}}))
	const sport = 40000
	datagram := func() netip.Addr {
		ret, err := dp.FromContainer().Run(&ebpf.RunOptions{Data: udpPacket(client, vip, sport, 53)})
		require.NoError(t, err)
		require.Equal(t, uint32(tcActOK), ret)
		e, err := dp.Maps.LookupCT(maps.CTKey{Src: client, Dst: vip, SrcPort: sport, DstPort: 53, Proto: maps.ProtoUDP, Scope: maps.CTEgress})
		require.NoError(t, err)
		return e.NatAddr
	}

	s := newServices("n1", slog.Default(), nil)
	s.store, s.ct = mapWriter{dp.Maps}, dp.Maps
	svc := webService(func(sv *corev1.Service) {
		sv.Spec.Type = corev1.ServiceTypeClusterIP
		sv.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
	})
	slice := func(ip string) *discoveryv1.EndpointSlice {
		sl := webSlice(ip)
		sl.Ports = []discoveryv1.EndpointPort{{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)}}
		return sl
	}
	s.onService(svc, false)
	s.onSlice(slice("10.244.2.11"), false)
	require.Equal(t, "10.244.2.11", datagram().String(), "the stream goes to B1")
	require.Equal(t, "10.244.2.11", datagram().String(), "and stays there")

	s.onSlice(slice("10.244.2.12"), false) // B1 gone, B2 in
	assert.Equal(t, "10.244.2.12", datagram().String(), "the stream's next datagram reaches B2")
}
