package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults for optional config fields.
const (
	DefaultAgentSocket = "/var/run/starlab/agent.sock"
	DefaultIPAMDir     = "/var/lib/starlab/ipam"
	GatewayIP          = "169.254.1.1"
	// ModeRouted is NetConf.Mode for plain routed pod networking without the agent.
	ModeRouted = "routed"
)

// Where the agent installs the plugin on a node: the conflist ConflistName in DefaultConfDir, the
// binary BinaryName in DefaultBinDir.
const (
	DefaultConfDir = "/etc/cni/net.d"
	DefaultBinDir  = "/opt/cni/bin"
	ConflistName   = "05-starlab.conflist"
	BinaryName     = "starlab-cni"
)

// NetConf is the plugin's entry in the conflist.
type NetConf struct {
	types.PluginConf
	PodCIDR     string `json:"podCIDR"`
	AgentSocket string `json:"agentSocket,omitempty"`
	IPAMDir     string `json:"ipamDir,omitempty"`
	MTU         int    `json:"mtu,omitempty"`
	// Mode is "" (the agent datapath: every endpoint is registered with the agent, which attaches the BPF
	// programs) or ModeRouted: plain routed pod networking, the veth and routes only, no agent and no BPF
	// (the benchmark's kube-proxy reference lab).
	Mode string `json:"mode,omitempty"`

	prefix netip.Prefix
}

// ParseConf decodes and validates the stdin config.
func ParseConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, fmt.Errorf("starlab-cni: parse network config: %w", err)
	}
	p, err := netip.ParsePrefix(c.PodCIDR)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("starlab-cni: podCIDR %q in the network config is not an IPv4 prefix: the agent writes it from the node's spec.podCIDR", c.PodCIDR)
	}
	c.prefix = p.Masked()
	if c.AgentSocket == "" {
		c.AgentSocket = DefaultAgentSocket
	}
	if c.IPAMDir == "" {
		c.IPAMDir = DefaultIPAMDir
	}
	if c.Mode != "" && c.Mode != ModeRouted {
		return nil, fmt.Errorf("starlab-cni: mode %q in the network config: use \"\" (agent) or %q", c.Mode, ModeRouted)
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return nil, fmt.Errorf("starlab-cni: mtu %d out of range", c.MTU)
	}
	return c, nil
}

// Routed reports whether the plugin runs without the agent (ModeRouted).
func (c *NetConf) Routed() bool { return c.Mode == ModeRouted }

// Prefix returns the parsed pod CIDR.
func (c *NetConf) Prefix() netip.Prefix { return c.prefix }

// K8sArgs are the CNI_ARGS containerd passes for Kubernetes pods.
type K8sArgs struct {
	types.CommonArgs
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // CNI_ARGS key
}
