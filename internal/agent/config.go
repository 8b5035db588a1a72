// Package agent is the Starlab node agent: it runs in the node's host network namespace, loads and
// attaches the BPF datapath, serves the CNI plugin's endpoint API on a unix socket, programs pod
// routes, services, policy and node addresses into the maps from Kubernetes informers, enriches
// flow events into the flow store and serves the flow/status/metrics API on :4245.
//
// Start-up order matters: the CNI config that turns the node Ready is written only after the
// datapath is loaded, the endpoint API is serving and the informers have synced.
package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/cni"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
)

// Config configures the agent. Zero values take the defaults of DefaultConfig.
type Config struct {
	NodeName       string
	Listen         string       // flow/status/metrics API (":4245": port 4245 on the node address)
	HubbleListen   string       // Hubble's gRPC API over the node's flows (":4244"; "" none), bound like Listen
	Socket         string       // CNI endpoint API unix socket
	StateDir       string       // /var/lib/starlab: endpoints/, ipam/, identities.json
	BPFFS          string       // bpffs mount (/sys/fs/bpf); pins go to <BPFFS>/starlab
	CNIBinDir      string       // where the CNI binary is installed (node's /opt/cni/bin)
	CNIConfDir     string       // where 05-starlab.conflist is written (node's /etc/cni/net.d)
	CNISource      string       // the starlab-cni binary to install (default: next to the agent)
	ClusterPodCIDR netip.Prefix // cluster pod CIDR
	EventLevel     uint32       // 0 flows (NEW/DROP/CLOSE), 1 none, 2 all
	// DropEventsPerSec limits DROP flow events on the node (all flows together) per second; the
	// per-flow limit (one per second) applies too. Drops over it are still counted.
	DropEventsPerSec uint32
	PolicyDebounce   time.Duration // batch window for policy compilation
	FlowBuffer       int           // flows kept in memory
	CTGCInterval     time.Duration
	// CTLifetimes: how long conntrack entries may stay idle, by protocol and TCP state (Cilium's
	// defaults: TCP established 6 h, TCP SYN 60 s, TCP closing 10 s, non-TCP 60 s).
	CTLifetimes maps.CTLifetimes
	Kubeconfig  string // optional; in-cluster config otherwise
	DaemonSet   string // own DaemonSet name (uninstall detection); empty disables node cleanup
	Namespace   string // own namespace (POD_NAMESPACE)
	// ExternalIPs is what the agent does with Service spec.externalIPs: "allow" (program them, as
	// kube-proxy does; the default) or "deny" (program none, report the Service).
	ExternalIPs string
	// SocketLBCgroup is the cgroup v2 directory the socket LB hooks (bpf/sock.c: ClusterIP and
	// NodePort for the node's own clients) are attached to: the node's own cgroup, never the
	// machine's root (refused); "" leaves the socket LB off (docs/ARCHITECTURE.md "Socket LB").
	SocketLBCgroup string
	// TLSCert, TLSKey and TLSClientCA turn on mutual TLS for the API on :4245 (all three or none):
	// the agent's certificate and key, and the CA whose client certificates it accepts (the
	// observer's). /healthz stays open for the kubelet's probes.
	TLSCert, TLSKey, TLSClientCA string
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           ":" + strconv.Itoa(agentapi.Port),
		HubbleListen:     ":" + strconv.Itoa(hubbleapi.Port),
		Socket:           cni.DefaultAgentSocket,
		StateDir:         "/var/lib/starlab",
		BPFFS:            "/sys/fs/bpf",
		CNIBinDir:        cni.DefaultBinDir,
		CNIConfDir:       cni.DefaultConfDir,
		ClusterPodCIDR:   netip.MustParsePrefix("10.244.0.0/16"),
		PolicyDebounce:   30 * time.Millisecond,
		FlowBuffer:       131072,
		CTGCInterval:     30 * time.Second,
		CTLifetimes:      maps.DefaultCTLifetimes(),
		ExternalIPs:      lb.ExternalIPsAllow.String(),
		DropEventsPerSec: maps.DefaultDropEventsPerSec,
		SocketLBCgroup:   DefaultSocketLBCgroup,
	}
}

// DefaultSocketLBCgroup is where the chart mounts the node's cgroup v2 hierarchy (the node's
// /sys/fs/cgroup/unified: its root is the kind node container's own cgroup).
const DefaultSocketLBCgroup = "/host/sys/fs/cgroup/unified"

// Validate checks the config and fills derived defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is empty: pass --node-name (the chart sets it from spec.nodeName)"))
	}
	if c.CNISource == "" {
		exe, err := os.Executable()
		if err != nil {
			errs = append(errs, fmt.Errorf("find own executable for the CNI binary: %w", err))
		} else {
			c.CNISource = filepath.Join(filepath.Dir(exe), cni.BinaryName)
		}
	}
	if c.EventLevel > 2 {
		errs = append(errs, fmt.Errorf("event level %d: use 0 (flows), 1 (none) or 2 (all)", c.EventLevel))
	}
	if c.DropEventsPerSec == 0 {
		errs = append(errs, errors.New("--drop-events-per-second 0: use at least 1 (the datapath counts every drop; this only limits the events)"))
	}
	if c.FlowBuffer < 16 {
		errs = append(errs, fmt.Errorf("flow buffer %d: use at least 16", c.FlowBuffer))
	}
	if _, err := lb.ParseExternalIPPolicy(c.ExternalIPs); err != nil {
		errs = append(errs, fmt.Errorf("--external-ips: %w", err))
	}
	if _, err := agentapi.TLSFilesSet(c.TLSCert, c.TLSKey, c.TLSClientCA); err != nil {
		errs = append(errs, errors.New("API TLS: set --tls-cert, --tls-key and --tls-client-ca together (or none)"))
	}
	for name, d := range map[string]time.Duration{"ct-lifetime-tcp": c.CTLifetimes.TCPEstablished, "ct-lifetime-tcp-syn": c.CTLifetimes.TCPSyn,
		"ct-lifetime-tcp-closing": c.CTLifetimes.TCPClosing, "ct-lifetime-non-tcp": c.CTLifetimes.NonTCP} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %s: use a positive duration", name, d))
		}
	}
	if c.PolicyDebounce < 0 {
		errs = append(errs, fmt.Errorf("policy debounce %s is negative", c.PolicyDebounce))
	}
	return errors.Join(errs...)
}

// TLS reports whether the API is served with mutual TLS.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// PinDir is where the datapath pins maps and links.
func (c *Config) PinDir() string { return filepath.Join(c.BPFFS, "starlab") }

// EndpointsDir holds one JSON record per endpoint.
func (c *Config) EndpointsDir() string { return filepath.Join(c.StateDir, "endpoints") }

// IdentitiesPath holds the policy part's identity and policy-id numbers (policy.AllocatorState),
// next to the endpoint records: a restarted agent gives every label set its old number.
func (c *Config) IdentitiesPath() string { return filepath.Join(c.StateDir, "identities.json") }

// IPAMDir is the CNI IPAM state directory.
func (c *Config) IPAMDir() string { return filepath.Join(c.StateDir, "ipam") }

// TestSkipEnforcementFile is the name, in the state directory, of the test-only switch: while a
// file of that name exists on the node, the agent programs its endpoints without enforcing any
// policy (and warns at every compilation). Only root on the node can set it; no flag or chart
// value does. The conformance scenarios use it to show the suite catches a CNI that enforces
// nothing on one node.
const TestSkipEnforcementFile = "TEST-SKIP-ENFORCEMENT"

// TestSkipEnforcementPath is where the test-only switch lives on the node.
func (c *Config) TestSkipEnforcementPath() string {
	return filepath.Join(c.StateDir, TestSkipEnforcementFile)
}

// ConflistPath is the CNI config file the agent owns.
func (c *Config) ConflistPath() string { return filepath.Join(c.CNIConfDir, cni.ConflistName) }
