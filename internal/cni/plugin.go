package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/starlab-dev/starlab/datapath/ipam"
)

// Plugin implements the CNI commands. Host-side work happens in the calling thread's network
// namespace (the node's); pod-side work uses a netlink handle inside the pod netns.
type Plugin struct {
	// Timeout bounds each command (lock waits, agent calls).
	Timeout time.Duration
	Log     *slog.Logger
}

// Funcs returns the skel command table.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, GC: p.GC, Status: p.Status}
}

func (p *Plugin) ctx() (context.Context, context.CancelFunc) {
	t := p.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

func (p *Plugin) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.DiscardHandler)
}

var gateway = netip.MustParseAddr(GatewayIP)

// Add sets up the pod interface, registers it with the agent and prints the result.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	k8s := K8sArgs{}
	k8s.IgnoreUnknown = true
	if err := types.LoadArgs(args.Args, &k8s); err != nil {
		return fmt.Errorf("starlab-cni: parse CNI_ARGS %q: %w", args.Args, err)
	}
	alloc, err := ipam.New(conf.IPAMDir, conf.Prefix())
	if err != nil {
		return err
	}
	ip, err := alloc.Allocate(ctx, args.ContainerID, args.IfName)
	if err != nil {
		return fmt.Errorf("starlab-cni: allocate IP for %s: %w", args.ContainerID, err)
	}
	hostName := HostIfName(args.ContainerID)
	ok := false
	defer func() {
		if ok {
			return
		}
		if l, err := netlink.LinkByName(hostName); err == nil {
			_ = netlink.LinkDel(l)
		}
		if err := alloc.Release(context.Background(), args.ContainerID); err != nil {
			p.log().Warn("release IP after failed ADD", "container", args.ContainerID, "err", err)
		}
	}()

	hostLink, podMAC, err := setupVeth(args.Netns, args.IfName, hostName, ip, conf.MTU)
	if err != nil {
		return fmt.Errorf("starlab-cni: set up %s for %s: %w", args.IfName, args.ContainerID, err)
	}
	req := EndpointRequest{
		ContainerID: args.ContainerID, Netns: args.Netns, IfName: args.IfName, HostIfName: hostName,
		IP: ip.String(), MAC: podMAC.String(), HostMAC: hostLink.Attrs().HardwareAddr.String(),
		PodName: string(k8s.K8S_POD_NAME), PodNamespace: string(k8s.K8S_POD_NAMESPACE),
	}
	if conf.Routed() {
		p.log().Debug("routed mode: endpoint not registered with an agent", "container", args.ContainerID, "ip", ip)
	} else if err := NewAgentClient(conf.AgentSocket, 20*time.Second).AddEndpoint(ctx, req); err != nil {
		return fmt.Errorf("starlab-cni: register endpoint %s (%s) with the agent (is the starlab-agent pod running on this node?): %w", args.ContainerID, ip, err)
	}
	ok = true
	result := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: req.HostMAC},
			{Name: args.IfName, Mac: req.MAC, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
			Gateway:   gateway.AsSlice(),
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gateway.AsSlice()}},
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// setupVeth creates the veth pair with the pod end inside the pod netns, configures both ends
// and returns the host link and the pod MAC.
func setupVeth(nsPath, ifName, hostName string, ip netip.Addr, mtu int) (netlink.Link, net.HardwareAddr, error) {
	podNS, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer podNS.Close()
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink in netns %s: %w", nsPath, err)
	}
	defer ph.Close()

	if old, err := netlink.LinkByName(hostName); err == nil {
		// Leftover from an interrupted ADD of the same container: start clean.
		if err := netlink.LinkDel(old); err != nil {
			return nil, nil, fmt.Errorf("delete stale %s: %w", hostName, err)
		}
	}
	if old, err := ph.LinkByName(ifName); err == nil {
		if err := ph.LinkDel(old); err != nil {
			return nil, nil, fmt.Errorf("delete stale %s in pod netns: %w", ifName, err)
		}
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	if mtu > 0 {
		attrs.MTU = mtu
	}
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: ifName, PeerNamespace: netlink.NsFd(int(podNS))}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("add veth %s/%s: %w", hostName, ifName, err)
	}
	hostLink, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", hostName, err)
	}
	if err := os.WriteFile(filepath.Join("/proc/sys/net/ipv4/conf", hostName, "rp_filter"), []byte("0"), 0o644); err != nil {
		return nil, nil, fmt.Errorf("rp_filter=0 on %s: %w", hostName, err)
	}
	if err := netlink.LinkSetUp(hostLink); err != nil {
		return nil, nil, fmt.Errorf("set %s up: %w", hostName, err)
	}

	podLink, err := ph.LinkByName(ifName)
	if err != nil {
		return nil, nil, fmt.Errorf("find %s in pod netns: %w", ifName, err)
	}
	if lo, err := ph.LinkByName("lo"); err == nil {
		_ = ph.LinkSetUp(lo)
	}
	if err := ph.AddrAdd(podLink, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
		return nil, nil, fmt.Errorf("add %s/32 to %s: %w", ip, ifName, err)
	}
	if err := ph.LinkSetUp(podLink); err != nil {
		return nil, nil, fmt.Errorf("set %s up: %w", ifName, err)
	}
	gw := gateway.AsSlice()
	if err := ph.RouteReplace(&netlink.Route{LinkIndex: podLink.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, nil, fmt.Errorf("route %s dev %s: %w", GatewayIP, ifName, err)
	}
	if err := ph.RouteReplace(&netlink.Route{LinkIndex: podLink.Attrs().Index, Gw: gw}); err != nil {
		return nil, nil, fmt.Errorf("default via %s: %w", GatewayIP, err)
	}
	if err := ph.NeighSet(&netlink.Neigh{LinkIndex: podLink.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: gw, HardwareAddr: hostLink.Attrs().HardwareAddr}); err != nil {
		return nil, nil, fmt.Errorf("neighbour %s on %s: %w", GatewayIP, ifName, err)
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, nil, fmt.Errorf("route %s/32 dev %s: %w", ip, hostName, err)
	}
	return hostLink, podLink.Attrs().HardwareAddr, nil
}

// Del tears the pod interface down; every step tolerates things already gone.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Routed() {
		p.log().Debug("routed mode: no agent to tell", "container", args.ContainerID)
	} else if err := NewAgentClient(conf.AgentSocket, 10*time.Second).DeleteEndpoint(ctx, args.ContainerID); err != nil {
		if !errors.Is(err, ErrAgentUnreachable) {
			return fmt.Errorf("starlab-cni: DEL %s: %w", args.ContainerID, err)
		}
		p.log().Info("agent not reachable on DEL; continuing", "container", args.ContainerID, "err", err)
	}
	hostName := HostIfName(args.ContainerID)
	if l, err := netlink.LinkByName(hostName); err == nil {
		if err := netlink.LinkDel(l); err != nil && !errors.As(err, new(netlink.LinkNotFoundError)) {
			return fmt.Errorf("starlab-cni: delete %s: %w", hostName, err)
		}
	}
	alloc, err := ipam.New(conf.IPAMDir, conf.Prefix())
	if err != nil {
		return err
	}
	if err := alloc.Release(ctx, args.ContainerID); err != nil {
		return fmt.Errorf("starlab-cni: DEL %s: %w", args.ContainerID, err)
	}
	return nil
}

// Check verifies that the interface, address, routes and agent registration still hold.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	alloc, err := ipam.New(conf.IPAMDir, conf.Prefix())
	if err != nil {
		return err
	}
	owned, err := alloc.Lookup(ctx, args.ContainerID)
	if err != nil {
		return err
	}
	if len(owned) == 0 {
		return fmt.Errorf("starlab-cni: CHECK %s: no IP allocated", args.ContainerID)
	}
	ip := owned[0].IP
	hostName := HostIfName(args.ContainerID)
	hostLink, err := netlink.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: host veth %s: %w", args.ContainerID, hostName, err)
	}
	if hostLink.Attrs().OperState == netlink.OperDown {
		return fmt.Errorf("starlab-cni: CHECK %s: %s is down", args.ContainerID, hostName)
	}
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}, netlink.RT_FILTER_DST)
	if err != nil || len(routes) == 0 || routes[0].LinkIndex != hostLink.Attrs().Index {
		return fmt.Errorf("starlab-cni: CHECK %s: route %s/32 dev %s missing", args.ContainerID, ip, hostName)
	}
	podNS, err := netns.GetFromPath(args.Netns)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: open netns %s: %w", args.ContainerID, args.Netns, err)
	}
	defer podNS.Close()
	ph, err := netlink.NewHandleAt(podNS)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: netlink in netns: %w", args.ContainerID, err)
	}
	defer ph.Close()
	podLink, err := ph.LinkByName(args.IfName)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: %s in pod netns: %w", args.ContainerID, args.IfName, err)
	}
	addrs, err := ph.AddrList(podLink, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: list addresses: %w", args.ContainerID, err)
	}
	found := false
	for _, a := range addrs {
		if a.IP.Equal(ip.AsSlice()) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("starlab-cni: CHECK %s: %s has no %s", args.ContainerID, args.IfName, ip)
	}
	prs, err := ph.RouteList(podLink, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("starlab-cni: CHECK %s: list pod routes: %w", args.ContainerID, err)
	}
	hasDefault := false
	for _, r := range prs {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(gateway.AsSlice()) {
			hasDefault = true
		}
	}
	if !hasDefault {
		return fmt.Errorf("starlab-cni: CHECK %s: default route via %s missing in pod", args.ContainerID, GatewayIP)
	}
	if conf.PrevResult != nil {
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err == nil && len(prev.IPs) > 0 && !prev.IPs[0].Address.IP.Equal(ip.AsSlice()) {
			return fmt.Errorf("starlab-cni: CHECK %s: prevResult IP %s differs from allocated %s", args.ContainerID, prev.IPs[0].Address.IP, ip)
		}
	}
	return nil
}

// GC frees IPs (and host veths) of attachments the runtime no longer knows.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	var gc struct {
		Valid []types.GCAttachment `json:"cni.dev/valid-attachments"`
	}
	if err := json.Unmarshal(args.StdinData, &gc); err != nil {
		return fmt.Errorf("starlab-cni: GC: parse valid attachments: %w", err)
	}
	live := map[string]bool{}
	for _, a := range gc.Valid {
		live[a.ContainerID] = true
	}
	alloc, err := ipam.New(conf.IPAMDir, conf.Prefix())
	if err != nil {
		return err
	}
	freed, err := alloc.GC(ctx, live)
	if err != nil {
		return fmt.Errorf("starlab-cni: GC: %w", err)
	}
	client := NewAgentClient(conf.AgentSocket, 10*time.Second)
	for _, f := range freed {
		if l, err := netlink.LinkByName(HostIfName(f.ContainerID)); err == nil {
			_ = netlink.LinkDel(l)
		}
		if conf.Routed() {
			continue
		}
		if err := client.DeleteEndpoint(ctx, f.ContainerID); err != nil && !errors.Is(err, ErrAgentUnreachable) {
			p.log().Warn("GC: agent delete", "container", f.ContainerID, "err", err)
		}
	}
	return nil
}

// Status reports whether the plugin can serve ADD: the agent answers on its socket.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	ctx, cancel := p.ctx()
	defer cancel()
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Routed() {
		return nil // nothing to wait for: the veth and routes are all there is
	}
	if err := NewAgentClient(conf.AgentSocket, 5*time.Second).Health(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "starlab agent not ready", err.Error())
	}
	return nil
}
