package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
)

func webService(mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.50",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func webSlice(ips ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: ips}},
	}
}

var (
	webClusterIP = lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.50"), Port: 80, Proto: lb.ProtoTCP, Scope: lb.ScopeClusterIP}
	webNodePort  = lb.ServiceKey{VIP: netip.IPv4Unspecified(), Port: 30080, Proto: lb.ProtoTCP, Scope: lb.ScopeNodePort}
)

func newTestServices(nodeIP string) (*services, *fakeFrontends) {
	store := &fakeFrontends{front: map[lb.ServiceKey]lb.ServiceValue{}}
	s := newServices("n1", slog.Default(), func(ip netip.Addr) bool { return ip.String() == nodeIP })
	s.store = store
	return s, store
}

func TestServicesPartWritesFrontends(t *testing.T) {
	s, store := newTestServices("172.18.0.2")
	s.onSlice(webSlice("10.244.1.5"), false) // before its Service: kept
	assert.Empty(t, store.log)
	s.onService(webService(), false)
	assert.ElementsMatch(t, []string{"write " + webClusterIP.String() + " backends 1", "write " + webNodePort.String() + " backends 1"}, store.log)
	assert.Equal(t, 2, s.len())

	ns, name, ok := s.ServiceByAddr(netip.MustParseAddr("10.96.0.50"), 80, lb.ProtoTCP)
	require.True(t, ok)
	assert.Equal(t, "shop/web", ns+"/"+name)
	_, name, ok = s.ServiceByAddr(netip.MustParseAddr("172.18.0.2"), 30080, lb.ProtoTCP)
	assert.True(t, ok, "a NodePort on a node address")
	assert.Equal(t, "web", name)
	_, _, ok = s.ServiceByAddr(netip.MustParseAddr("172.18.0.9"), 30080, lb.ProtoTCP)
	assert.False(t, ok, "not a node address")

	store.log = nil
	s.onSlice(webSlice("10.244.1.5", "10.244.2.9"), false)
	assert.ElementsMatch(t, []string{"write " + webClusterIP.String() + " backends 2", "write " + webNodePort.String() + " backends 2"}, store.log)

	store.log = nil
	s.onService(cache.DeletedFinalStateUnknown{Obj: webService()}, true)
	assert.ElementsMatch(t, []string{"delete " + webClusterIP.String(), "delete " + webNodePort.String()}, store.log)
	assert.Zero(t, s.len())
}

func TestServicesPartSeedPruneAndEvents(t *testing.T) {
	s, store := newTestServices("")
	stale := lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.99"), Port: 80, Proto: lb.ProtoTCP}
	store.front[webClusterIP] = lb.ServiceValue{ID: 7}
	store.front[stale] = lb.ServiceValue{ID: 9}
	require.NoError(t, s.seed())
	s.onService(webService(func(sv *corev1.Service) { sv.Spec.Type = corev1.ServiceTypeClusterIP }), false)
	assert.Equal(t, uint32(7), store.front[webClusterIP].ID, "a restarted agent keeps the service ID")

	store.log = nil
	require.NoError(t, s.pruneStale())
	assert.Equal(t, []string{"delete " + stale.String()}, store.log)

	events := record.NewFakeRecorder(4)
	s.recorder = events
	s.onService(webService(func(sv *corev1.Service) { sv.Name = "clash"; sv.Spec.Type = corev1.ServiceTypeClusterIP }), false)
	require.Len(t, events.Events, 1)
	assert.Contains(t, <-events.Events, "FrontendConflict")

	store.fail = webClusterIP
	s.onSlice(webSlice("10.244.1.5"), false) // a map error is logged; the next event retries
	assert.Equal(t, uint16(0), store.front[webClusterIP].Count)
}

// TestServicesPartRestartWritesNoFrontendWithoutBackends: a restarted agent's informers deliver a
// Service before its EndpointSlice. The pinned maps already hold the frontend with its backend;
// written at once, the Service alone would become a frontend without backends (new connections
// refused) until the slice followed. Held until the informers synced, the maps only ever see the
// whole frontend.
func TestServicesPartRestartWritesNoFrontendWithoutBackends(t *testing.T) {
	s, store := newTestServices("")
	store.front[webClusterIP] = lb.ServiceValue{ID: 7, Count: 1}
	store.front[webNodePort] = lb.ServiceValue{ID: 8, Count: 1}
	require.NoError(t, s.seed())
	s.hold()
	s.onService(webService(), false)
	s.onSlice(webSlice("10.244.1.5"), false)
	for _, l := range store.log {
		assert.NotContains(t, l, "backends 0", "a frontend was written without backends while the informers synced: %q", store.log)
	}
	s.release()
	assert.ElementsMatch(t, []string{"write " + webClusterIP.String() + " backends 1", "write " + webNodePort.String() + " backends 1"}, store.log)
	assert.Equal(t, lb.ServiceValue{ID: 7, Count: 1}, store.front[webClusterIP], "same ID, same backends")

	store.log = nil
	s.onSlice(webSlice("10.244.1.5", "10.244.2.9"), false) // after release, events write at once
	assert.ElementsMatch(t, []string{"write " + webClusterIP.String() + " backends 2", "write " + webNodePort.String() + " backends 2"}, store.log)
}

// TestServicesPartFlushesRemovedUDPBackends (issue 11 item 4): when a UDP backend leaves a
// Service, the conntrack entries of the flows load balanced to it go, so the client's next
// datagram picks a live backend; the remaining backend's flows, and TCP flows, stay.
func TestServicesPartFlushesRemovedUDPBackends(t *testing.T) {
	s, store := newTestServices("")
	ct := &fakeConntrack{entries: map[maps.CTKey]maps.CTEntry{}}
	s.ct = ct
	dnsSvc := webService(func(sv *corev1.Service) {
		sv.Spec.Type = corev1.ServiceTypeClusterIP
		sv.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "dnstcp", Port: 53, Protocol: corev1.ProtocolTCP}}
	})
	dnsSlice := func(ips ...string) *discoveryv1.EndpointSlice {
		sl := webSlice(ips...)
		sl.Ports = []discoveryv1.EndpointPort{
			{Name: ptr("dns"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolUDP)},
			{Name: ptr("dnstcp"), Port: ptr(int32(5353)), Protocol: ptr(corev1.ProtocolTCP)},
		}
		return sl
	}
	s.onService(dnsSvc, false)
	s.onSlice(dnsSlice("10.244.1.5", "10.244.1.6"), false)
	udpKey := lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.50"), Port: 53, Proto: lb.ProtoUDP, Scope: lb.ScopeClusterIP}
	tcpKey := udpKey
	tcpKey.Proto = lb.ProtoTCP
	vip, client := netip.MustParseAddr("10.96.0.50"), netip.MustParseAddr("10.244.2.9")
	flow := func(key lb.ServiceKey, sport uint16, backend string) {
		ct.entries[maps.CTKey{Src: client, Dst: vip, SrcPort: sport, DstPort: 53, Proto: maps.Proto(key.Proto), Scope: maps.CTEgress}] = maps.CTEntry{
			Flags: maps.CTDNAT, NatAddr: netip.MustParseAddr(backend), NatPort: 5353, SvcID: store.front[key].ID}
	}
	flow(udpKey, 40001, "10.244.1.5")
	flow(udpKey, 40002, "10.244.1.6")
	flow(tcpKey, 40003, "10.244.1.5")

	s.onSlice(dnsSlice("10.244.1.6"), false)
	var left []uint16
	for k := range ct.entries {
		left = append(left, k.SrcPort)
	}
	assert.ElementsMatch(t, []uint16{40002, 40003}, left, "only the UDP flow to the removed backend is flushed")
}

// refRecorder records Events with the object they are about.
type refRecorder struct{ events []string }

func (r *refRecorder) Event(obj runtime.Object, typ, reason, msg string) {
	ref, _ := obj.(*corev1.ObjectReference)
	r.events = append(r.events, fmt.Sprintf("%s %s %s/%s: %s", typ, reason, ref.Namespace, ref.Name, msg))
}

func (r *refRecorder) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	r.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (r *refRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	r.Eventf(obj, typ, reason, format, args...)
}

// TestServicesPartExternalIPs (issue 11 item 10): with externalIPs allowed, of two Services
// claiming one externalIP frontend the older keeps it whatever the event order, and the younger
// gets a FrontendConflict Event; with externalIPs denied none is programmed, and the Service gets
// an ExternalIPsDenied Event.
func TestServicesPartExternalIPs(t *testing.T) {
	public := lb.ServiceKey{VIP: netip.MustParseAddr("8.8.8.8"), Port: 80, Proto: lb.ProtoTCP, Scope: lb.ScopeClusterIP}
	withExternal := func(name string, created int64) *corev1.Service {
		return webService(func(sv *corev1.Service) {
			sv.Name, sv.CreationTimestamp = name, metav1.Unix(created, 0)
			sv.Spec.Type, sv.Spec.ClusterIP = corev1.ServiceTypeClusterIP, "10.96.0."+strconv.Itoa(int(created))
			sv.Spec.ExternalIPs = []string{"8.8.8.8"}
		})
	}
	tests := []struct {
		name   string
		policy lb.ExternalIPPolicy
		events []string // reason and object of each Event
		owner  string
	}{
		{name: "allow", policy: lb.ExternalIPsAllow, events: []string{"FrontendConflict shop/young"}, owner: "shop/old"},
		{name: "deny", policy: lb.ExternalIPsDeny, events: []string{"ExternalIPsDenied shop/young", "ExternalIPsDenied shop/old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, store := newTestServices("")
			s.table.SetExternalIPPolicy(tt.policy)
			rec := &refRecorder{}
			s.recorder = rec
			s.onService(withExternal("young", 20), false)
			s.onService(withExternal("old", 10), false)
			var got []string
			for _, e := range rec.events {
				f := strings.Fields(e)
				got = append(got, f[1]+" "+strings.TrimSuffix(f[2], ":"))
			}
			assert.ElementsMatch(t, tt.events, got, "events: %q", rec.events)
			ns, name, ok := s.ServiceByAddr(public.VIP, 80, lb.ProtoTCP)
			assert.Equal(t, tt.owner, map[bool]string{true: ns + "/" + name}[ok])
			_, programmed := store.front[public]
			assert.Equal(t, tt.owner != "", programmed)
		})
	}
}
