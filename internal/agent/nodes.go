package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// nodeInternalIP returns the first IPv4 InternalIP of a node.
func nodeInternalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

func nodePodCIDR(n *corev1.Node) (netip.Prefix, bool) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
			return p.Masked(), true
		}
	}
	return netip.Prefix{}, false
}

// deviceFor returns the interface holding ip in the host netns (the node device).
func deviceFor(ip netip.Addr) (netlink.Link, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip.AsSlice()) {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("link %d holding %s: %w", a.LinkIndex, ip, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface holds the node InternalIP %s: is the agent in the host network namespace (hostNetwork: true)?", ip)
}

// syncNodes programs routes to other nodes' pod CIDRs and this node's addresses into sl_config.
func (a *Agent) syncNodes() {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	nodes, err := a.nodes.Lister().List(labels.Everything())
	if err != nil {
		a.log.Error("list nodes", "err", err)
		return
	}
	want := map[netip.Prefix]netip.Addr{}
	for _, n := range nodes {
		if n.Name == a.cfg.NodeName {
			a.syncOwnNode(n)
			continue
		}
		cidr, ok1 := nodePodCIDR(n)
		ip, ok2 := nodeInternalIP(n)
		if ok1 && ok2 {
			want[cidr] = ip
		}
	}
	for cidr, gw := range want {
		if a.routes[cidr] == gw {
			continue
		}
		r := &netlink.Route{Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)}, Gw: gw.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			a.log.Error("route to node pod CIDR", "cidr", cidr, "via", gw, "err", err)
			continue
		}
		a.routes[cidr] = gw
		a.log.Info("route to node pod CIDR", "cidr", cidr, "via", gw)
	}
	for cidr, gw := range a.routes {
		if _, ok := want[cidr]; ok {
			continue
		}
		r := &netlink.Route{Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)}, Gw: gw.AsSlice()}
		if err := netlink.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			a.log.Warn("remove route", "cidr", cidr, "err", err)
		}
		delete(a.routes, cidr)
	}
}

// syncOwnNode writes this node's addresses into sl_config (nodeMu held).
func (a *Agent) syncOwnNode(n *corev1.Node) {
	var ips []netip.Addr
	for _, ad := range n.Status.Addresses {
		if ad.Type != corev1.NodeInternalIP && ad.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(ad.Address); err == nil && ip.Is4() && len(ips) < maps.MaxNodeIPs {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return
	}
	cfg := maps.Config{NodeIPs: ips, NetdevIfindex: uint32(a.netdevIndex), EventLevel: maps.EventLevel(a.cfg.EventLevel)}
	if fmt.Sprint(cfg) == fmt.Sprint(a.lastConfig) {
		return
	}
	if err := a.dp.Maps.SetConfig(cfg); err != nil {
		a.log.Error("write datapath config", "err", err)
		return
	}
	a.lastConfig = cfg
	a.mu.Lock()
	a.nodeIPs = ips
	a.mu.Unlock()
}

func (a *Agent) isNodeIP(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.nodeIPs {
		if n == ip {
			return true
		}
	}
	return false
}

// removeRoutes deletes every route the agent installed (uninstall).
func (a *Agent) removeRoutes() {
	a.nodeMu.Lock()
	defer a.nodeMu.Unlock()
	for cidr, gw := range a.routes {
		r := &netlink.Route{Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)}, Gw: gw.AsSlice()}
		_ = netlink.RouteDel(r)
		delete(a.routes, cidr)
	}
}
