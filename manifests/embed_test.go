package manifests

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// docs splits rendered YAML into non-empty documents.
func docs(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func stripComments(d []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(d), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.TrimSpace(line) != "---" {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

func TestEveryManifestParsesAndUsesThePlaceholder(t *testing.T) {
	for _, dir := range []string{StarsDir, StarsDir + "/policies", APIsDir, APIsDir + "/policies"} {
		files, err := Files(dir)
		require.NoError(t, err)
		require.NotEmpty(t, files, dir)
		for _, f := range files {
			data, err := fs.ReadFile(FS, f)
			require.NoError(t, err)
			for _, d := range docs(t, data) {
				var tm typeMeta
				require.NoError(t, yaml.UnmarshalStrict(stripComments(d), &map[string]any{}), f)
				require.NoError(t, yaml.Unmarshal(d, &tm), f)
				assert.NotEmpty(t, tm.APIVersion, f)
				assert.NotEmpty(t, tm.Metadata.Name, f)
				if tm.Kind == "Deployment" {
					var dep appsv1.Deployment
					require.NoError(t, yaml.UnmarshalStrict(d, &dep), f)
					c := dep.Spec.Template.Spec.Containers[0]
					assert.Equal(t, DemoImagePlaceholder, c.Image, f)
					assert.Equal(t, corev1.PullNever, c.ImagePullPolicy, f)
					assert.Equal(t, dep.Spec.Selector.MatchLabels, pick(dep.Spec.Template.Labels, dep.Spec.Selector.MatchLabels), f)
				}
			}
		}
	}
}

func pick(m, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func TestStarsWorkloads(t *testing.T) {
	files, err := Files(StarsDir)
	require.NoError(t, err)
	var data []byte
	for _, f := range files {
		b, err := fs.ReadFile(FS, f)
		require.NoError(t, err)
		data = append(append(data, "\n---\n"...), b...)
	}
	deps := map[string]appsv1.Deployment{}
	svcs := map[string]corev1.Service{}
	nss := map[string]corev1.Namespace{}
	for _, d := range docs(t, data) {
		var tm typeMeta
		require.NoError(t, yaml.Unmarshal(d, &tm))
		switch tm.Kind {
		case "Deployment":
			var x appsv1.Deployment
			require.NoError(t, yaml.UnmarshalStrict(d, &x))
			deps[x.Namespace+"/"+x.Name] = x
		case "Service":
			var x corev1.Service
			require.NoError(t, yaml.UnmarshalStrict(d, &x))
			svcs[x.Namespace+"/"+x.Name] = x
		case "Namespace":
			var x corev1.Namespace
			require.NoError(t, yaml.UnmarshalStrict(d, &x))
			nss[x.Name] = x
		}
	}
	assert.Equal(t, map[string]string(nil), nss["stars"].Labels)
	assert.Equal(t, map[string]string{"role": "client"}, nss["client"].Labels)
	assert.Equal(t, map[string]string{"role": "management-ui"}, nss["management-ui"].Labels)

	tests := []struct {
		key, role string
		port      int32
		peers     []string
	}{
		{"stars/backend", "backend", 6379, []string{"frontend.stars:80", "backend.stars:6379", "client.client:9000"}},
		{"stars/frontend", "frontend", 80, []string{"frontend.stars:80", "backend.stars:6379", "client.client:9000"}},
		{"client/client", "client", 9000, []string{"frontend.stars:80", "backend.stars:6379"}},
		{"management-ui/management-ui", "management-ui", 9001, nil},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			dep, ok := deps[tt.key]
			require.True(t, ok)
			assert.Equal(t, tt.role, dep.Spec.Template.Labels["role"])
			c := dep.Spec.Template.Spec.Containers[0]
			assert.Equal(t, DemoImagePlaceholder, c.Image)
			assert.Equal(t, tt.port, c.Ports[0].ContainerPort)
			var peers []string
			for _, a := range c.Args {
				if p, ok := strings.CutPrefix(a, "--peer="); ok {
					peers = append(peers, p)
				}
			}
			assert.Equal(t, tt.peers, peers)
			svc, ok := svcs[tt.key]
			require.True(t, ok)
			assert.Equal(t, tt.port, svc.Spec.Ports[0].Port)
			assert.Equal(t, intstr.FromInt32(tt.port), svc.Spec.Ports[0].TargetPort)
			assert.Equal(t, map[string]string{"role": tt.role}, svc.Spec.Selector)
		})
	}
	ui := svcs["management-ui/management-ui"]
	assert.Equal(t, corev1.ServiceTypeNodePort, ui.Spec.Type)
	assert.Equal(t, int32(32500), ui.Spec.Ports[0].NodePort)
}

func TestStarsPolicySteps(t *testing.T) {
	want := map[string][]string{ // file -> namespace/name of its policies
		"stars/policies/1-default-deny.yaml":    {"stars/default-deny", "client/default-deny"},
		"stars/policies/2-allow-ui.yaml":        {"stars/allow-ui", "client/allow-ui"},
		"stars/policies/3-backend-policy.yaml":  {"stars/backend-policy"},
		"stars/policies/4-frontend-policy.yaml": {"stars/frontend-policy"},
	}
	tcp := corev1.ProtocolTCP
	for _, f := range StarsPolicySteps() {
		data, err := fs.ReadFile(FS, f)
		require.NoError(t, err)
		var got []string
		for _, d := range docs(t, data) {
			var np networkingv1.NetworkPolicy
			require.NoError(t, yaml.UnmarshalStrict(d, &np), f)
			got = append(got, np.Namespace+"/"+np.Name)
			assert.Empty(t, np.Spec.Egress, "stars policies are ingress-only")
			switch np.Name {
			case "default-deny":
				assert.Empty(t, np.Spec.PodSelector.MatchLabels)
				assert.Empty(t, np.Spec.Ingress)
			case "allow-ui":
				require.Len(t, np.Spec.Ingress, 1)
				assert.Equal(t, map[string]string{"role": "management-ui"}, np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels)
				assert.Nil(t, np.Spec.Ingress[0].From[0].PodSelector)
				assert.Empty(t, np.Spec.Ingress[0].Ports)
			case "backend-policy":
				assert.Equal(t, map[string]string{"role": "backend"}, np.Spec.PodSelector.MatchLabels)
				assert.Equal(t, map[string]string{"role": "frontend"}, np.Spec.Ingress[0].From[0].PodSelector.MatchLabels)
				p := intstr.FromInt32(6379)
				assert.Equal(t, []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}, np.Spec.Ingress[0].Ports)
			case "frontend-policy":
				assert.Equal(t, map[string]string{"role": "frontend"}, np.Spec.PodSelector.MatchLabels)
				assert.Equal(t, map[string]string{"role": "client"}, np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels)
				p := intstr.FromInt32(80)
				assert.Equal(t, []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}, np.Spec.Ingress[0].Ports)
			default:
				t.Errorf("unexpected policy %s in %s", np.Name, f)
			}
		}
		assert.Equal(t, want[f], got, f)
	}
}

func TestFilesRejectsUnknownDir(t *testing.T) {
	_, err := Files("nope")
	require.ErrorContains(t, err, "want stars, apis")
}
