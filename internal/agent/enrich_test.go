package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

func ptr[T any](v T) *T { return &v }

// enrichAgent is an agent whose pod informer runs against client-go's in-memory clientset.
func enrichAgent(t testing.TB) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	a, err := New(cfg, nil)
	require.NoError(t, err)
	yes := true
	client := fake.NewClientset(
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d8f7c-abcde", Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c"},
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7c", Controller: &yes}}},
			Spec:   corev1.PodSpec{NodeName: "n1"},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5"},
		},
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "client", Labels: map[string]string{"app": "client"}},
			Spec:       corev1.PodSpec{NodeName: "n2"},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.9"},
		},
	)
	f := informers.NewSharedInformerFactory(client, 0)
	a.pods = f.Core().V1().Pods()
	require.NoError(t, a.pods.Informer().AddIndexers(cache.Indexers{podIPIndex: podIPIndexFunc}))
	f.Start(t.Context().Done())
	f.WaitForCacheSync(t.Context().Done())

	_, err = a.lbTable.UpsertService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.50", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	})
	require.NoError(t, err)
	_, err = a.lbTable.UpsertSlice(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}}},
	})
	require.NoError(t, err)
	a.pol.result = &policy.Result{
		Policies: map[uint32]policy.PolicyRef{7: {ID: 7, Namespace: "shop", Name: "allow-client"}},
		Endpoints: map[uint32]*policy.Endpoint{12: {EpID: 12, IngressPolicies: []policy.PolicyRef{
			{ID: 9, Namespace: "shop", Name: "zz-deny"}, {ID: 7, Namespace: "shop", Name: "allow-client"}}}},
	}
	return a
}

func TestEnrich(t *testing.T) {
	a := enrichAgent(t)
	clock, err := flowevent.NewClock()
	require.NoError(t, err)
	now, err := maps.BootTimeNs()
	require.NoError(t, err)
	base := flowevent.Event{
		TsNs: now,
		Src:  netip.MustParseAddr("10.244.2.9"), Dst: netip.MustParseAddr("10.244.1.5"), SrcPort: 40000, DstPort: 8080,
		OrigDst: netip.MustParseAddr("10.96.0.50"), OrigDstPort: 80, Proto: 6, Direction: flowevent.DirectionIngress,
		ObsPoint: flowevent.ObsToContainer, Ifindex: 12, SrcIdentity: 300, DstIdentity: 301, TCPFlags: flowevent.FlagSYN,
	}
	for _, tc := range []struct {
		name  string
		mut   func(*flowevent.Event)
		check func(*testing.T, *flow.Flow)
	}{
		{"forwarded through a service", func(e *flowevent.Event) {
			e.Verdict, e.Type, e.PolicyID = flowevent.VerdictForwarded, flowevent.TypeNew, 7
		}, func(t *testing.T, f *flow.Flow) {
			assert.Equal(t, flow.VerdictForwarded, f.Verdict)
			assert.Equal(t, flow.EventNew, f.EventType)
			assert.Equal(t, "10.96.0.50", f.IP.OrigDestination)
			assert.Equal(t, uint16(80), f.L4.OrigDestinationPort)
			assert.Equal(t, &flow.Service{Namespace: "shop", Name: "web"}, f.DestinationService)
			assert.Equal(t, "web-5d8f7c-abcde", f.Destination.PodName)
			assert.Equal(t, &flow.Workload{Kind: "Deployment", Name: "web"}, f.Destination.Workload)
			assert.Equal(t, []string{"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"}, f.Destination.Labels)
			assert.Equal(t, "client", f.Source.PodName)
			assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client"}}, f.AllowedBy)
			assert.Empty(t, f.DeniedBy)
			assert.Equal(t, flow.DirectionIngress, f.TrafficDirection)
			assert.Equal(t, flow.ObsToEndpoint, f.TraceObservationPoint)
			require.NotNil(t, f.L4.Flags)
			assert.True(t, f.L4.Flags.SYN)
			assert.Equal(t, "n1", f.NodeName)
			assert.WithinDuration(t, time.Now(), f.Time, 2*time.Second, "boot-time stamp converted to wall time")
		}},
		{"denied by policy", func(e *flowevent.Event) {
			e.Verdict, e.Type, e.DropReason = flowevent.VerdictDropped, flowevent.TypeDrop, flowevent.DropPolicyDenied
		}, func(t *testing.T, f *flow.Flow) {
			assert.Equal(t, flow.VerdictDropped, f.Verdict)
			assert.Equal(t, flow.DropPolicyDenied, f.DropReasonDesc)
			assert.Empty(t, f.AllowedBy)
			assert.Equal(t, []flow.Policy{
				{Kind: flow.PolicyKindDefaultDeny},
				{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client"},
				{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "zz-deny"},
			}, f.DeniedBy)
		}},
		{"world source, no service", func(e *flowevent.Event) {
			e.Src, e.SrcIdentity, e.OrigDst, e.OrigDstPort = netip.MustParseAddr("8.8.8.8"), policy.IdentityWorld, netip.Addr{}, 0
			e.Verdict, e.Type = flowevent.VerdictForwarded, flowevent.TypeNew
		}, func(t *testing.T, f *flow.Flow) {
			assert.Equal(t, []string{"reserved:world"}, f.Source.Labels)
			assert.Empty(t, f.Source.PodName)
			assert.Nil(t, f.DestinationService)
			assert.Empty(t, f.IP.OrigDestination)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := base
			tc.mut(&ev)
			tc.check(t, a.enrich(&ev, clock))
		})
	}
}

func BenchmarkEnrich(b *testing.B) {
	a := enrichAgent(b)
	clock, _ := flowevent.NewClock()
	ev := flowevent.Event{
		Src: netip.MustParseAddr("10.244.2.9"), Dst: netip.MustParseAddr("10.244.1.5"), SrcPort: 40000, DstPort: 8080,
		OrigDst: netip.MustParseAddr("10.96.0.50"), OrigDstPort: 80, Proto: 6, Verdict: flowevent.VerdictForwarded,
		Type: flowevent.TypeNew, Direction: flowevent.DirectionIngress, Ifindex: 12, PolicyID: 7,
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = a.enrich(&ev, clock)
	}
}
