package workshop

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteList(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteList(&b, defaultParts(t)))
	for _, want := range []string{"Part 1: the datapath", "1.1 Nodes Ready without kube-proxy", "3.2 Default deny", "kubectl apply -f manifests/stars/policies/1-default-deny.yaml"} {
		assert.Contains(t, b.String(), want)
	}
}

func TestWriteShellScriptParses(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, WriteShellScript(&b, defaultParts(t)))
	assert.Contains(t, b.String(), "\nkubectl apply -f manifests/stars/policies/4-frontend-policy.yaml\n")
	assert.Contains(t, b.String(), "# back: kubectl delete --ignore-not-found -f internal/workshop/parts/stranger.yaml")
	f := filepath.Join(t.TempDir(), "demo.sh")
	require.NoError(t, os.WriteFile(f, b.Bytes(), 0o755))
	out, err := exec.Command("sh", "-n", f).CombinedOutput()
	require.NoError(t, err, "sh -n: %s", out)
}
