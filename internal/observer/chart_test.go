package observer

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/helmrelease"
)

// TestChartRendersObserver renders the real chart and checks the observer's Deployment, Service and
// RBAC agree with what the observer and `starlab observe` expect.
func TestChartRendersObserver(t *testing.T) {
	out, err := helmrelease.Render(context.Background(), helmrelease.Options{
		Chart: charts.Starlab, ChartDir: "starlab",
		Values: map[string]any{
			"agent":    map[string]any{"apiServer": map[string]any{"host": "172.18.0.2", "port": 6443}},
			"observer": map[string]any{"image": "localhost/starlab/starlab-observer:abc123"},
		},
	})
	require.NoError(t, err)
	docs := map[string]string{}
	for _, d := range strings.Split(out, "\n---") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		require.NoError(t, yaml.Unmarshal([]byte(d), &meta))
		if strings.HasPrefix(meta.Metadata.Name, "starlab-observer") {
			docs[meta.Kind] = d
		}
	}
	for _, k := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		assert.Contains(t, docs, k)
	}
	var dep appsv1.Deployment
	require.NoError(t, yaml.Unmarshal([]byte(docs["Deployment"]), &dep))
	assert.Equal(t, helmrelease.DefaultNamespace, dep.Namespace)
	assert.Equal(t, DefaultNamespace, dep.Namespace, "starlab observe port-forwards here")
	assert.Equal(t, "starlab-observer", dep.Spec.Template.Labels["app.kubernetes.io/name"], "FindPod selects %s", PodSelector)
	c := dep.Spec.Template.Spec.Containers[0]
	assert.Equal(t, "localhost/starlab/starlab-observer:abc123", c.Image)
	assert.Equal(t, corev1.PullNever, c.ImagePullPolicy)
	assert.Contains(t, c.Args, "--listen=:4245")
	assert.Contains(t, c.Args, "--agent-port=4245")
	assert.Contains(t, c.Args, "--buffer=100000")
	assert.Contains(t, c.Args, "--merge-window=200ms")
	assert.Contains(t, c.Env, corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "172.18.0.2"})
	var svc corev1.Service
	require.NoError(t, yaml.Unmarshal([]byte(docs["Service"]), &svc))
	assert.Equal(t, int32(Port), svc.Spec.Ports[0].Port)
}
