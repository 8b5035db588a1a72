package scenarios

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/starlab-dev/starlab/internal/helmrelease"
)

func fakeEnv(objs ...runtime.Object) *Env {
	return &Env{Client: fake.NewClientset(objs...)}
}

func testPod(name, phase, ip string, ready bool) *corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: svcNamespace, Labels: map[string]string{"app": "web"}},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(phase), PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}},
	}
}

func TestReadyPods(t *testing.T) {
	e := fakeEnv(
		testPod("ready", "Running", "10.244.1.2", true),
		testPod("not-ready", "Running", "10.244.1.3", false),
		testPod("pending", "Pending", "", false),
	)
	pods, err := e.readyPods(context.Background(), svcNamespace, "app=web")
	require.NoError(t, err)
	require.Len(t, pods, 1)
	assert.Equal(t, "ready", pods[0].Name)

	_, err = e.readyPods(context.Background(), svcNamespace, "app=nothing")
	assert.ErrorContains(t, err, "no ready pod matches app=nothing")
}

func TestNodeIPsAndNames(t *testing.T) {
	node := func(name, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	e := fakeEnv(node("lab-worker2", "172.18.0.4"), node("lab-control-plane", "172.18.0.2"), node("lab-worker", "172.18.0.3"))
	ips, err := e.nodeIPs(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"lab-control-plane": "172.18.0.2", "lab-worker": "172.18.0.3", "lab-worker2": "172.18.0.4"}, ips)
	names, err := e.nodeNames(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"lab-control-plane", "lab-worker", "lab-worker2"}, names)

	_, err = fakeEnv().nodeIPs(context.Background())
	assert.ErrorContains(t, err, "no node has an InternalIP")
}

func TestScaleDeployment(t *testing.T) {
	two := int32(2)
	e := fakeEnv(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: svcNamespace}, Spec: appsv1.DeploymentSpec{Replicas: &two}})
	require.NoError(t, e.scaleDeployment(context.Background(), svcNamespace, "web", 3))
	d, err := e.Client.AppsV1().Deployments(svcNamespace).Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, int32(3), *d.Spec.Replicas)
	assert.NoError(t, e.scaleDeployment(context.Background(), svcNamespace, "missing", 1), "a missing Deployment is no error")
}

func TestCurrentChartValues(t *testing.T) {
	ns := helmrelease.DefaultNamespace
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "starlab-agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "agent", Image: "localhost/starlab/agent:abc",
			Env: []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "172.18.0.2"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "6443"}, {Name: "OTHER", Value: "x"}},
		}}}}}}
	obs := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "starlab-observer", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "observer", Image: "localhost/starlab/observer:def"}}}}}}
	vals, err := fakeEnv(ds, obs).currentChartValues(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"agent":    map[string]any{"image": "localhost/starlab/agent:abc", "apiServer": map[string]any{"host": "172.18.0.2", "port": 6443}},
		"observer": map[string]any{"image": "localhost/starlab/observer:def"},
	}, vals)

	_, err = fakeEnv().currentChartValues(context.Background())
	assert.ErrorContains(t, err, "starlab-agent DaemonSet")
}
