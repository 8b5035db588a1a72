package hostprep

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCapsMissingFrom(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		lastCap int
		want    []string
		wantErr bool
	}{
		{"full set", "Name:\tx\nCapBnd:\t000001ffffffffff\n", 40, nil, false},
		{"no sys_resource", "CapBnd:\t000001fffeffffff\n", 40, []string{"CAP_SYS_RESOURCE"}, false},
		{"older kernel knows fewer", "CapBnd:\t0000003fffffffff\n", 37, nil, false},
		{"two missing", "CapBnd:\t000000fffeffffff\n", 40, []string{"CAP_SYS_RESOURCE", "CAP_CHECKPOINT_RESTORE"}, false},
		{"no line", "Name:\tx\n", 40, nil, true},
		{"garbage", "CapBnd:\tzz\n", 40, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capsMissingFrom(tt.status, tt.lastCap)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestExitZeroELF(t *testing.T) {
	for _, tt := range []struct {
		arch    string
		machine elf.Machine
	}{{"amd64", elf.EM_X86_64}, {"arm64", elf.EM_AARCH64}} {
		t.Run(tt.arch, func(t *testing.T) {
			b, err := exitZeroELF(tt.arch)
			require.NoError(t, err)
			f, err := elf.NewFile(bytes.NewReader(b))
			require.NoError(t, err)
			assert.Equal(t, tt.machine, f.Machine)
			assert.Equal(t, elf.ET_EXEC, f.Type)
			require.Len(t, f.Progs, 1)
			assert.Equal(t, uint64(len(b)), f.Progs[0].Filesz)
		})
	}
	_, err := exitZeroELF("mips")
	require.ErrorContains(t, err, "mips")
}

func TestMergeDaemonJSONKeepsOtherKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "daemon.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"log-driver":"json-file","runtimes":{"nvidia":{"path":"/x"}}}`), 0o644))
	require.NoError(t, mergeDaemonJSON(path))
	require.NoError(t, mergeDaemonJSON(path)) // idempotent
	var cfg map[string]any
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &cfg))
	assert.Equal(t, "json-file", cfg["log-driver"])
	assert.Equal(t, RuntimeName, cfg["default-runtime"])
	rt := cfg["runtimes"].(map[string]any)
	assert.Contains(t, rt, "nvidia")
	assert.Equal(t, map[string]any{"path": RuncWrapper}, rt[RuntimeName])

	bad := filepath.Join(t.TempDir(), "daemon.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{not json`), 0o644))
	require.ErrorContains(t, mergeDaemonJSON(bad), bad)

	fresh := filepath.Join(t.TempDir(), "sub", "daemon.json")
	require.NoError(t, mergeDaemonJSON(fresh))
}

// TestWrapperDropsCaps runs the rendered wrapper against a fake bundle with a fake runc (needs bash and jq).
func TestWrapperDropsCaps(t *testing.T) {
	jq, err := exec.LookPath("jq")
	if err != nil {
		t.Fatalf("jq is required for the wrapper (apt-get install jq): %v", err)
	}
	dir := t.TempDir()
	fakeRunc := filepath.Join(dir, "runc")
	require.NoError(t, os.WriteFile(fakeRunc, []byte("#!/bin/sh\necho runc \"$@\"\n"), 0o755))
	script, err := renderWrapper([]string{"CAP_SYS_RESOURCE", "CAP_BPF"}, jq, fakeRunc)
	require.NoError(t, err)
	wrapper := filepath.Join(dir, "wrapper")
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))

	bundle := filepath.Join(dir, "bundle")
	require.NoError(t, os.MkdirAll(bundle, 0o755))
	spec := `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_BPF"],"effective":["CAP_SYS_RESOURCE"]}},"root":{"path":"rootfs"}}`
	require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), []byte(spec), 0o644))
	proc := filepath.Join(dir, "process.json")
	require.NoError(t, os.WriteFile(proc, []byte(`{"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_NET_ADMIN"]}}`), 0o644))

	out, err := exec.Command(wrapper, "create", "--bundle", bundle, "id1").CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "runc create --bundle "+bundle+" id1", strings.TrimSpace(string(out)))
	out, err = exec.Command(wrapper, "exec", "--process="+proc, "id1").CombinedOutput()
	require.NoError(t, err, string(out))

	var got struct {
		Process struct{ Capabilities map[string][]string } `json:"process"`
		Root    map[string]string                          `json:"root"`
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &got))
	assert.Equal(t, []string{"CAP_CHOWN"}, got.Process.Capabilities["bounding"])
	assert.Empty(t, got.Process.Capabilities["effective"])
	assert.Equal(t, "rootfs", got.Root["path"])
	data, err = os.ReadFile(proc)
	require.NoError(t, err)
	assert.JSONEq(t, `{"capabilities":{"bounding":["CAP_NET_ADMIN"]}}`, string(data))
}
