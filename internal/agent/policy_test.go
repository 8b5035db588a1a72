package agent

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	corev1listers "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// policyFixture is the policy part over in-memory listers, endpoints and maps.
type policyFixture struct {
	p       *policies
	pods    cache.Indexer
	eps     *endpoints
	maps    *fakePolicyMaps
	netpols cache.Indexer
	cnps    cache.Indexer
	client  *fake.Clientset
	events  *record.FakeRecorder
}

func newPolicyFixture(t *testing.T) *policyFixture {
	t.Helper()
	return newPolicyFixtureIn(t, t.TempDir())
}

// newPolicyFixtureIn builds the fixture over the agent state directory stateDir (a restarted agent
// reuses its predecessor's).
func newPolicyFixtureIn(t *testing.T, stateDir string) *policyFixture {
	t.Helper()
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nss := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	netpols := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	require.NoError(t, pods.Add(webPod))
	require.NoError(t, pods.Add(clientPod))
	require.NoError(t, nss.Add(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"kubernetes.io/metadata.name": "shop"}}}))
	n1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}}}}
	require.NoError(t, nodes.Add(n1))

	cfg := DefaultConfig()
	cfg.NodeName = "n1"
	cfg.StateDir = stateDir
	cnps := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	f := &policyFixture{pods: pods, maps: newFakePolicyMaps(), netpols: netpols, cnps: cnps, client: fake.NewClientset(n1), events: record.NewFakeRecorder(10)}
	f.eps = newEndpoints(cfg, slog.Default(), nil)
	f.p = newPolicies("n1", cfg.IdentitiesPath(), 0, slog.Default(), f.eps, &atomic.Bool{})
	f.p.maps = f.maps
	f.p.nodes = f.client.CoreV1().Nodes()
	f.p.recorder = f.events
	f.p.sources = policySources{
		pods: corev1listers.NewPodLister(pods), namespaces: corev1listers.NewNamespaceLister(nss),
		nodes: corev1listers.NewNodeLister(nodes), netpols: networkinglisters.NewNetworkPolicyLister(netpols),
		cnps: cnplisters.NewClusterNetworkPolicyLister(cnps),
	}
	f.p.synced.Store(true)
	return f
}

// addWeb registers the local endpoint of webPod at ifindex 12.
func (f *policyFixture) addWeb(t *testing.T) *Endpoint {
	t.Helper()
	ep := &Endpoint{Ifindex: 12}
	ep.ContainerID, ep.PodNamespace, ep.PodName, ep.IP, ep.MAC = "web", "shop", webPod.Name, "10.244.1.5", "02:00:00:00:00:05"
	require.NoError(t, ep.parse())
	f.eps.register(ep)
	return ep
}

func allowClient(rv string) *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(8080)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "allow-client", ResourceVersion: rv},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
}

func TestPolicyPartProgramsChanges(t *testing.T) {
	f := newPolicyFixture(t)
	f.addWeb(t)
	ctx := t.Context()

	// No policy: the endpoint gets its identity, unenforced; the ipcache gets pods and the node.
	require.NoError(t, f.p.compileAndApply(ctx))
	w := f.maps.writes()
	require.Len(t, w, 2)
	assert.Equal(t, "ipcache upsert 3", w[0])
	assert.Regexp(t, `^endpoint 12 identity \d+ flags 0$`, w[1])
	st := f.maps.s.Endpoints[12]
	assert.GreaterOrEqual(t, st.Identity, policy.FirstPodIdentity)
	assert.Equal(t, netip.MustParseAddr("10.244.1.5"), st.IP)

	// Nothing changed: nothing written.
	require.NoError(t, f.p.compileAndApply(ctx))
	assert.Empty(t, f.maps.writes())

	// A policy selects the endpoint: allow entries first, then the enforcement flag.
	np := allowClient("41")
	require.NoError(t, f.netpols.Add(np))
	f.p.onEvent(np)
	require.NoError(t, f.p.compileAndApply(ctx))
	assert.Equal(t, []string{"policy upsert 1", "endpoint 12 identity " + itoa(st.Identity) + " flags 1"}, f.maps.writes())
	assert.Equal(t, uint64(41), f.p.programmedRevision.Load())
	assert.Equal(t, "shop/allow-client", f.p.PolicyResult().Policies[1].String())

	// The policy goes: the entries are deleted before the flag clears.
	require.NoError(t, f.netpols.Delete(np))
	f.p.onEvent(cache.DeletedFinalStateUnknown{Obj: allowClient("42")})
	require.NoError(t, f.p.compileAndApply(ctx))
	assert.Equal(t, []string{"policy delete 1", "endpoint 12 identity " + itoa(st.Identity) + " flags 0"}, f.maps.writes())
	assert.Equal(t, uint64(42), f.p.programmedRevision.Load())

	// The revision lands on the Node.
	f.p.reportRevision(ctx)
	n, err := f.client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "42", n.Annotations[AnnotationPolicyRevision])
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestPolicyPartEndpointWrites(t *testing.T) {
	f := newPolicyFixture(t)
	ep := f.addWeb(t)

	// Before any compilation: deny-all (fail closed).
	require.NoError(t, f.p.writeEndpoint(12, ep.base(), false))
	assert.Equal(t, maps.EndpointPolicyError, f.maps.s.Endpoints[12].Flags)
	// Restart: a value already programmed stays.
	require.NoError(t, f.p.writeEndpoint(12, ep.base(), true))
	assert.Len(t, f.maps.writes(), 1)

	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Zero(t, f.maps.s.Endpoints[12].Flags&maps.EndpointPolicyError)
	f.maps.writes()

	// The programmed record follows every endpoint write: an entry removed outside a compilation
	// is written again by the next one, and a write of the value already there is skipped.
	id := itoa(f.p.PolicyResult().Endpoints[12].Identity)
	require.NoError(t, f.p.removeEndpoint(12))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	require.NoError(t, f.p.writeEndpoint(12, ep.base(), false))
	assert.Equal(t, []string{"delete endpoint 12", "endpoint 12 identity " + id + " flags 0"}, f.maps.writes())

	// Entries no record owns are removed.
	f.maps.s.Endpoints[99] = maps.Endpoint{IP: netip.MustParseAddr("10.244.1.99")}
	removed, err := f.p.keepEndpoints(map[uint32]bool{12: true})
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.244.1.99")}, removed, "their IPs are returned for the conntrack flush")
	assert.NotContains(t, f.maps.s.Endpoints, uint32(99))
	assert.Contains(t, f.maps.s.Endpoints, uint32(12))
}

func TestPolicyPartProblemsAndErrors(t *testing.T) {
	f := newPolicyFixture(t)
	f.addWeb(t)
	bad := allowClient("50")
	bad.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}
	require.NoError(t, f.netpols.Add(bad))

	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Equal(t, maps.EndpointPolicyError, f.maps.s.Endpoints[12].Flags&maps.EndpointPolicyError, "a broken policy denies the pods of its namespace")
	require.Len(t, f.events.Events, 1)
	assert.Contains(t, <-f.events.Events, "PolicyUnrepresentable")
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Empty(t, f.events.Events, "one Event per problem")

	// A failed write keeps the programmed record: the next compilation writes it all again.
	require.NoError(t, f.netpols.Delete(bad))
	f.maps.fail = assert.AnError
	require.ErrorIs(t, f.p.compileAndApply(t.Context()), assert.AnError)
	f.maps.fail = nil
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Zero(t, f.maps.s.Endpoints[12].Flags&maps.EndpointPolicyError)
}

func TestPolicyPartSkipsBeforeSync(t *testing.T) {
	f := newPolicyFixture(t)
	f.addWeb(t)
	f.p.synced.Store(false)
	require.NoError(t, f.p.compileNow(t.Context()))
	assert.Empty(t, f.maps.writes(), "no compilation before the informers synced")
	f.p.synced.Store(true)
	require.NoError(t, f.p.compileNow(t.Context()))
	assert.NotEmpty(t, f.maps.writes())
}

// attackerPod is a pod that appears while the agent is down: its labels sort before client's, so an
// allocator numbering from scratch gives it client's old identity.
var attackerPod = &corev1.Pod{
	ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "attacker", Labels: map[string]string{"app": "attacker"}},
	Spec:       corev1.PodSpec{NodeName: "n2"},
	Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.66"},
}

func ipcacheIdentity(s policy.State, ip string) uint32 {
	return s.IPCache[netip.PrefixFrom(netip.MustParseAddr(ip), 32)].Identity
}

// TestPolicyPartRestartKeepsIdentities restarts the policy part over the same maps and state
// directory (issue 11 item 1): every identity and policy id keeps its number, a pod that appeared
// meanwhile gets a number no programmed entry references, and the first apply writes only that
// pod's ipcache entry.
func TestPolicyPartRestartKeepsIdentities(t *testing.T) {
	dir := t.TempDir()
	f := newPolicyFixtureIn(t, dir)
	f.addWeb(t)
	require.NoError(t, f.netpols.Add(allowClient("7")))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	before := f.maps.s
	clientID, webID := ipcacheIdentity(before, "10.244.2.9"), ipcacheIdentity(before, "10.244.1.5")
	require.Contains(t, before.Policy, maps.PolicyKey{EpID: 12, PeerID: clientID, Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16})
	referenced := map[uint32]bool{}
	for k := range before.Policy {
		referenced[k.PeerID] = true
	}
	for _, e := range before.IPCache {
		referenced[e.Identity] = true
	}
	f.maps.writes()

	// Restart: a new policy part over the same (pinned) maps and state directory.
	g := newPolicyFixtureIn(t, dir)
	g.maps, g.p.maps = f.maps, f.maps
	g.addWeb(t)
	require.NoError(t, g.netpols.Add(allowClient("7")))
	require.NoError(t, g.pods.Add(attackerPod))
	require.NoError(t, g.p.compileAndApply(t.Context()))
	after := g.maps.s
	assert.Equal(t, clientID, ipcacheIdentity(after, "10.244.2.9"), "client keeps its identity")
	assert.Equal(t, webID, ipcacheIdentity(after, "10.244.1.5"), "web keeps its identity")
	assert.Equal(t, webID, after.Endpoints[12].Identity)
	attackerID := ipcacheIdentity(after, "10.244.2.66")
	assert.GreaterOrEqual(t, attackerID, policy.FirstPodIdentity)
	assert.False(t, referenced[attackerID], "the new pod's identity %d was in use before the restart", attackerID)
	assert.Equal(t, []string{"ipcache upsert 1", "endpoint 12 identity " + strconv.Itoa(int(webID)) + " flags 1"}, g.maps.writes(),
		"only the new pod's ipcache entry is written, then web's new policy revision (its peers changed)")
	assert.Equal(t, "shop/allow-client", g.p.PolicyResult().Policies[1].String(), "policy ids carried over")
}

// allowClientTwoPorts selects web for ingress from client on 8080 and 9090: two sl_policy entries.
func allowClientTwoPorts(rv string) *networkingv1.NetworkPolicy {
	np := allowClient(rv)
	p2 := intstr.FromInt32(9090)
	np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Port: &p2})
	return np
}

func policyEntriesOf(s policy.State, epID uint32) int {
	n := 0
	for k := range s.Policy {
		if k.EpID == epID {
			n++
		}
	}
	return n
}

// TestPolicyPartFailsClosedWhenPolicyCannotBeWritten (issue 11 item 2): a policy whose entries do
// not fit sl_policy, or whose write fails, sets the endpoint deny-all with an Event and a metric;
// it is never left on its old allow-all. Once the entries can be written, the endpoint gets them.
func TestPolicyPartFailsClosedWhenPolicyCannotBeWritten(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*fakePolicyMaps)
		clear  func(*fakePolicyMaps)
		reason string
	}{
		{
			name:   "sl_policy too small",
			setup:  func(m *fakePolicyMaps) { m.policyMax = 1 },
			clear:  func(m *fakePolicyMaps) { m.policyMax = 2 },
			reason: "capacity",
		},
		{
			name:   "sl_policy write fails",
			setup:  func(m *fakePolicyMaps) { m.failPolicyUpserts = syscall.ENOMEM },
			clear:  func(m *fakePolicyMaps) { m.failPolicyUpserts = nil },
			reason: "write",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPolicyFixture(t)
			f.addWeb(t)
			failures := map[string]int{}
			f.p.applyFailures = func(reason string, n int) { failures[reason] += n }
			require.NoError(t, f.p.compileAndApply(t.Context()))
			require.Zero(t, f.maps.s.Endpoints[12].Flags, "no policy: web allows all")

			tt.setup(f.maps)
			require.NoError(t, f.netpols.Add(allowClientTwoPorts("9")))
			_ = f.p.compileAndApply(t.Context()) // a write failure is also returned (the loop retries)
			assert.Equal(t, maps.EndpointPolicyError|maps.EndpointPolicyWriteFailed, f.maps.s.Endpoints[12].Flags&(maps.EndpointPolicyError|maps.EndpointPolicyWriteFailed),
				"web is deny-all (dropped as POLICY_WRITE_FAILED), not left on allow-all")
			assert.Zero(t, policyEntriesOf(f.maps.s, 12), "no partial entries of web are left")
			assert.Equal(t, 1, failures[tt.reason], "starlab_policy_apply_failures_total{reason=%q}", tt.reason)
			require.NotEmpty(t, f.events.Events)
			assert.Contains(t, <-f.events.Events, "PolicyApplyFailed")

			tt.clear(f.maps)
			require.NoError(t, f.p.compileAndApply(t.Context()))
			assert.Equal(t, maps.EndpointIngressEnforced, f.maps.s.Endpoints[12].Flags, "entries fit again: enforced, no error flag")
			assert.Equal(t, 2, policyEntriesOf(f.maps.s, 12))
		})
	}
}

// TestPolicyPartTestSkipEnforcementSwitch: with the test-only switch on, endpoints selected by a
// policy are programmed without enforcement (the policy entries stay); off again, enforcement
// returns with a new policy revision, so established flows are checked again.
func TestPolicyPartTestSkipEnforcementSwitch(t *testing.T) {
	f := newPolicyFixture(t)
	ep := f.addWeb(t)
	skip := true
	f.p.skipEnforcement = func() bool { return skip }
	require.NoError(t, f.netpols.Add(allowClient("41")))
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Zero(t, f.maps.s.Endpoints[12].Flags&maps.EndpointIngressEnforced, "switch on: not enforced")
	assert.NotEmpty(t, f.maps.s.Policy, "the policy entries are still written")
	require.NoError(t, f.p.writeEndpoint(12, ep.base(), false))
	assert.Zero(t, f.maps.s.Endpoints[12].Flags&maps.EndpointIngressEnforced, "an endpoint write keeps the switch")

	before := f.maps.s.Endpoints[12].PolicyRevision
	skip = false
	require.NoError(t, f.p.compileAndApply(t.Context()))
	assert.Equal(t, maps.EndpointIngressEnforced, f.maps.s.Endpoints[12].Flags&maps.EndpointIngressEnforced, "switch off: enforced again")
	assert.NotEqual(t, before, f.maps.s.Endpoints[12].PolicyRevision)
}

func TestTestSkipEnforcementPath(t *testing.T) {
	cfg := DefaultConfig()
	assert.Equal(t, "/var/lib/starlab/TEST-SKIP-ENFORCEMENT", cfg.TestSkipEnforcementPath())
}
