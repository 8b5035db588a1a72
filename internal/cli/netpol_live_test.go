package cli

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// TestClusterFromAPI: what `starlab explain` reads from a live lab, against a fake API server.
func TestClusterFromAPI(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stars"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "client", Labels: map[string]string{"role": "client"}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "stars", Name: "frontend-7d9f", Labels: map[string]string{"role": "frontend"}},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "probe", ContainerPort: 80}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "client", Name: "client-1", Labels: map[string]string{"role": "client"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.7"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "client", Name: "done"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.244.2.8"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "stars", Name: "frontend-policy"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}}}}}},
	)
	c, err := clusterFromAPI(context.Background(), cs, nil)
	require.NoError(t, err)
	assert.Len(t, c.Pods, 2, "finished pods are left out")
	o, err := oracle.New(c)
	require.NoError(t, err)
	src, err := o.ParseEndpoint("10.244.2.7")
	require.NoError(t, err)
	v, err := o.Evaluate(src, oracle.PodEndpoint("stars", "frontend-7d9f"), 80, corev1.ProtocolTCP)
	require.NoError(t, err)
	assert.True(t, v.Allowed, v.Reason)
	assert.Equal(t, "pod client/client-1", v.From)
	assert.Equal(t, []oracle.RuleRef{{Policy: "stars/frontend-policy", Rule: 0}}, v.Ingress.AllowedBy)
}

// TestClusterFromAPIReadsClusterNetworkPolicies: the live oracle sees the Admin tier, and explains the walk.
func TestClusterFromAPIReadsClusterNetworkPolicies(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stars", Labels: map[string]string{"kubernetes.io/metadata.name": "stars"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "client"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "stars", Name: "frontend"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "client", Name: "client"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.2.7"}},
	)
	np := npfake.NewSimpleClientset(&policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "protect-stars"},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{Tier: policyv1beta1.AdminTier, Priority: 10,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "stars"}}},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{{Name: "no-client", Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}}})
	c, err := clusterFromAPI(context.Background(), cs, np)
	require.NoError(t, err)
	require.Len(t, c.ClusterPolicies, 1)
	o, err := oracle.New(c)
	require.NoError(t, err)
	v, err := o.Evaluate(oracle.PodEndpoint("client", "client"), oracle.PodEndpoint("stars", "frontend"), 80, corev1.ProtocolTCP)
	require.NoError(t, err)
	assert.False(t, v.Allowed)
	assert.Equal(t, "Admin: deny by cnp/protect-stars ingress rule 0 (no-client)", v.Ingress.Reason)
}
