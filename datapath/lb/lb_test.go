package lb_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/lb"
)

func ptr[T any](v T) *T { return &v }

type svcOpt func(*corev1.Service)

func service(opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

type ep struct {
	ip, node    string
	ready       *bool
	terminating bool
	serving     *bool
}

func slice(name, svc, portName string, port int32, proto corev1.Protocol, eps ...ep) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Port: ptr(port), Protocol: ptr(proto)}},
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving}}
		if e.terminating {
			d.Conditions.Terminating = ptr(true)
		}
		if e.node != "" {
			d.NodeName = ptr(e.node)
		}
		sl.Endpoints = append(sl.Endpoints, d)
	}
	return sl
}

func be(s string) lb.Backend {
	ap := netip.MustParseAddrPort(s)
	return lb.Backend{IP: ap.Addr(), Port: ap.Port()}
}

func cip(port uint16, proto uint8) lb.ServiceKey {
	return lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: port, Proto: proto, Scope: lb.ScopeClusterIP}
}

func np(port uint16, proto uint8) lb.ServiceKey {
	return lb.ServiceKey{VIP: netip.IPv4Unspecified(), Port: port, Proto: proto, Scope: lb.ScopeNodePort}
}

type want struct {
	key      lb.ServiceKey
	flags    uint16
	backends []string
}

func TestTranslate(t *testing.T) {
	tcp := corev1.ProtocolTCP
	webSlice := slice("web-a", "web", "http", 8080, tcp,
		ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.7", node: "n2", ready: ptr(true)},
		ep{ip: "10.244.1.9", node: "n1", ready: ptr(false)}, ep{ip: "10.244.2.8", node: "n2", terminating: true, ready: ptr(false)})
	tests := []struct {
		name    string
		svc     *corev1.Service
		slices  []*discoveryv1.EndpointSlice
		want    []want
		wantErr string
	}{
		{
			name:   "clusterip only ready endpoints sorted",
			svc:    service(),
			slices: []*discoveryv1.EndpointSlice{webSlice},
			want:   []want{{cip(80, lb.ProtoTCP), 0, []string{"10.244.1.5:8080", "10.244.2.7:8080"}}},
		},
		{
			name:   "no endpoints programs count 0",
			svc:    service(),
			slices: nil,
			want:   []want{{cip(80, lb.ProtoTCP), 0, nil}},
		},
		{
			name: "udp and port matching by name",
			svc: service(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}, {Name: "dns-tcp", Protocol: tcp, Port: 53}}
			}),
			slices: []*discoveryv1.EndpointSlice{{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: "dns-x"},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports: []discoveryv1.EndpointPort{
					{Name: ptr("dns-tcp"), Port: ptr(int32(5353)), Protocol: ptr(tcp)},
					{Name: ptr("dns"), Port: ptr(int32(5354)), Protocol: ptr(corev1.ProtocolUDP)},
				},
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.3"}}},
			}},
			want: []want{
				{cip(53, lb.ProtoUDP), 0, []string{"10.244.1.3:5354"}},
				{cip(53, lb.ProtoTCP), 0, []string{"10.244.1.3:5353"}},
			},
		},
		{
			name: "nodeport with session affinity",
			svc: service(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			}),
			slices: []*discoveryv1.EndpointSlice{webSlice},
			want: []want{
				{cip(80, lb.ProtoTCP), lb.FlagAffinity, []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
				{np(30080, lb.ProtoTCP), lb.FlagAffinity, []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
			},
		},
		{
			name: "externalTrafficPolicy Local filters nodeport to local endpoints",
			svc: service(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}),
			slices: []*discoveryv1.EndpointSlice{webSlice},
			want: []want{
				{cip(80, lb.ProtoTCP), 0, []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
				{np(30080, lb.ProtoTCP), lb.FlagLocal, []string{"10.244.1.5:8080"}},
			},
		},
		{
			name: "internalTrafficPolicy Local filters clusterip",
			svc: service(func(s *corev1.Service) {
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
			}),
			slices: []*discoveryv1.EndpointSlice{webSlice},
			want:   []want{{cip(80, lb.ProtoTCP), lb.FlagLocal, []string{"10.244.1.5:8080"}}},
		},
		{
			name:    "port missing from endpoints fails closed with error",
			svc:     service(),
			slices:  []*discoveryv1.EndpointSlice{slice("web-b", "web", "metrics", 9090, tcp, ep{ip: "10.244.1.5"})},
			want:    []want{{cip(80, lb.ProtoTCP), 0, nil}},
			wantErr: "matches no port of EndpointSlice(s) [web-b]",
		},
		{
			name: "malformed annotation keeps default",
			svc: service(func(s *corev1.Service) {
				s.Annotations = map[string]string{lb.AnnotationNodePort: "maybe"}
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30081
			}),
			slices: []*discoveryv1.EndpointSlice{webSlice},
			want: []want{
				{cip(80, lb.ProtoTCP), 0, []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
				{np(30081, lb.ProtoTCP), 0, []string{"10.244.1.5:8080", "10.244.2.7:8080"}},
			},
			wantErr: `annotation starlab.dev/nodeport="maybe" is not a boolean`,
		},
		{
			name: "nodeport annotation false",
			svc: service(func(s *corev1.Service) {
				s.Annotations = map[string]string{lb.AnnotationNodePort: "false"}
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30081
			}),
			want: []want{{cip(80, lb.ProtoTCP), 0, nil}},
		},
		{
			name: "headless has no frontends",
			svc: service(func(s *corev1.Service) {
				s.Spec.ClusterIP, s.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
			}),
			slices: []*discoveryv1.EndpointSlice{webSlice},
		},
		{
			name:   "other proxy's service skipped",
			svc:    service(func(s *corev1.Service) { s.Annotations = map[string]string{lb.AnnotationServiceProxyName: "other"} }),
			slices: []*discoveryv1.EndpointSlice{webSlice},
		},
		{
			name: "sctp clusterip with the target port equal to the port",
			svc: service(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 3868}}
			}),
			slices: []*discoveryv1.EndpointSlice{slice("web-s", "web", "s", 3868, corev1.ProtocolSCTP, ep{ip: "10.244.1.5", node: "n1"})},
			want:   []want{{cip(3868, lb.ProtoSCTP), 0, []string{"10.244.1.5:3868"}}},
		},
		{
			name: "sctp backends with another target port left out and reported",
			svc: service(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 9}}
			}),
			slices:  []*discoveryv1.EndpointSlice{slice("web-s", "web", "s", 3868, corev1.ProtocolSCTP, ep{ip: "10.244.1.5", node: "n1"})},
			want:    []want{{cip(9, lb.ProtoSCTP), 0, nil}},
			wantErr: "SCTP ports are not translated",
		},
		{
			name: "sctp nodeport not programmed",
			svc: service(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports = []corev1.ServicePort{{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 3868, NodePort: 30868}}
			}),
			slices:  []*discoveryv1.EndpointSlice{slice("web-s", "web", "s", 3868, corev1.ProtocolSCTP, ep{ip: "10.244.1.5", node: "n1"})},
			want:    []want{{cip(3868, lb.ProtoSCTP), 0, []string{"10.244.1.5:3868"}}},
			wantErr: "SCTP NodePort is not supported",
		},
		{
			name: "other protocols rejected",
			svc: service(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "s", Protocol: "DCCP", Port: 9}}
			}),
			wantErr: "protocol DCCP is not supported",
		},
		{
			name: "duplicate endpoints across slices deduplicated",
			svc:  service(),
			slices: []*discoveryv1.EndpointSlice{webSlice,
				slice("web-c", "web", "http", 8080, tcp, ep{ip: "10.244.2.7", node: "n2"}, ep{ip: "10.244.3.1", node: "n3"})},
			want: []want{{cip(80, lb.ProtoTCP), 0, []string{"10.244.1.5:8080", "10.244.2.7:8080", "10.244.3.1:8080"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lb.Translate(tc.svc, tc.slices, "n1")
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				var ie *lb.InputError
				assert.True(t, errors.As(err, &ie), "error is an *InputError for the event")
			} else {
				require.NoError(t, err)
			}
			var gotW []want
			for _, f := range got {
				w := want{key: f.Key, flags: f.Flags}
				for _, b := range f.Backends {
					w.backends = append(w.backends, b.String())
				}
				gotW = append(gotW, w)
			}
			assert.Equal(t, tc.want, gotW)
		})
	}
}

func TestTranslateNilDoesNotPanic(t *testing.T) {
	_, err := lb.Translate(nil, nil, "n1")
	require.Error(t, err)
}

// backendSlot is an sl_backends key in the recorder.
type backendSlot struct{ id, slot uint32 }

// recorder is a real in-memory map model: it writes frontends the way the agent's writer over
// datapath/maps does (backend slots, then the count, then stale slots removed).
type recorder struct {
	svcs     map[lb.ServiceKey]lb.ServiceValue
	backends map[backendSlot]lb.Backend
	log      []string
}

func newRecorder() *recorder {
	return &recorder{svcs: map[lb.ServiceKey]lb.ServiceValue{}, backends: map[backendSlot]lb.Backend{}}
}

func (r *recorder) WriteFrontend(k lb.ServiceKey, v lb.ServiceValue, bs []lb.Backend) error {
	r.log = append(r.log, "write "+k.String())
	for i, b := range bs {
		r.backends[backendSlot{v.ID, uint32(i)}] = b
	}
	old, had := r.svcs[k]
	v.Count = uint16(len(bs))
	r.svcs[k] = v
	if had {
		for i := uint32(0); i < uint32(old.Count); i++ {
			if old.ID != v.ID || i >= uint32(len(bs)) {
				delete(r.backends, backendSlot{old.ID, i})
			}
		}
	}
	return nil
}

func (r *recorder) DeleteFrontend(k lb.ServiceKey) error {
	r.log = append(r.log, "delete "+k.String())
	old, ok := r.svcs[k]
	if !ok {
		return nil
	}
	delete(r.svcs, k)
	for i := uint32(0); i < uint32(old.Count); i++ {
		delete(r.backends, backendSlot{old.ID, i})
	}
	return nil
}

// resolve returns the backends the datapath would pick from for key.
func (r *recorder) resolve(t *testing.T, key lb.ServiceKey) []string {
	t.Helper()
	v, ok := r.svcs[key]
	require.True(t, ok, "service %s programmed", key)
	var out []string
	for i := uint32(0); i < uint32(v.Count); i++ {
		b, ok := r.backends[backendSlot{v.ID, i}]
		require.True(t, ok, "slot %d of %s present", i, key)
		out = append(out, b.String())
	}
	return out
}

func TestTableDiffs(t *testing.T) {
	tcp := corev1.ProtocolTCP
	tab := lb.NewTable("n1")
	rec := newRecorder()
	apply := func(c lb.Changes) lb.Changes {
		t.Helper()
		require.NoError(t, c.Apply(rec))
		return c
	}

	// Slice before its Service: kept, reported.
	c, err := tab.UpsertSlice(slice("web-a", "web", "http", 8080, tcp, ep{ip: "10.244.1.5"}))
	require.ErrorIs(t, err, lb.ErrUnknownService)
	assert.True(t, apply(c).Empty())

	c, err = tab.UpsertService(service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30080
	}))
	require.NoError(t, err)
	apply(c)
	assert.Equal(t, []string{"10.244.1.5:8080"}, rec.resolve(t, cip(80, lb.ProtoTCP)))
	assert.Equal(t, []string{"10.244.1.5:8080"}, rec.resolve(t, np(30080, lb.ProtoTCP)))
	assert.Equal(t, 2, tab.Len())

	// Scale up: both frontends of the Service are rewritten whole, nothing is deleted.
	c, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, tcp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.2.9"}))
	require.NoError(t, err)
	var written []lb.ServiceKey
	for _, f := range c.Write {
		written = append(written, f.Key)
		assert.Equal(t, uint16(2), f.Value.Count)
		assert.Len(t, f.Backends, 2)
	}
	assert.ElementsMatch(t, []lb.ServiceKey{cip(80, lb.ProtoTCP), np(30080, lb.ProtoTCP)}, written)
	assert.Empty(t, c.Delete)
	apply(c)
	v, bs, ok := tab.Frontend(cip(80, lb.ProtoTCP))
	require.True(t, ok)
	assert.Equal(t, uint16(2), v.Count)
	assert.Len(t, bs, 2)
	assert.Equal(t, []string{"10.244.1.5:8080", "10.244.2.9:8080"}, rec.resolve(t, cip(80, lb.ProtoTCP)))

	// Same input again: nothing to write.
	c, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, tcp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.2.9"}))
	require.NoError(t, err)
	assert.True(t, c.Empty())

	// Scale down to zero: count 0, stale slots deleted.
	c, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, tcp))
	require.NoError(t, err)
	apply(c)
	assert.Empty(t, rec.resolve(t, cip(80, lb.ProtoTCP)))
	assert.Empty(t, rec.backends)

	// A younger Service cannot take the same frontend.
	other := service(func(s *corev1.Service) { s.Name = "clash"; s.CreationTimestamp = metav1.Unix(2000, 0) })
	c, err = tab.UpsertService(other)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "also claimed by Service demo/web, which keeps it")
	apply(c)

	// Delete: every entry removed.
	apply(tab.DeleteService("demo", "web"))
	apply(tab.DeleteService("demo", "clash"))
	assert.Empty(t, rec.svcs)
	assert.Empty(t, rec.backends)
	assert.Equal(t, 0, tab.Len())

	c, err = tab.DeleteSlice("demo", "web-a")
	require.NoError(t, err)
	assert.True(t, c.Empty())

	// Slice without service label.
	bad := slice("x", "", "http", 80, tcp)
	_, err = tab.UpsertSlice(bad)
	var ie *lb.InputError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "EndpointSlice", ie.Kind)
}

func BenchmarkTableScale(b *testing.B) {
	tcp := corev1.ProtocolTCP
	tab := lb.NewTable("n1")
	_, _ = tab.UpsertService(service())
	var eps []ep
	for i := 0; i < 100; i++ {
		eps = append(eps, ep{ip: netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(1 + i%250)}).String()})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 50 + i%50
		if _, err := tab.UpsertSlice(slice("web-a", "web", "http", 8080, tcp, eps[:n]...)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTableSeedKeepsIDsAcrossRestart(t *testing.T) {
	tcp := corev1.ProtocolTCP
	first := lb.NewTable("n1")
	other := service(func(s *corev1.Service) {
		s.Name, s.Spec.ClusterIP, s.Spec.ClusterIPs = "other", "10.96.0.20", []string{"10.96.0.20"}
	})
	_, err := first.UpsertService(other)
	require.NoError(t, err)
	_, err = first.UpsertService(service())
	require.NoError(t, err)
	_, _ = first.UpsertSlice(slice("web-a", "web", "http", 8080, tcp, ep{ip: "10.244.1.5"}))
	seed := map[lb.ServiceKey]uint32{}
	for _, k := range []lb.ServiceKey{cip(80, lb.ProtoTCP), {VIP: netip.MustParseAddr("10.96.0.20"), Port: 80, Proto: lb.ProtoTCP}} {
		v, _, ok := first.Frontend(k)
		require.True(t, ok)
		seed[k] = v.ID
	}

	// The restarted agent sees the Services in the opposite order.
	second := lb.NewTable("n1")
	second.Seed(seed)
	_, err = second.UpsertService(service())
	require.NoError(t, err)
	_, err = second.UpsertService(other)
	require.NoError(t, err)
	for k, id := range seed {
		v, _, ok := second.Frontend(k)
		require.True(t, ok)
		assert.Equal(t, id, v.ID, "frontend %s keeps its ID", k)
	}
	third := service(func(s *corev1.Service) {
		s.Name, s.Spec.ClusterIP, s.Spec.ClusterIPs = "third", "10.96.0.30", []string{"10.96.0.30"}
	})
	_, err = second.UpsertService(third)
	require.NoError(t, err)
	v, _, _ := second.Frontend(lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.30"), Port: 80, Proto: lb.ProtoTCP})
	assert.Greater(t, v.ID, uint32(2), "new IDs start above the seeded ones")
}

// failingWriter fails every write of one frontend.
type failingWriter struct {
	*recorder
	bad lb.ServiceKey
}

func (w failingWriter) WriteFrontend(k lb.ServiceKey, v lb.ServiceValue, bs []lb.Backend) error {
	if k == w.bad {
		return errors.New("map full")
	}
	return w.recorder.WriteFrontend(k, v, bs)
}

func TestChangesApplyOrderAndErrors(t *testing.T) {
	a, b, gone := cip(80, lb.ProtoTCP), cip(81, lb.ProtoTCP), cip(82, lb.ProtoTCP)
	c := lb.Changes{
		Write: []lb.FrontendState{
			{Key: a, Value: lb.ServiceValue{ID: 1, Count: 1}, Backends: []lb.Backend{{IP: netip.MustParseAddr("10.244.1.5"), Port: 8080}}},
			{Key: b, Value: lb.ServiceValue{ID: 2, Count: 1}, Backends: []lb.Backend{{IP: netip.MustParseAddr("10.244.1.6"), Port: 8080}}},
		},
		Delete: []lb.ServiceKey{gone},
	}
	rec := newRecorder()
	err := c.Apply(failingWriter{recorder: rec, bad: a})
	require.ErrorContains(t, err, "write "+a.String()+": map full")
	assert.Equal(t, []string{"delete " + gone.String(), "write " + b.String()}, rec.log, "deletions first; one failed frontend does not hold back the others")
	assert.Equal(t, []string{"10.244.1.6:8080"}, rec.resolve(t, b))
}

// TestTableReportsStaleBackends: every backend a frontend stops using is reported under the
// service ID its conntrack entries carry, so the agent can move the flows load balanced to it.
func TestTableReportsStaleBackends(t *testing.T) {
	udp := corev1.ProtocolUDP
	dns := func(s *corev1.Service) { s.Spec.Ports[0] = corev1.ServicePort{Name: "dns", Protocol: udp, Port: 53} }
	key := cip(53, lb.ProtoUDP)
	tests := []struct {
		name   string
		change func(t *testing.T, tab *lb.Table) lb.Changes
		want   []string // "id backend"
	}{
		{name: "same backends: nothing stale", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5353, udp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.1.6"}))
			require.NoError(t, err)
			return c
		}},
		{name: "scale up: nothing stale", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5353, udp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.1.6"}, ep{ip: "10.244.1.7"}))
			require.NoError(t, err)
			return c
		}},
		{name: "one backend removed", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5353, udp, ep{ip: "10.244.1.6"}))
			require.NoError(t, err)
			return c
		}, want: []string{"1 10.244.1.5:5353"}},
		{name: "backend not ready", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5353, udp, ep{ip: "10.244.1.5", ready: ptr(false)}, ep{ip: "10.244.1.6"}))
			require.NoError(t, err)
			return c
		}, want: []string{"1 10.244.1.5:5353"}},
		{name: "target port changed", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5354, udp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.1.6"}))
			require.NoError(t, err)
			return c
		}, want: []string{"1 10.244.1.5:5353", "1 10.244.1.6:5353"}},
		{name: "slice deleted", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			c, err := tab.DeleteSlice("demo", "dns-a")
			require.NoError(t, err)
			return c
		}, want: []string{"1 10.244.1.5:5353", "1 10.244.1.6:5353"}},
		{name: "service deleted", change: func(t *testing.T, tab *lb.Table) lb.Changes {
			return tab.DeleteService("demo", "web")
		}, want: []string{"1 10.244.1.5:5353", "1 10.244.1.6:5353"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := lb.NewTable("n1")
			_, err := tab.UpsertService(service(dns))
			require.NoError(t, err)
			c, err := tab.UpsertSlice(slice("dns-a", "web", "dns", 5353, udp, ep{ip: "10.244.1.5"}, ep{ip: "10.244.1.6"}))
			require.NoError(t, err)
			require.Empty(t, c.Stale, "first backends: nothing stale")
			var got []string
			for _, s := range tt.change(t, tab).Stale {
				assert.Equal(t, key, s.Key)
				got = append(got, fmt.Sprintf("%d %s", s.ID, s.Backend))
			}
			assert.ElementsMatch(t, tt.want, got)
		})
	}
}

// frontendSvc is a ClusterIP Service ns/name created at second created, with clusterIP and
// externalIPs, serving port 53/UDP from a slice with one backend.
func frontendSvc(ns, name string, created int64, clusterIP string, externalIPs ...string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.Unix(created, 0)},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP},
			ExternalIPs: externalIPs, Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}}},
	}
	sl := slice(name+"-x", name, "dns", 5353, corev1.ProtocolUDP, ep{ip: "10.244.9." + strconv.Itoa(int(created%200))})
	sl.Namespace = ns
	return s, sl
}

// TestTableFrontendConflictsAndExternalIPs: who owns a frontend claimed by two Services does not
// depend on the order the Services arrive in (a ClusterIP beats an externalIP, then the older
// Service wins, then namespace/name); the loser gets a FrontendConflict error naming it; when the
// winner goes, the loser takes over. With ExternalIPsDeny no externalIP is programmed and the
// Service is reported.
func TestTableFrontendConflictsAndExternalIPs(t *testing.T) {
	victimIP := lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.53"), Port: 53, Proto: lb.ProtoUDP, Scope: lb.ScopeClusterIP}
	public := lb.ServiceKey{VIP: netip.MustParseAddr("8.8.8.8"), Port: 53, Proto: lb.ProtoUDP, Scope: lb.ScopeClusterIP}
	type svc struct {
		ns, name    string
		created     int64
		clusterIP   string
		externalIPs []string
	}
	tests := []struct {
		name     string
		policy   lb.ExternalIPPolicy
		svcs     []svc
		key      lb.ServiceKey
		owner    string // "" : not programmed
		losers   []string
		reasons  []string
		thenDrop string // delete this Service, then expect afterDrop to own key
		after    string
	}{
		{
			name: "older externalIP Service wins", key: public, owner: "a/old", losers: []string{"b/new"},
			svcs:     []svc{{"a", "old", 100, "10.96.0.1", []string{"8.8.8.8"}}, {"b", "new", 200, "10.96.0.2", []string{"8.8.8.8"}}},
			thenDrop: "a/old", after: "b/new",
		},
		{
			name: "same age: namespace/name decides", key: public, owner: "a/x", losers: []string{"b/x"},
			svcs: []svc{{"b", "x", 100, "10.96.0.2", []string{"8.8.8.8"}}, {"a", "x", 100, "10.96.0.1", []string{"8.8.8.8"}}},
		},
		{
			name: "a ClusterIP beats an older externalIP on it", key: victimIP, owner: "kube-system/dns", losers: []string{"evil/mitm"},
			svcs: []svc{{"evil", "mitm", 1, "10.96.0.9", []string{"10.96.0.53"}}, {"kube-system", "dns", 100, "10.96.0.53", nil}},
		},
		{
			name: "deny: externalIPs are not programmed", policy: lb.ExternalIPsDeny, key: public,
			svcs:    []svc{{"a", "old", 100, "10.96.0.1", []string{"8.8.8.8"}}},
			reasons: []string{"ExternalIPsDenied"},
		},
		{
			name: "deny: the ClusterIP is still programmed", policy: lb.ExternalIPsDeny, key: lb.ServiceKey{VIP: netip.MustParseAddr("10.96.0.1"), Port: 53, Proto: lb.ProtoUDP},
			owner: "a/old", svcs: []svc{{"a", "old", 100, "10.96.0.1", []string{"8.8.8.8"}}}, reasons: []string{"ExternalIPsDenied"},
		},
	}
	for _, tt := range tests {
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reverse=%v", tt.name, reverse), func(t *testing.T) {
				tab := lb.NewTable("n1")
				tab.SetExternalIPPolicy(tt.policy)
				rec := newRecorder()
				order := slices.Clone(tt.svcs)
				if reverse {
					slices.Reverse(order)
				}
				var losers, reasons []string
				note := func(err error) {
					var ie *lb.InputError
					for _, e := range flatten(err) {
						if errors.As(e, &ie) {
							if ie.Reason == "FrontendConflict" {
								losers = append(losers, ie.Namespace+"/"+ie.Name)
							} else {
								reasons = append(reasons, ie.Reason)
							}
						}
					}
				}
				for _, s := range order {
					sv, sl := frontendSvc(s.ns, s.name, s.created, s.clusterIP, s.externalIPs...)
					c, err := tab.UpsertService(sv)
					note(err)
					require.NoError(t, c.Apply(rec))
					c, err = tab.UpsertSlice(sl)
					note(err)
					require.NoError(t, c.Apply(rec))
				}
				owner, _, ok := tab.Lookup(tt.key)
				assert.Equal(t, tt.owner, owner)
				assert.Equal(t, tt.owner != "", ok)
				_, programmed := rec.svcs[tt.key]
				assert.Equal(t, tt.owner != "", programmed, "the maps agree")
				assert.Subset(t, tt.losers, losers, "only losers are reported")
				assert.Subset(t, losers, tt.losers, "every loser is reported")
				assert.Subset(t, reasons, tt.reasons)
				if tt.thenDrop == "" {
					return
				}
				ns, name, _ := strings.Cut(tt.thenDrop, "/")
				require.NoError(t, tab.DeleteService(ns, name).Apply(rec))
				owner, _, _ = tab.Lookup(tt.key)
				assert.Equal(t, tt.after, owner, "the remaining claimant takes the frontend over")
				assert.Len(t, rec.resolve(t, tt.key), 1, "with its own backend")
			})
		}
	}
}

// flatten returns the errors joined in err.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// TestTranslateEndpointConditions: backends come from the ready endpoints; when none is ready, from
// the serving terminating ones (for the cluster-wide and the node-local choice alike);
// publishNotReadyAddresses uses every endpoint.
func TestTranslateEndpointConditions(t *testing.T) {
	tcp := corev1.ProtocolTCP
	local := func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30081
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	}
	term := func(ip, node string) ep {
		return ep{ip: ip, node: node, ready: ptr(false), serving: ptr(true), terminating: true}
	}
	tests := []struct {
		name   string
		svc    *corev1.Service
		eps    []ep
		want   []string // ClusterIP (or, with Local, the ClusterIP and NodePort) backends
		wantNP []string // NodePort backends (Local only)
	}{
		{
			name: "ready beats serving terminating",
			svc:  service(),
			eps:  []ep{{ip: "10.244.1.5", node: "n1", ready: ptr(true)}, term("10.244.2.7", "n2")},
			want: []string{"10.244.1.5:8080"},
		},
		{
			name: "only terminating left: serving ones used",
			svc:  service(),
			eps: []ep{term("10.244.2.7", "n2"), term("10.244.1.5", "n1"),
				{ip: "10.244.1.6", node: "n1", ready: ptr(false), serving: ptr(false), terminating: true},
				{ip: "10.244.1.7", node: "n1", ready: ptr(false)}},
			want: []string{"10.244.1.5:8080", "10.244.2.7:8080"},
		},
		{
			name: "local: ready remote does not hide the serving terminating local one",
			svc:  service(local),
			eps:  []ep{{ip: "10.244.2.7", node: "n2", ready: ptr(true)}, term("10.244.1.5", "n1")},
			want: []string{"10.244.1.5:8080"}, wantNP: []string{"10.244.1.5:8080"},
		},
		{
			name: "local: ready local beats terminating local",
			svc:  service(local),
			eps:  []ep{{ip: "10.244.1.9", node: "n1", ready: ptr(true)}, term("10.244.1.5", "n1")},
			want: []string{"10.244.1.9:8080"}, wantNP: []string{"10.244.1.9:8080"},
		},
		{
			name: "local: nothing serving here",
			svc:  service(local),
			eps:  []ep{{ip: "10.244.2.7", node: "n2", ready: ptr(true)}, {ip: "10.244.1.5", node: "n1", ready: ptr(false), serving: ptr(false), terminating: true}},
			want: nil, wantNP: nil,
		},
		{
			name: "publishNotReadyAddresses uses unready and terminating endpoints",
			svc:  service(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			eps: []ep{{ip: "10.244.1.5", node: "n1", ready: ptr(false)},
				{ip: "10.244.1.6", node: "n1", ready: ptr(true), serving: ptr(false), terminating: true},
				{ip: "10.244.1.7", node: "n1", ready: ptr(true)}},
			want: []string{"10.244.1.5:8080", "10.244.1.6:8080", "10.244.1.7:8080"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := lb.Translate(tc.svc, []*discoveryv1.EndpointSlice{slice("web-a", "web", "http", 8080, tcp, tc.eps...)}, "n1")
			require.NoError(t, err)
			got := map[lb.ServiceKey][]string{}
			for _, f := range fs {
				var bs []string
				for _, b := range f.Backends {
					bs = append(bs, b.String())
				}
				got[f.Key] = bs
			}
			assert.Equal(t, tc.want, got[cip(80, lb.ProtoTCP)], "clusterIP backends")
			if tc.svc.Spec.Type == corev1.ServiceTypeNodePort {
				assert.Equal(t, tc.wantNP, got[np(30081, lb.ProtoTCP)], "nodePort backends")
			}
		})
	}
}

// TestTableSkipLabels: the labels service.kubernetes.io/headless and service-proxy-name take a
// Service out of the table's hands (its frontends deleted) and their removal brings it back.
func TestTableSkipLabels(t *testing.T) {
	for _, label := range []string{lb.LabelHeadless, lb.LabelServiceProxyName} {
		t.Run(label, func(t *testing.T) {
			tab := lb.NewTable("n1")
			_, err := tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP, ep{ip: "10.244.1.5", node: "n1"}))
			require.ErrorIs(t, err, lb.ErrUnknownService)
			c, err := tab.UpsertService(service())
			require.NoError(t, err)
			require.Len(t, c.Write, 1)
			_, _, ok := tab.Frontend(cip(80, lb.ProtoTCP))
			require.True(t, ok)

			c, err = tab.UpsertService(service(func(s *corev1.Service) { s.Labels = map[string]string{label: ""} }))
			require.NoError(t, err)
			assert.Equal(t, []lb.ServiceKey{cip(80, lb.ProtoTCP)}, c.Delete, "labelled: frontend removed")
			_, _, ok = tab.Frontend(cip(80, lb.ProtoTCP))
			assert.False(t, ok)

			c, err = tab.UpsertService(service())
			require.NoError(t, err)
			require.Len(t, c.Write, 1, "label removed: frontend back")
			assert.Equal(t, []lb.Backend{be("10.244.1.5:8080")}, c.Write[0].Backends)
		})
	}
}

// TestTableRecreatedAndScaledToZero: a Service deleted and created again with a new ClusterIP gets
// a fresh service ID (no backend slot or conntrack entry of the old one applies), and the old
// frontend is deleted; a Service scaled to 0 and back writes its frontend with count 0, then with
// the new backends under the same ID.
func TestTableRecreatedAndScaledToZero(t *testing.T) {
	tab := lb.NewTable("n1")
	_, err := tab.UpsertService(service())
	require.NoError(t, err)
	c, err := tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP, ep{ip: "10.244.1.5", node: "n1"}))
	require.NoError(t, err)
	require.Len(t, c.Write, 1)
	oldID := c.Write[0].Value.ID

	// Scaled to 0: the slice keeps existing with no endpoints.
	c, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP))
	require.NoError(t, err)
	require.Len(t, c.Write, 1)
	assert.Equal(t, uint16(0), c.Write[0].Value.Count)
	assert.Equal(t, []lb.StaleBackend{{Key: cip(80, lb.ProtoTCP), ID: oldID, Backend: be("10.244.1.5:8080")}}, c.Stale)
	c, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP, ep{ip: "10.244.1.8", node: "n1"}))
	require.NoError(t, err)
	require.Len(t, c.Write, 1)
	assert.Equal(t, lb.ServiceValue{ID: oldID, Count: 1}, c.Write[0].Value)

	// Recreated: delete (slice and Service), then a new one with another ClusterIP.
	_, err = tab.DeleteSlice("demo", "web-a")
	require.NoError(t, err)
	c = tab.DeleteService("demo", "web")
	assert.Equal(t, []lb.ServiceKey{cip(80, lb.ProtoTCP)}, c.Delete)
	newIP := netip.MustParseAddr("10.96.0.77")
	c, err = tab.UpsertService(service(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0.77", []string{"10.96.0.77"} }))
	require.NoError(t, err)
	require.Len(t, c.Write, 1)
	c, err = tab.UpsertSlice(slice("web-b", "web", "http", 8080, corev1.ProtocolTCP, ep{ip: "10.244.1.9", node: "n1"}))
	require.NoError(t, err)
	require.Len(t, c.Write, 1)
	key := lb.ServiceKey{VIP: newIP, Port: 80, Proto: lb.ProtoTCP, Scope: lb.ScopeClusterIP}
	assert.Equal(t, key, c.Write[0].Key)
	assert.NotEqual(t, oldID, c.Write[0].Value.ID, "a recreated Service gets a fresh service ID")
	assert.Equal(t, []lb.Backend{be("10.244.1.9:8080")}, c.Write[0].Backends)
	_, _, ok := tab.Frontend(cip(80, lb.ProtoTCP))
	assert.False(t, ok, "old ClusterIP frontend gone")
}

// TestTableHealthChecks: an externalTrafficPolicy Local Service's healthCheckNodePort counts this
// node's ready endpoints; terminating (even serving) ones and other nodes' do not count.
func TestTableHealthChecks(t *testing.T) {
	tab := lb.NewTable("n1")
	lbLocal := func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30081
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = 32000
	}
	_, err := tab.UpsertService(service(lbLocal))
	require.NoError(t, err)
	assert.Equal(t, []lb.HealthCheck{{Namespace: "demo", Name: "web", Port: 32000, LocalEndpoints: 0}}, tab.HealthChecks())

	_, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP,
		ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.1.6", node: "n1", ready: ptr(true)},
		ep{ip: "10.244.2.7", node: "n2"}, ep{ip: "10.244.1.8", node: "n1", ready: ptr(false), serving: ptr(true), terminating: true}))
	require.NoError(t, err)
	assert.Equal(t, []lb.HealthCheck{{Namespace: "demo", Name: "web", Port: 32000, LocalEndpoints: 2}}, tab.HealthChecks())

	_, err = tab.UpsertSlice(slice("web-a", "web", "http", 8080, corev1.ProtocolTCP,
		ep{ip: "10.244.1.8", node: "n1", ready: ptr(false), serving: ptr(true), terminating: true}))
	require.NoError(t, err)
	assert.Equal(t, []lb.HealthCheck{{Namespace: "demo", Name: "web", Port: 32000, LocalEndpoints: 0}}, tab.HealthChecks(), "only terminating left")

	_, err = tab.UpsertService(service(lbLocal, func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster }))
	require.NoError(t, err)
	assert.Empty(t, tab.HealthChecks(), "Cluster policy: no health check")
	_, err = tab.UpsertService(service(lbLocal))
	require.NoError(t, err)
	tab.DeleteService("demo", "web")
	assert.Empty(t, tab.HealthChecks(), "deleted")
}

// TestAffinityTimeout: sessionAffinity ClientIP carries its timeout into every frontend of the
// Service (ClusterIP and NodePort), 10800 s when unset (the Kubernetes default), the Service's
// timeoutSeconds otherwise; without affinity it is 0. The Table rewrites the frontends when only
// the timeout changes.
func TestAffinityTimeout(t *testing.T) {
	affinity := func(timeout *int32) svcOpt {
		return func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			if timeout != nil {
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: timeout}}
			}
		}
	}
	webSlice := slice("web-a", "web", "http", 8080, corev1.ProtocolTCP, ep{ip: "10.244.1.5"}, ep{ip: "10.244.2.7"})
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want uint32
	}{
		{"unset: Kubernetes default", service(affinity(nil)), 10800},
		{"config without clientIP: default", service(affinity(nil), func(s *corev1.Service) {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}), 10800},
		{"explicit", service(affinity(ptr(int32(2)))), 2},
		{"maximum", service(affinity(ptr(int32(86400)))), 86400},
		{"no affinity: no timeout", service(func(s *corev1.Service) {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
		}), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := lb.Translate(tc.svc, []*discoveryv1.EndpointSlice{webSlice}, "n1")
			require.NoError(t, err)
			require.NotEmpty(t, fs)
			for _, f := range fs {
				assert.Equal(t, tc.want, f.AffinityTimeout, "%s", f.Key)
			}
		})
	}
	assert.Equal(t, uint32(10800), lb.DefaultAffinityTimeout)

	tab := lb.NewTable("n1")
	_, err := tab.UpsertService(service(affinity(ptr(int32(2)))))
	require.NoError(t, err)
	c, err := tab.UpsertSlice(webSlice)
	require.NoError(t, err)
	require.Len(t, c.Write, 2)
	for _, w := range c.Write {
		assert.Equal(t, lb.FlagAffinity, w.Value.Flags)
		assert.Equal(t, uint32(2), w.Value.AffinityTimeout, "%s", w.Key)
	}
	c, err = tab.UpsertService(service(affinity(ptr(int32(30)))))
	require.NoError(t, err)
	require.Len(t, c.Write, 2, "a timeout change rewrites the frontends")
	for _, w := range c.Write {
		assert.Equal(t, uint32(30), w.Value.AffinityTimeout, "%s", w.Key)
	}
	v, _, ok := tab.Frontend(cip(80, lb.ProtoTCP))
	require.True(t, ok)
	assert.Equal(t, uint32(30), v.AffinityTimeout)
}

// External addresses (spec.externalIPs, LoadBalancer ingress IPs) are frontends with FlagExternal
// (the datapath serves them from outside the node) and follow externalTrafficPolicy, as in
// kube-proxy; the ClusterIP follows internalTrafficPolicy.
func TestTranslateExternalAddresses(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalIPs = []string{"203.0.113.7"}
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.9"}, {Hostname: "lb.example"}}
		s.Spec.LoadBalancerSourceRanges = []string{"192.168.1.7/24", "10.0.0.0/8"}
	})
	sl := slice("web-1", "web", "http", 8080, corev1.ProtocolTCP,
		ep{ip: "10.244.1.5", node: "n1"}, ep{ip: "10.244.2.5", node: "n2"})
	fs, err := lb.Translate(svc, []*discoveryv1.EndpointSlice{sl}, "n1")
	require.NoError(t, err)
	got := map[string]lb.Frontend{}
	for _, f := range fs {
		if f.Key.Scope == lb.ScopeClusterIP {
			got[f.Key.VIP.String()] = f
		}
	}
	require.Len(t, got, 3)
	all := []lb.Backend{be("10.244.1.5:8080"), be("10.244.2.5:8080")}
	require.Equal(t, lb.FlagLocal, got["10.96.0.10"].Flags, "ClusterIP: internalTrafficPolicy Local")
	require.Equal(t, []lb.Backend{be("10.244.1.5:8080")}, got["10.96.0.10"].Backends)
	for _, vip := range []string{"203.0.113.7", "198.51.100.9"} {
		require.Equal(t, lb.FlagExternal, got[vip].Flags, "%s: external, externalTrafficPolicy Cluster", vip)
		require.Equal(t, all, got[vip].Backends, vip)
	}
	require.True(t, got["203.0.113.7"].External)
	require.True(t, got["198.51.100.9"].LBIngress)
	require.False(t, got["198.51.100.9"].External, "an LB ingress IP is not a user-written externalIP (deny policy)")
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.0/24")}, got["198.51.100.9"].SourceRanges,
		"loadBalancerSourceRanges on the LB ingress IP, masked and sorted")
	require.Empty(t, got["203.0.113.7"].SourceRanges, "not on externalIPs (kube-proxy applies them to LB IPs)")
	require.Empty(t, got["10.96.0.10"].SourceRanges)

	bad := svc.DeepCopy()
	bad.Spec.LoadBalancerSourceRanges = []string{"not-a-cidr"}
	fs, err = lb.Translate(bad, []*discoveryv1.EndpointSlice{sl}, "n1")
	require.ErrorContains(t, err, "not IPv4 CIDRs")
	for _, f := range fs {
		if f.LBIngress {
			require.Equal(t, []netip.Prefix{netip.MustParsePrefix("255.255.255.255/32")}, f.SourceRanges, "fail closed")
		}
	}

	// ipMode Proxy (the load balancer proxies, the packets arrive with a node as destination): not
	// programmed, as kube-proxy; ipMode VIP is as unset
	modes := svc.DeepCopy()
	modes.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
		{IP: "198.51.100.9", IPMode: ptr(corev1.LoadBalancerIPModeProxy)},
		{IP: "198.51.100.10", IPMode: ptr(corev1.LoadBalancerIPModeVIP)},
	}
	fs, err = lb.Translate(modes, []*discoveryv1.EndpointSlice{sl}, "n1")
	require.NoError(t, err)
	var vips []string
	for _, f := range fs {
		if f.LBIngress {
			vips = append(vips, f.Key.VIP.String())
		}
	}
	require.Equal(t, []string{"198.51.100.10"}, vips, "only the ipMode VIP ingress IP")

	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	fs, err = lb.Translate(svc, []*discoveryv1.EndpointSlice{sl}, "n2")
	require.NoError(t, err)
	for _, f := range fs {
		if f.Key.Scope == lb.ScopeClusterIP && f.Key.VIP.String() == "198.51.100.9" {
			require.Equal(t, lb.FlagExternal|lb.FlagLocal, f.Flags)
			require.Equal(t, []lb.Backend{be("10.244.2.5:8080")}, f.Backends)
		}
	}
}
