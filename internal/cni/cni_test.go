package cni_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/cni"
)

func TestHostIfName(t *testing.T) {
	n := cni.HostIfName("0123456789abcdef")
	assert.Len(t, n, 13)
	assert.Regexp(t, `^sl[0-9a-f]{11}$`, n)
	assert.Equal(t, n, cni.HostIfName("0123456789abcdef"))
	assert.NotEqual(t, n, cni.HostIfName("0123456789abcdeg"))
}

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"ok", `{"cniVersion":"1.0.0","name":"starlab","type":"starlab-cni","podCIDR":"10.244.1.0/24"}`, ""},
		{"missing cidr", `{"cniVersion":"1.0.0","name":"starlab","type":"starlab-cni"}`, "podCIDR"},
		{"v6 cidr", `{"cniVersion":"1.0.0","name":"starlab","type":"starlab-cni","podCIDR":"fd00::/64"}`, "podCIDR"},
		{"bad json", `{`, "parse network config"},
		{"routed", `{"cniVersion":"1.0.0","name":"s","type":"starlab-cni","podCIDR":"10.244.1.0/24","mode":"routed"}`, ""},
		{"bad mode", `{"cniVersion":"1.0.0","name":"s","type":"starlab-cni","podCIDR":"10.244.1.0/24","mode":"bridge"}`, "mode"},
		{"bad mtu", `{"cniVersion":"1.0.0","name":"s","type":"starlab-cni","podCIDR":"10.244.1.0/24","mtu":-1}`, "mtu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := cni.ParseConf([]byte(tc.in))
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, cni.DefaultAgentSocket, c.AgentSocket)
			assert.Equal(t, cni.DefaultIPAMDir, c.IPAMDir)
			assert.Equal(t, "10.244.1.0/24", c.Prefix().String())
		})
	}
}

func TestEndpointRequestValidate(t *testing.T) {
	good := cni.EndpointRequest{ContainerID: "c", HostIfName: "slx", IP: "10.244.1.2", MAC: "02:00:00:00:00:01"}
	require.NoError(t, good.Validate())
	for name, mut := range map[string]func(*cni.EndpointRequest){
		"no id":   func(r *cni.EndpointRequest) { r.ContainerID = "" },
		"no host": func(r *cni.EndpointRequest) { r.HostIfName = "" },
		"bad ip":  func(r *cni.EndpointRequest) { r.IP = "x" },
		"bad mac": func(r *cni.EndpointRequest) { r.MAC = "zz" },
	} {
		r := good
		mut(&r)
		assert.Error(t, r.Validate(), name)
	}
	b, err := json.Marshal(good)
	require.NoError(t, err)
	assert.JSONEq(t, `{"containerID":"c","netns":"","ifName":"","hostIfName":"slx","ip":"10.244.1.2","mac":"02:00:00:00:00:01","hostMac":"","podName":"","podNamespace":""}`, string(b))
}

func TestAgentClientErrors(t *testing.T) {
	c := cni.NewAgentClient(t.TempDir()+"/none.sock", time.Second)
	err := c.DeleteEndpoint(t.Context(), "x")
	require.ErrorIs(t, err, cni.ErrAgentUnreachable)

}
