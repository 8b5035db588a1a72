package bundle

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

func starlabPod(name, app string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DefaultNamespace, Labels: map[string]string{"app.kubernetes.io/name": app}},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: statuses},
	}
}

func TestCollectLogsIncludesPreviousContainers(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	cs := fake.NewClientset(
		starlabPod("starlab-agent-a", "starlab-agent", corev1.ContainerStatus{Name: "agent", State: running}),
		starlabPod("starlab-agent-b", "starlab-agent", corev1.ContainerStatus{
			Name: "agent", State: running, RestartCount: 2,
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}},
		}),
		starlabPod("starlab-observer-x", "starlab-observer", corev1.ContainerStatus{
			Name: "observer", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		}),
		starlabPod("other", "demo", corev1.ContainerStatus{Name: "demo", State: running}),
	)
	r, _ := newTestRun(t, time.Minute)
	defer r.archive.Abort()
	r.cs = cs
	r.step(context.Background(), "logs", r.collectLogs)

	var names []string
	for _, f := range r.archive.Files() {
		names = append(names, f.Name)
	}
	assert.ElementsMatch(t, []string{
		"logs/starlab-system/starlab-agent-a/agent.log",
		"logs/starlab-system/starlab-agent-b/agent.log",
		"logs/starlab-system/starlab-agent-b/agent.previous.log",
	}, names)
	require.Len(t, r.failures, 1)
	assert.Equal(t, "logs/starlab-system/starlab-observer-x/observer.log", r.failures[0].Item)
	assert.Contains(t, r.failures[0].Error, "ContainerCreating")
}

func TestCollectLogsWithoutStarlabPods(t *testing.T) {
	r, _ := newTestRun(t, time.Minute)
	defer r.archive.Abort()
	r.cs = fake.NewClientset()
	r.step(context.Background(), "logs", r.collectLogs)
	require.Len(t, r.failures, 1)
	assert.Contains(t, r.failures[0].Error, "no starlab pods")
	assert.Contains(t, r.failures[0].Error, "is the chart installed")
}

func TestDumpObjectsDropsManagedFields(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "NetworkPolicy",
		"metadata": map[string]any{
			"name": "deny", "namespace": "stars",
			"managedFields": []any{map[string]any{"manager": "kubectl"}},
		},
		"spec": map[string]any{"podSelector": map[string]any{}},
	}}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "NetworkPolicyList"}, obj)
	data, err := dumpObjects(context.Background(), dyn, gvr, "", nil)
	require.NoError(t, err)

	var list struct {
		Kind  string           `json:"kind"`
		Items []map[string]any `json:"items"`
	}
	require.NoError(t, yaml.Unmarshal(data, &list))
	assert.Equal(t, "List", list.Kind)
	require.Len(t, list.Items, 1)
	assert.Equal(t, "NetworkPolicy", list.Items[0]["kind"])
	meta := list.Items[0]["metadata"].(map[string]any)
	assert.Equal(t, "deny", meta["name"])
	assert.NotContains(t, meta, "managedFields")

	b, _ := json.Marshal(list.Items[0]["spec"])
	assert.JSONEq(t, `{"podSelector":{}}`, string(b))
}
