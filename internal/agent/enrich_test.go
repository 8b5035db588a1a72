package agent

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

func ptr[T any](v T) *T { return &v }

var (
	yes    = true
	webPod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d8f7c-abcde", Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f7c"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-5d8f7c", Controller: &yes}}},
		Spec:   corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5"},
	}
	clientPod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "client", Labels: map[string]string{"app": "client"}},
		Spec:       corev1.PodSpec{NodeName: "n2"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.9"},
	}
	shopResult = &policy.Result{
		Policies: map[uint32]policy.PolicyRef{7: {ID: 7, Namespace: "shop", Name: "allow-client"},
			20: {ID: 20, Name: "admin-guard", Kind: policy.KindClusterNetworkPolicy, Tier: policy.TierAdmin},
			21: {ID: 21, Name: "baseline-default", Kind: policy.KindClusterNetworkPolicy, Tier: policy.TierBaseline}},
		ClusterRules: map[uint32][3][]string{20: {policy.DirIngress: {"", "deny-client"}}},
		Endpoints: map[uint32]*policy.Endpoint{12: {EpID: 12, IngressPolicies: []policy.PolicyRef{
			{ID: 9, Namespace: "shop", Name: "zz-deny"}, {ID: 7, Namespace: "shop", Name: "allow-client"}}}},
	}
)

// Small fakes for the enricher's getters.
type fakePods map[netip.Addr]*corev1.Pod

func (f fakePods) PodByIP(ip netip.Addr) *corev1.Pod { return f[ip] }

type fakeServices map[netip.AddrPort]string

func (f fakeServices) ServiceByAddr(ip netip.Addr, port uint16, _ uint8) (string, string, bool) {
	n, ok := f[netip.AddrPortFrom(ip, port)]
	return "shop", n, ok
}

type fakePolicies struct{ res *policy.Result }

func (f fakePolicies) PolicyResult() *policy.Result { return f.res }

func TestEnrich(t *testing.T) {
	e := &enricher{
		node:     "n1",
		pods:     fakePods{netip.MustParseAddr("10.244.1.5"): webPod, netip.MustParseAddr("10.244.2.9"): clientPod},
		services: fakeServices{netip.MustParseAddrPort("10.96.0.50:80"): "web"},
		policies: fakePolicies{shopResult},
	}
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
			assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client",
				Tier: flow.TierNetworkPolicy, Rule: "0", Action: flow.ActionAllow}}, f.AllowedBy)
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
				{Kind: flow.PolicyKindDefaultDeny, Tier: flow.TierNetworkPolicy},
				{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client", Tier: flow.TierNetworkPolicy},
				{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "zz-deny", Tier: flow.TierNetworkPolicy},
			}, f.DeniedBy)
		}},
		{"denied by an Admin ClusterNetworkPolicy rule", func(e *flowevent.Event) {
			e.Verdict, e.Type, e.DropReason = flowevent.VerdictDropped, flowevent.TypeDrop, flowevent.DropPolicyDenied
			e.PolicyID, e.Rule = 20, 1
		}, func(t *testing.T, f *flow.Flow) {
			assert.Empty(t, f.AllowedBy)
			assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "admin-guard", Tier: flow.TierAdmin, Rule: "deny-client", Action: flow.ActionDeny}}, f.DeniedBy)
			assert.Equal(t, "ClusterNetworkPolicy/admin-guard[rule deny-client Deny]", f.DeniedBy[0].String())
		}},
		{"Admin Pass then NetworkPolicy allow", func(e *flowevent.Event) {
			e.Verdict, e.Type, e.PolicyID = flowevent.VerdictForwarded, flowevent.TypeNew, 7
			e.PassPolicyID, e.PassRule = 20, 0
		}, func(t *testing.T, f *flow.Flow) {
			assert.Empty(t, f.DeniedBy)
			assert.Equal(t, []flow.Policy{
				{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "admin-guard", Tier: flow.TierAdmin, Rule: "0", Action: flow.ActionPass},
				{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "allow-client", Tier: flow.TierNetworkPolicy, Rule: "0", Action: flow.ActionAllow},
			}, f.AllowedBy)
		}},
		{"Baseline Deny", func(e *flowevent.Event) {
			e.Verdict, e.Type, e.DropReason = flowevent.VerdictDropped, flowevent.TypeDrop, flowevent.DropPolicyDenied
			e.PolicyID, e.Rule = 21, 0
		}, func(t *testing.T, f *flow.Flow) {
			assert.Equal(t, []flow.Policy{{Kind: flow.PolicyKindClusterNetworkPolicy, Name: "baseline-default", Tier: flow.TierBaseline, Rule: "0", Action: flow.ActionDeny}}, f.DeniedBy)
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
			tc.check(t, e.enrich(&ev, clock))
		})
	}

	t.Run("no compilation yet", func(t *testing.T) {
		e := &enricher{node: e.node, pods: e.pods, services: e.services, policies: fakePolicies{}}
		ev := base
		ev.Verdict, ev.Type, ev.DropReason = flowevent.VerdictDropped, flowevent.TypeDrop, flowevent.DropPolicyDenied
		f := e.enrich(&ev, clock)
		assert.Empty(t, f.DeniedBy)
		assert.Empty(t, f.AllowedBy)
	})
}

type fakeLocalPods map[netip.Addr]policy.PodRef

func (f fakeLocalPods) PodByIP(ip netip.Addr) (string, string, bool) {
	r, ok := f[ip]
	return r.Namespace, r.Name, ok
}

func TestPodLookup(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{podIPIndex: podIPIndexFunc})
	pending := webPod.DeepCopy()
	pending.Name, pending.Status.PodIP = "pending", "" // the CNI knows its IP, the kubelet did not report it yet
	done := clientPod.DeepCopy()
	done.Name, done.Status.Phase = "done", corev1.PodSucceeded // its old IP may belong to another pod
	for _, p := range []*corev1.Pod{webPod, clientPod, pending, done} {
		require.NoError(t, idx.Add(p))
	}
	l := podLookup{
		local:  fakeLocalPods{netip.MustParseAddr("10.244.1.9"): {Namespace: "shop", Name: "pending"}},
		lister: corev1listers.NewPodLister(idx), index: idx,
	}
	assert.Equal(t, "pending", l.PodByIP(netip.MustParseAddr("10.244.1.9")).Name, "local endpoint first")
	assert.Equal(t, "client", l.PodByIP(netip.MustParseAddr("10.244.2.9")).Name, "then the informer's IP index")
	assert.Nil(t, l.PodByIP(netip.MustParseAddr("10.244.3.3")))
}

// BenchmarkEnrich runs the enricher over the agent's real getters: the pod informer (client-go's
// in-memory clientset) behind podLookup, the services part's lb table, the policy part's result.
func BenchmarkEnrich(b *testing.B) {
	client := fake.NewClientset(webPod, clientPod)
	f := informers.NewSharedInformerFactory(client, 0)
	pods := f.Core().V1().Pods()
	require.NoError(b, pods.Informer().AddIndexers(cache.Indexers{podIPIndex: podIPIndexFunc}))
	f.Start(b.Context().Done())
	f.WaitForCacheSync(b.Context().Done())

	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	eps := newEndpoints(cfg, slog.Default(), nil)
	svcs := newServices("n1", slog.Default(), func(netip.Addr) bool { return false })
	_, err := svcs.table.UpsertService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.50", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	})
	require.NoError(b, err)
	_, err = svcs.table.UpsertSlice(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "web-x", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}}},
	})
	require.NoError(b, err)
	pol := newPolicies("n1", "", 0, slog.Default(), eps, &atomic.Bool{})
	pol.result.Store(shopResult)
	e := &enricher{node: "n1", pods: podLookup{local: eps, lister: pods.Lister(), index: pods.Informer().GetIndexer()}, services: svcs, policies: pol}

	clock, _ := flowevent.NewClock()
	ev := flowevent.Event{
		Src: netip.MustParseAddr("10.244.2.9"), Dst: netip.MustParseAddr("10.244.1.5"), SrcPort: 40000, DstPort: 8080,
		OrigDst: netip.MustParseAddr("10.96.0.50"), OrigDstPort: 80, Proto: 6, Verdict: flowevent.VerdictForwarded,
		Type: flowevent.TypeNew, Direction: flowevent.DirectionIngress, Ifindex: 12, PolicyID: 7,
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.enrich(&ev, clock)
	}
}

func TestEnrichCachesPodMetadataPerPodObject(t *testing.T) {
	ip := netip.MustParseAddr("10.244.1.5")
	pods := fakePods{ip: webPod}
	e := &enricher{node: "n1", pods: pods, services: fakeServices{}, policies: fakePolicies{}}
	ev := flowevent.Event{Src: ip, Dst: netip.MustParseAddr("10.244.2.9"), Proto: flowevent.Proto(maps.ProtoTCP)}
	clock := flowevent.Clock{}
	a, b := e.enrich(&ev, clock), e.enrich(&ev, clock)
	require.NotEmpty(t, a.Source.Labels)
	assert.Same(t, &a.Source.Labels[0], &b.Source.Labels[0], "one pod object's labels are made once")
	assert.NotEqual(t, a.UUID, b.UUID)
	updated := webPod.DeepCopy() // the informer replaces the object on update
	updated.Labels["tier"] = "front"
	pods[ip] = updated
	c := e.enrich(&ev, clock)
	assert.Contains(t, c.Source.Labels, "k8s:tier=front", "an updated pod's labels are read again")
	assert.Equal(t, &flow.Workload{Kind: "Deployment", Name: "web"}, c.Source.Workload)
}
