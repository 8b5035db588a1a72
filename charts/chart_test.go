package charts_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/agentapi"
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.Starlab, "starlab", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(charts.Starlab, path)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(path, "starlab/"), Data: b})
		return nil
	})
	require.NoError(t, err)
	c, err := loader.LoadFiles(files)
	require.NoError(t, err)
	return c
}

// writeChart copies the embedded chart to disk: helm's linter reads a directory.
func writeChart(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "starlab")
	err := fs.WalkDir(charts.Starlab, "starlab", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(path, "starlab"))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(charts.Starlab, path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	require.NoError(t, err)
	return dir
}

func TestLint(t *testing.T) {
	dir := writeChart(t)
	for name, vals := range map[string]map[string]any{
		"defaults":   nil,
		"mutual TLS": {"tls": map[string]any{"enabled": true}},
		"lab values": {"agent": map[string]any{"image": "localhost/starlab/starlab-agent:abc123", "apiServer": map[string]any{"host": "172.18.0.2", "port": 6443}}},
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(dir, vals, "kube-system", nil)
			for _, m := range l.Messages {
				assert.Less(t, m.Severity, support.WarningSev, "lint: %s", m)
			}
		})
	}
	l := lint.AllWithKubeVersion(dir, map[string]any{"agent": map[string]any{"listenPort": "x"}}, "kube-system", nil)
	assert.GreaterOrEqual(t, l.HighestSeverity, support.ErrorSev, "schema rejects a bad port")
}

func render(t *testing.T, vals map[string]any) map[string][]byte {
	t.Helper()
	c := loadChart(t)
	cfg := &action.Configuration{}
	inst := action.NewInstall(cfg)
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "starlab", "kube-system"
	inst.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
	rel, err := inst.Run(c, vals)
	require.NoError(t, err)
	objs := map[string][]byte{}
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		require.NoError(t, sigyaml.Unmarshal([]byte(doc), &meta), doc)
		objs[meta.Kind+"/"+meta.Metadata.Name] = []byte(doc)
	}
	return objs
}

func TestRender(t *testing.T) {
	objs := render(t, map[string]any{"agent": map[string]any{
		"image":     "localhost/starlab/starlab-agent:abc123",
		"apiServer": map[string]any{"host": "172.18.0.2", "port": 6443},
	}})
	for _, k := range []string{"ServiceAccount/starlab-agent", "ClusterRole/starlab-agent", "ClusterRoleBinding/starlab-agent", "DaemonSet/starlab-agent"} {
		require.Contains(t, objs, k)
	}

	var ds appsv1.DaemonSet
	require.NoError(t, sigyaml.UnmarshalStrict(objs["DaemonSet/starlab-agent"], &ds))
	assert.Equal(t, "kube-system", ds.Namespace)
	pod := ds.Spec.Template.Spec
	assert.True(t, pod.HostNetwork)
	assert.False(t, pod.HostPID)
	assert.Equal(t, "starlab-agent", ds.Spec.Template.Labels["app.kubernetes.io/name"])
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Equal(t, "localhost/starlab/starlab-agent:abc123", c.Image)
	assert.Equal(t, corev1.PullNever, c.ImagePullPolicy)
	require.NotNil(t, c.SecurityContext.Privileged)
	assert.True(t, *c.SecurityContext.Privileged)
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	assert.Equal(t, "172.18.0.2", env["KUBERNETES_SERVICE_HOST"])
	assert.Equal(t, "6443", env["KUBERNETES_SERVICE_PORT"])
	assert.Contains(t, env, "NODE_NAME")

	tol := false
	for _, tl := range pod.Tolerations {
		if tl.Operator == corev1.TolerationOpExists && tl.Key == "" {
			tol = true
		}
	}
	assert.True(t, tol, "tolerates control-plane and not-ready taints")

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	require.Contains(t, mounts, "/sys/fs/bpf")
	assert.Equal(t, corev1.MountPropagationBidirectional, *mounts["/sys/fs/bpf"].MountPropagation)
	for _, p := range []string{"/host/opt/cni/bin", "/host/etc/cni/net.d", "/var/run/starlab", "/var/lib/starlab", "/lib/modules"} {
		assert.Contains(t, mounts, p)
	}
	assert.True(t, mounts["/lib/modules"].ReadOnly)
	hostPaths := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = true
		}
	}
	for _, p := range []string{"/sys/fs/bpf", "/opt/cni/bin", "/etc/cni/net.d", "/var/run/starlab", "/var/lib/starlab", "/lib/modules"} {
		assert.True(t, hostPaths[p], "hostPath %s", p)
	}

	var cr rbacv1.ClusterRole
	require.NoError(t, sigyaml.UnmarshalStrict(objs["ClusterRole/starlab-agent"], &cr))
	can := map[string]map[string]bool{}
	for _, r := range cr.Rules {
		for _, res := range r.Resources {
			if can[res] == nil {
				can[res] = map[string]bool{}
			}
			for _, v := range r.Verbs {
				can[res][v] = true
			}
		}
	}
	for res, verbs := range map[string][]string{
		"nodes": {"get", "list", "watch", "patch"}, "pods": {"list", "watch"}, "namespaces": {"list", "watch"},
		"services": {"list", "watch"}, "endpointslices": {"list", "watch"}, "networkpolicies": {"list", "watch"},
		"events": {"create"}, "daemonsets": {"get"},
	} {
		for _, v := range verbs {
			assert.True(t, can[res][v], "%s %s", v, res)
		}
	}
}

func TestRenderDefaultsKeepInClusterAPIServer(t *testing.T) {
	objs := render(t, nil)
	var ds appsv1.DaemonSet
	require.NoError(t, sigyaml.UnmarshalStrict(objs["DaemonSet/starlab-agent"], &ds))
	for _, e := range ds.Spec.Template.Spec.Containers[0].Env {
		assert.NotEqual(t, "KUBERNETES_SERVICE_HOST", e.Name)
	}
}

// TestRenderExternalIPs: agent.services.externalIPs reaches the agent as --external-ips (default
// allow, as kube-proxy), and the schema refuses anything but allow and deny.
func TestRenderExternalIPs(t *testing.T) {
	tests := []struct {
		name  string
		value any // nil: chart default
		want  string
	}{
		{name: "default", want: "--external-ips=allow"},
		{name: "allow", value: "allow", want: "--external-ips=allow"},
		{name: "deny", value: "deny", want: "--external-ips=deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vals map[string]any
			if tt.value != nil {
				vals = map[string]any{"agent": map[string]any{"services": map[string]any{"externalIPs": tt.value}}}
			}
			var ds appsv1.DaemonSet
			require.NoError(t, sigyaml.UnmarshalStrict(render(t, vals)["DaemonSet/starlab-agent"], &ds))
			assert.Contains(t, ds.Spec.Template.Spec.Containers[0].Args, tt.want)
		})
	}

	inst := action.NewInstall(&action.Configuration{})
	inst.DryRun, inst.ClientOnly, inst.Replace = true, true, true
	inst.ReleaseName, inst.Namespace = "starlab", "kube-system"
	_, err := inst.Run(loadChart(t), map[string]any{"agent": map[string]any{"services": map[string]any{"externalIPs": "sometimes"}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "externalIPs")
}

// TestRenderMutualTLS (issue 11 item 9): tls.enabled makes a CA, a server certificate for the
// agents and a client certificate for the observer (Secrets), wires both to them, and switches
// the agents' probes to HTTPS; the rendered certificates complete a mutual TLS exchange through
// the agent API's own helpers. By default none of it is rendered.
func TestRenderMutualTLS(t *testing.T) {
	off := render(t, nil)
	assert.NotContains(t, off, "Secret/starlab-agent-tls")
	assert.NotContains(t, off, "Secret/starlab-observer-tls")
	var ds appsv1.DaemonSet
	require.NoError(t, sigyaml.UnmarshalStrict(off["DaemonSet/starlab-agent"], &ds))
	assert.NotContains(t, strings.Join(ds.Spec.Template.Spec.Containers[0].Args, " "), "--tls-")
	assert.Equal(t, corev1.URIScheme(""), ds.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Scheme)

	on := render(t, map[string]any{"tls": map[string]any{"enabled": true}})
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"starlab-agent-tls", "starlab-observer-tls"} {
		require.Contains(t, on, "Secret/"+name)
		var sec corev1.Secret
		require.NoError(t, sigyaml.UnmarshalStrict(on["Secret/"+name], &sec))
		assert.Equal(t, corev1.SecretTypeTLS, sec.Type)
		for _, k := range []string{"ca.crt", "tls.crt", "tls.key"} {
			require.NotEmpty(t, sec.Data[k], "%s %s", name, k)
			files[name+"/"+k] = filepath.Join(dir, name+"-"+k)
			require.NoError(t, os.WriteFile(files[name+"/"+k], sec.Data[k], 0o600))
		}
	}

	require.NoError(t, sigyaml.UnmarshalStrict(on["DaemonSet/starlab-agent"], &ds))
	agent := ds.Spec.Template.Spec.Containers[0]
	assert.Subset(t, agent.Args, []string{"--tls-cert=/etc/starlab/tls/tls.crt", "--tls-key=/etc/starlab/tls/tls.key", "--tls-client-ca=/etc/starlab/tls/ca.crt"})
	assert.Equal(t, corev1.URISchemeHTTPS, agent.ReadinessProbe.HTTPGet.Scheme)
	assert.Equal(t, corev1.URISchemeHTTPS, agent.LivenessProbe.HTTPGet.Scheme)
	assert.Equal(t, "starlab-agent-tls", secretVolume(ds.Spec.Template.Spec.Volumes, "tls"))
	var obs appsv1.Deployment
	require.NoError(t, sigyaml.UnmarshalStrict(on["Deployment/starlab-observer"], &obs))
	assert.Subset(t, obs.Spec.Template.Spec.Containers[0].Args, []string{"--agent-tls-cert=/etc/starlab/tls/tls.crt", "--agent-tls-key=/etc/starlab/tls/tls.key", "--agent-tls-ca=/etc/starlab/tls/ca.crt"})
	assert.Equal(t, "starlab-observer-tls", secretVolume(obs.Spec.Template.Spec.Volumes, "tls"))

	// The rendered certificates work with the agent API's TLS helpers.
	srvTLS, err := agentapi.ServerTLSConfig(files["starlab-agent-tls/tls.crt"], files["starlab-agent-tls/tls.key"], files["starlab-agent-tls/ca.crt"])
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(agentapi.RequireClientCert(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("flows"))
	}), agentapi.PathHealth))
	ts.TLS = srvTLS
	ts.StartTLS()
	t.Cleanup(ts.Close)
	cliTLS, err := agentapi.ClientTLSConfig(files["starlab-observer-tls/tls.crt"], files["starlab-observer-tls/tls.key"], files["starlab-observer-tls/ca.crt"])
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS}}).Get(ts.URL + agentapi.PathFlows)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the observer's certificate is accepted")
	cliTLS.Certificates = nil
	resp, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: cliTLS}}).Get(ts.URL + agentapi.PathFlows)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no certificate, no flows")
}

func secretVolume(vols []corev1.Volume, name string) string {
	for _, v := range vols {
		if v.Name == name && v.Secret != nil {
			return v.Secret.SecretName
		}
	}
	return ""
}

// TestRenderClusterNetworkPolicyCRD: the chart installs the ClusterNetworkPolicy CRD of
// network-policy-api v0.3.0, standard channel by default, experimental behind
// clusterNetworkPolicy.experimental, none with installCRDs false; the agent may watch them and
// write their status.
func TestRenderClusterNetworkPolicyCRD(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vals    map[string]any
		channel string // "" = no CRD
	}{
		{name: "default", channel: "standard"},
		{name: "experimental", vals: map[string]any{"clusterNetworkPolicy": map[string]any{"experimental": true}}, channel: "experimental"},
		{name: "off", vals: map[string]any{"clusterNetworkPolicy": map[string]any{"installCRDs": false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.vals)
			crd, ok := objs["CustomResourceDefinition/clusternetworkpolicies.policy.networking.k8s.io"]
			if tc.channel == "" {
				assert.False(t, ok)
				return
			}
			require.True(t, ok, "rendered: %v", keysOf(objs))
			assert.Contains(t, string(crd), "policy.networking.k8s.io/channel: "+tc.channel)
			assert.Contains(t, string(crd), "policy.networking.k8s.io/bundle-version: v0.3.0")
			assert.Contains(t, string(crd), "name: v1beta1")
			assert.Contains(t, string(crd), "name: v1alpha2")
		})
	}
	rbac := string(render(t, nil)["ClusterRole/starlab-agent"])
	assert.Contains(t, rbac, "clusternetworkpolicies/status")
	assert.Contains(t, rbac, "policy.networking.k8s.io")
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
