package kubeclient

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

func TestRESTConfigFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(p, []byte(kubeconfig), 0o600))
	c, err := RESTConfig(p)
	require.NoError(t, err)
	assert.Equal(t, "https://127.0.0.1:6443", c.Host)

	_, err = RESTConfig(filepath.Join(t.TempDir(), "missing"))
	assert.ErrorContains(t, err, "load kubeconfig")
}

func TestRESTConfigInCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := RESTConfig("")
	assert.ErrorContains(t, err, "in-cluster config")
}
