package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

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

// routeTable installs routes to other nodes' pod CIDRs (netlinkRoutes on a node).
type routeTable interface {
	Replace(cidr netip.Prefix, gw netip.Addr) error
	Delete(cidr netip.Prefix, gw netip.Addr) error // a missing route is not an error
}

// netlinkRoutes is the host network namespace's main routing table.
type netlinkRoutes struct{}

func route(cidr netip.Prefix, gw netip.Addr) *netlink.Route {
	return &netlink.Route{Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)}, Gw: gw.AsSlice()}
}

func (netlinkRoutes) Replace(cidr netip.Prefix, gw netip.Addr) error {
	if err := netlink.RouteReplace(route(cidr, gw)); err != nil {
		return fmt.Errorf("route %s via %s: %w", cidr, gw, err)
	}
	return nil
}

func (netlinkRoutes) Delete(cidr netip.Prefix, gw netip.Addr) error {
	if err := netlink.RouteDel(route(cidr, gw)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s via %s: %w", cidr, gw, err)
	}
	return nil
}

// configWriter writes sl_config (*maps.Maps).
type configWriter interface {
	SetConfig(maps.Config) error
}

// netdev is the node device the datapath is attached to.
type netdev struct {
	Index int
	Name  string
}

// nodeRoutes is the routes part: Nodes -> routes to the other nodes' pod CIDRs, and this node's
// addresses and device into sl_config.
type nodeRoutes struct {
	node       string
	log        *slog.Logger
	eventLevel maps.EventLevel
	// dropEvents is sl_config's node-wide DROP event limit per second (0: the datapath's default).
	dropEvents uint32
	routes     routeTable
	sink       configWriter
	// dev is set once by Run before the node informer starts, read-only afterwards.
	dev netdev
	// config is what sl_config last got (nil before the first write); flow enrichment reads its
	// node addresses without taking mu.
	config atomic.Pointer[maps.Config]

	mu        sync.Mutex // installed, podCIDR, own; serialises the config writes
	installed map[netip.Prefix]netip.Addr
	// podCIDR goes into sl_config once guardPodCIDR is called; own is the last own Node seen.
	podCIDR netip.Prefix
	own     *corev1.Node
	// sockNetns is the socket LB's network namespace cookie in sl_config (0: off).
	sockNetns uint64
}

func newNodeRoutes(node string, eventLevel maps.EventLevel, log *slog.Logger) *nodeRoutes {
	return &nodeRoutes{node: node, log: log, eventLevel: eventLevel, routes: netlinkRoutes{}, installed: map[netip.Prefix]netip.Addr{}}
}

// sync programs routes to the other nodes' pod CIDRs and this node's addresses into sl_config.
func (r *nodeRoutes) sync(nodes []*corev1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[netip.Prefix]netip.Addr{}
	for _, n := range nodes {
		if n.Name == r.node {
			r.syncOwnLocked(n)
			continue
		}
		cidr, ok1 := nodePodCIDR(n)
		ip, ok2 := nodeInternalIP(n)
		if ok1 && ok2 {
			want[cidr] = ip
		}
	}
	for cidr, gw := range want {
		if r.installed[cidr] == gw {
			continue
		}
		if err := r.routes.Replace(cidr, gw); err != nil {
			r.log.Error("route to node pod CIDR", "cidr", cidr, "via", gw, "err", err)
			continue
		}
		r.installed[cidr] = gw
		r.log.Info("route to node pod CIDR", "cidr", cidr, "via", gw)
	}
	for cidr, gw := range r.installed {
		if _, ok := want[cidr]; ok {
			continue
		}
		if err := r.routes.Delete(cidr, gw); err != nil {
			r.log.Warn("remove route", "cidr", cidr, "err", err)
		}
		delete(r.installed, cidr)
	}
}

// syncOwn writes this node's addresses into sl_config.
func (r *nodeRoutes) syncOwn(n *corev1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncOwnLocked(n)
}

// guardPodCIDR puts this node's pod CIDR into sl_config: from then on the datapath refuses
// connections to its addresses without an endpoint (pods that are gone) instead of letting the
// kernel route them out of the node device, where they hang. Called once the endpoints of a
// previous run are back in the maps (before, a live pod would be refused).
func (r *nodeRoutes) guardPodCIDR(cidr netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.podCIDR = cidr
	if r.own != nil {
		r.syncOwnLocked(r.own)
	}
}

// setSocketLBNetns puts the network namespace whose sockets the socket LB translates (the node's,
// cookie from maps.NetnsCookie; 0: none) into sl_config.
func (r *nodeRoutes) setSocketLBNetns(cookie uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sockNetns = cookie
	if r.own != nil {
		r.syncOwnLocked(r.own)
	}
}

func (r *nodeRoutes) syncOwnLocked(n *corev1.Node) {
	r.own = n
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
	cfg := maps.Config{NodeIPs: ips, NetdevIfindex: uint32(r.dev.Index), EventLevel: r.eventLevel, DropEventsPerSec: r.dropEvents, PodCIDR: r.podCIDR,
		SockNetnsCookie: r.sockNetns}
	if last := r.config.Load(); last != nil && sameConfig(cfg, *last) {
		return
	}
	if err := r.sink.SetConfig(cfg); err != nil {
		r.log.Error("write datapath config", "err", err)
		return
	}
	r.config.Store(&cfg)
}

func sameConfig(a, b maps.Config) bool {
	return slices.Equal(a.NodeIPs, b.NodeIPs) && a.NetdevIfindex == b.NetdevIfindex && a.EventLevel == b.EventLevel && a.WakeupBytes == b.WakeupBytes &&
		a.DropEventsPerSec == b.DropEventsPerSec && a.PodCIDR == b.PodCIDR && a.SockNetnsCookie == b.SockNetnsCookie
}

// isNodeIP reports whether ip is one of this node's addresses.
func (r *nodeRoutes) isNodeIP(ip netip.Addr) bool {
	cfg := r.config.Load()
	return cfg != nil && slices.Contains(cfg.NodeIPs, ip)
}

// removeAll deletes every route the part installed (uninstall).
func (r *nodeRoutes) removeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for cidr, gw := range r.installed {
		if err := r.routes.Delete(cidr, gw); err != nil {
			r.log.Warn("remove route", "cidr", cidr, "err", err)
		}
		delete(r.installed, cidr)
	}
}
