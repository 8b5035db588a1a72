package agent

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// terminating returns a copy of pod with its deletionTimestamp set (still running: graceful
// termination).
func terminating(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	now := metav1.Now()
	p.DeletionTimestamp = &now
	return p
}

// TestTerminatingPodKeepsIdentityUntilGone (issue 11, "a terminating pod keeps its identity until it
// is gone"): a pod with deletionTimestamp set keeps its ipcache entry, so its in-flight traffic is
// judged by its labels (web still allows client) and not as world; the entry goes when the pod's IP
// is released (local pod: its endpoint is removed by CNI DEL) or a live pod takes the address, or
// when the pod object is deleted.
func TestTerminatingPodKeepsIdentityUntilGone(t *testing.T) {
	f := newPolicyFixture(t)
	web := f.addWeb(t)
	require.NoError(t, f.netpols.Add(allowClient("7")))
	ctx := t.Context()
	require.NoError(t, f.p.compileAndApply(ctx))
	clientID, webID := ipcacheIdentity(f.maps.s, "10.244.2.9"), ipcacheIdentity(f.maps.s, "10.244.1.5")
	require.GreaterOrEqual(t, clientID, policy.FirstPodIdentity)
	allow := maps.PolicyKey{EpID: 12, PeerID: clientID, Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16}
	require.Contains(t, f.maps.s.Policy, allow)

	// Both pods start terminating (remote client, local web with its endpoint still there).
	require.NoError(t, f.pods.Update(terminating(clientPod)))
	require.NoError(t, f.pods.Update(terminating(webPod)))
	require.NoError(t, f.p.compileAndApply(ctx))
	assert.Equal(t, clientID, ipcacheIdentity(f.maps.s, "10.244.2.9"), "a terminating remote pod keeps its identity")
	assert.Equal(t, webID, ipcacheIdentity(f.maps.s, "10.244.1.5"), "a terminating local pod keeps its identity while its endpoint exists")
	assert.Contains(t, f.maps.s.Policy, allow, "web still allows the terminating client")
	assert.Equal(t, webID, f.maps.s.Endpoints[12].Identity)
	res := f.p.PolicyResult()
	allowed, _ := res.Decide(12, maps.Ingress, clientPodIP(), maps.ProtoTCP, 8080)
	assert.True(t, allowed, "the terminating client's traffic is judged by its labels, not as world")

	// A new pod on n2 gets the terminating client's address: the live pod wins the entry.
	reuse := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "newcomer", Labels: map[string]string{"app": "newcomer"}},
		Spec:       corev1.PodSpec{NodeName: "n2"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.9"},
	}
	require.NoError(t, f.pods.Add(reuse))
	require.NoError(t, f.p.compileAndApply(ctx))
	newID := ipcacheIdentity(f.maps.s, "10.244.2.9")
	assert.NotEqual(t, clientID, newID)
	assert.GreaterOrEqual(t, newID, policy.FirstPodIdentity, "the live pod's identity, not unmanaged")
	require.NoError(t, f.pods.Delete(reuse))

	// The local pod's endpoint goes (CNI DEL released the IP): its entry goes, the pod object stays.
	f.eps.unregister(web.ContainerID)
	require.NoError(t, f.p.compileAndApply(ctx))
	_, ok := f.maps.s.IPCache[pfx("10.244.1.5")]
	assert.False(t, ok, "the released address of a terminating local pod has no identity")
	assert.Equal(t, clientID, ipcacheIdentity(f.maps.s, "10.244.2.9"))

	// The client's pod object is deleted: its entry goes.
	require.NoError(t, f.pods.Delete(terminating(clientPod)))
	require.NoError(t, f.p.compileAndApply(ctx))
	_, ok = f.maps.s.IPCache[pfx("10.244.2.9")]
	assert.False(t, ok, "a deleted pod has no identity")
}

func pfx(ip string) netip.Prefix { return netip.PrefixFrom(netip.MustParseAddr(ip), 32) }

func clientPodIP() netip.Addr { return netip.MustParseAddr(clientPod.Status.PodIP) }
