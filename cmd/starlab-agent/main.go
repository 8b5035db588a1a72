// Command starlab-agent is the Starlab node agent (DaemonSet, host network, privileged).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/starlab-dev/starlab/internal/agent"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "starlab-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := agent.DefaultConfig()
	fs := flag.NewFlagSet("starlab-agent", flag.ContinueOnError)
	fs.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (spec.nodeName)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "flow/status/metrics API address")
	fs.StringVar(&cfg.HubbleListen, "hubble-listen", cfg.HubbleListen, "Hubble gRPC API address (observer.Observer over this node's flows); empty: none")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "CNI endpoint API unix socket")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "state directory (endpoint records, IPAM)")
	fs.StringVar(&cfg.BPFFS, "bpffs", cfg.BPFFS, "bpffs mount point (pins go to <bpffs>/starlab)")
	fs.StringVar(&cfg.CNIBinDir, "cni-bin-dir", cfg.CNIBinDir, "directory to install starlab-cni into")
	fs.StringVar(&cfg.CNIConfDir, "cni-conf-dir", cfg.CNIConfDir, "directory to write 05-starlab.conflist into")
	fs.StringVar(&cfg.CNISource, "cni-source", "", "starlab-cni binary to install (default: next to this binary)")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster)")
	fs.StringVar(&cfg.DaemonSet, "daemonset", "", "own DaemonSet name; when it is gone at shutdown the node is cleaned (uninstall)")
	fs.StringVar(&cfg.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "own namespace")
	fs.DurationVar(&cfg.PolicyDebounce, "policy-debounce", cfg.PolicyDebounce, "batch window for policy compilation")
	fs.IntVar(&cfg.FlowBuffer, "flow-buffer", cfg.FlowBuffer, "flows kept in memory")
	fs.DurationVar(&cfg.CTGCInterval, "ct-gc-interval", cfg.CTGCInterval, "conntrack GC interval")
	fs.DurationVar(&cfg.CTLifetimes.TCPEstablished, "ct-lifetime-tcp", cfg.CTLifetimes.TCPEstablished, "conntrack: idle lifetime of an established TCP connection")
	fs.DurationVar(&cfg.CTLifetimes.TCPSyn, "ct-lifetime-tcp-syn", cfg.CTLifetimes.TCPSyn, "conntrack: idle lifetime of a TCP connection that has seen only SYNs")
	fs.DurationVar(&cfg.CTLifetimes.TCPClosing, "ct-lifetime-tcp-closing", cfg.CTLifetimes.TCPClosing, "conntrack: idle lifetime of a TCP connection with a FIN both ways or an RST")
	fs.DurationVar(&cfg.CTLifetimes.NonTCP, "ct-lifetime-non-tcp", cfg.CTLifetimes.NonTCP, "conntrack: idle lifetime of a UDP (or other non-TCP) flow")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "API server certificate (PEM); with --tls-key and --tls-client-ca the API requires client certificates, except /healthz")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "API server key (PEM)")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "CA of the client certificates the API accepts (PEM)")
	fs.StringVar(&cfg.ExternalIPs, "external-ips", cfg.ExternalIPs, "Service externalIPs: allow (program them, as kube-proxy does) or deny (program none, report the Service)")
	fs.StringVar(&cfg.SocketLBCgroup, "socket-lb-cgroup", cfg.SocketLBCgroup, "cgroup v2 directory for the socket LB hooks (ClusterIP/NodePort from the node itself and hostNetwork pods): the node's own cgroup, never the machine's root; empty: off")
	fs.Func("drop-events-per-second", fmt.Sprintf("DROP flow events per second on the node, all flows together (default %d; drops over it are counted, not reported)", cfg.DropEventsPerSec), func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return err
		}
		cfg.DropEventsPerSec = uint32(v)
		return nil
	})
	eventLevel := fs.Uint("event-level", 0, "flow events: 0 new/drop/close, 1 none, 2 every packet")
	podCIDR := fs.String("cluster-pod-cidr", cfg.ClusterPodCIDR.String(), "cluster pod CIDR")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	p, err := netip.ParsePrefix(*podCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-pod-cidr %q: %w", *podCIDR, err)
	}
	cfg.ClusterPodCIDR = p
	cfg.EventLevel = uint32(*eventLevel)

	a, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return a.Run(ctx)
}
