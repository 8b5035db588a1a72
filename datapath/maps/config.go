package maps

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
)

// EventLevel selects which flow events the datapath emits (enum sl_event_level).
type EventLevel uint32

// Event levels (the zero value is the default: NEW, DROP and CLOSE).
const (
	EventsFlows = EventLevel(bpfobj.SlSlEventLevelSL_EVENTS_FLOWS)
	EventsNone  = EventLevel(bpfobj.SlSlEventLevelSL_EVENTS_NONE)
	EventsAll   = EventLevel(bpfobj.SlSlEventLevelSL_EVENTS_ALL) // plus one TRACE per forwarded packet
)

// MaxNodeIPs is how many local node addresses sl_config holds.
const MaxNodeIPs = len(bpfobj.SlSlCfg{}.NodeIps)

// Config is the sl_config entry.
type Config struct {
	// NodeIPs are this node's addresses (NodePort "any node address", host
	// identity for kubelet probes).
	NodeIPs []netip.Addr
	// NetdevIfindex is the node device (eth0 in kind).
	NetdevIfindex uint32
	EventLevel    EventLevel
	// WakeupBytes: force a reader wakeup once this much event data is
	// pending (0 = 64 KiB).
	WakeupBytes uint32
	// DropEventsPerSec limits the DROP events of the whole node (all flows
	// and CPUs) per second of boot time, on top of the per-flow limit of one
	// per second; drops over it are still counted (0 = DefaultDropEventsPerSec).
	DropEventsPerSec uint32
	// PodCIDR is this node's pod CIDR: the datapath refuses connections to its addresses that
	// have no endpoint (pods that are gone) instead of routing them out of the node. The zero
	// value leaves the guard off (set it once the endpoints are in the maps).
	PodCIDR netip.Prefix
	// SockNetnsCookie is the network namespace whose sockets the socket LB (bpf/sock.c)
	// translates: the node's own (NetnsCookie of the agent's). 0: none.
	SockNetnsCookie uint64
}

// DefaultDropEventsPerSec is the datapath's node-wide DROP event limit when
// Config.DropEventsPerSec is 0 (SL_DROP_EVENTS_PER_SEC_DEFAULT in bpf/lib/sl_drop.h).
const DefaultDropEventsPerSec = 1000

// SetConfig writes sl_config.
func (m *Maps) SetConfig(c Config) error {
	if len(c.NodeIPs) > MaxNodeIPs {
		return fmt.Errorf("config: %d node IPs, the datapath holds at most %d", len(c.NodeIPs), MaxNodeIPs)
	}
	var r bpfobj.SlSlCfg
	for i, ip := range c.NodeIPs {
		v, err := mustIP(fmt.Sprintf("config node IP %d", i), ip)
		if err != nil {
			return err
		}
		r.NodeIps[i] = v
	}
	r.NetdevIfindex = c.NetdevIfindex
	r.EventLevel = uint32(c.EventLevel)
	r.WakeupBytes = c.WakeupBytes
	r.DropEventsPerSec = c.DropEventsPerSec
	if c.PodCIDR.IsValid() {
		if !c.PodCIDR.Addr().Is4() {
			return fmt.Errorf("config pod CIDR %s: the datapath is IPv4 only", c.PodCIDR)
		}
		p := c.PodCIDR.Masked()
		v, err := mustIP("config pod CIDR", p.Addr())
		if err != nil {
			return err
		}
		m, _ := mustIP("config pod CIDR mask", netip.AddrFrom4([4]byte(net.CIDRMask(p.Bits(), 32))))
		r.PodCidr, r.PodCidrMask = v, m
	}
	r.SockNetnsCookie = c.SockNetnsCookie
	zero := uint32(0)
	return put(m.Config, NameConfig, &zero, &r)
}

// GetConfig reads sl_config.
func (m *Maps) GetConfig() (Config, error) {
	var r bpfobj.SlSlCfg
	zero := uint32(0)
	if err := m.Config.Lookup(&zero, &r); err != nil {
		return Config{}, fmt.Errorf("lookup %s: %w", NameConfig, err)
	}
	c := Config{NetdevIfindex: r.NetdevIfindex, EventLevel: EventLevel(r.EventLevel), WakeupBytes: r.WakeupBytes, DropEventsPerSec: r.DropEventsPerSec,
		SockNetnsCookie: r.SockNetnsCookie}
	for _, v := range r.NodeIps {
		if v != 0 {
			c.NodeIPs = append(c.NodeIPs, U32ToIP(v))
		}
	}
	if r.PodCidrMask != 0 {
		m := U32ToIP(r.PodCidrMask).As4()
		bits, _ := net.IPMask(m[:]).Size()
		c.PodCIDR = netip.PrefixFrom(U32ToIP(r.PodCidr), bits)
	}
	return c, nil
}

// Counter indexes of sl_counters (enum sl_counter).
const (
	CounterPackets   = uint32(bpfobj.SlSlCounterSL_CNT_PACKETS)
	CounterForwarded = uint32(bpfobj.SlSlCounterSL_CNT_FORWARDED)
	CounterRBFail    = uint32(bpfobj.SlSlCounterSL_CNT_RB_FAIL)
	CounterCTNew     = uint32(bpfobj.SlSlCounterSL_CNT_CT_NEW)
	CounterFIBFail   = uint32(bpfobj.SlSlCounterSL_CNT_FIB_FAIL)
	CounterNonIPv4   = uint32(bpfobj.SlSlCounterSL_CNT_NON_IPV4)
	// CounterDropEventsSuppressed counts DROP events the node-wide limit
	// suppressed (Config.DropEventsPerSec; the drops are counted by reason).
	CounterDropEventsSuppressed = uint32(bpfobj.SlSlCounterSL_CNT_DROP_EVENTS_SUPPRESSED)
	// CounterSockTranslated counts the connects and sends the socket LB translated.
	CounterSockTranslated = uint32(bpfobj.SlSlCounterSL_CNT_SOCK_XLATE)
	// CounterCTPortClash counts new pod flows moved to another source port: their reply tuple
	// was another live flow's (one client port towards two ClusterIPs of the same backend).
	CounterCTPortClash = uint32(bpfobj.SlSlCounterSL_CNT_CT_PORT_CLASH)
	CounterDropBase    = uint32(bpfobj.SlSlCounterSL_CNT_DROP_BASE) // + drop reason
	counterMax         = uint32(bpfobj.SlSlCounterSL_CNT_MAX)
)

// Counters are the summed per-CPU datapath counters.
type Counters struct {
	Packets, Forwarded, RingbufReserveFailed, CTNew, FIBFailed, NonIPv4 uint64
	// DropEventsSuppressed: DROP events over the node-wide limit (not emitted).
	DropEventsSuppressed uint64
	// SockTranslated: connects and sends the socket LB (bpf/sock.c) translated.
	SockTranslated uint64
	// CTPortClash: new pod flows given another source port (their reply tuple was taken).
	CTPortClash uint64
	// Drops by drop reason (enum sl_drop_reason, see flowevent.DropReason).
	Drops map[uint8]uint64
}

// ReadCounters sums sl_counters over CPUs.
func (m *Maps) ReadCounters() (Counters, error) {
	c := Counters{Drops: map[uint8]uint64{}}
	for i := uint32(0); i < counterMax; i++ {
		var per []uint64
		if err := m.Counters.Lookup(&i, &per); err != nil {
			return c, fmt.Errorf("lookup %s[%d]: %w", NameCounters, i, err)
		}
		var s uint64
		for _, v := range per {
			s += v
		}
		switch {
		case i == CounterPackets:
			c.Packets = s
		case i == CounterForwarded:
			c.Forwarded = s
		case i == CounterRBFail:
			c.RingbufReserveFailed = s
		case i == CounterCTNew:
			c.CTNew = s
		case i == CounterFIBFail:
			c.FIBFailed = s
		case i == CounterNonIPv4:
			c.NonIPv4 = s
		case i == CounterDropEventsSuppressed:
			c.DropEventsSuppressed = s
		case i == CounterSockTranslated:
			c.SockTranslated = s
		case i == CounterCTPortClash:
			c.CTPortClash = s
		case i > CounterDropBase && s > 0:
			c.Drops[uint8(i-CounterDropBase)] = s
		}
	}
	return c, nil
}

// NetnsCookie is the cookie of the calling thread's network namespace (SO_NETNS_COOKIE), the
// value bpf_get_netns_cookie gives its sockets: Config.SockNetnsCookie.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: socket: %w", err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: getsockopt SO_NETNS_COOKIE (kernel 5.14+): %w", err)
	}
	return v, nil
}
