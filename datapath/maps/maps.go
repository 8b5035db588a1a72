package maps

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Map names (pinned under the loader's pin directory with these names).
const (
	NameEndpoints  = "sl_endpoints"
	NameEpByIP     = "sl_ep_by_ip"
	NameIPCache    = "sl_ipcache"
	NamePolicy     = "sl_policy"
	NameCIDRPolicy = "sl_cidr_policy"
	NameServices   = "sl_services"
	NameBackends   = "sl_backends"
	NameCT         = "sl_ct"
	NameDropRL     = "sl_drop_rl"
	NameEvents     = "sl_events"
	NameCounters   = "sl_counters"
	NameConfig     = "sl_config"
)

// Names lists every datapath map, the set the loader pins.
var Names = []string{
	NameEndpoints, NameEpByIP, NameIPCache, NamePolicy, NameCIDRPolicy, NameServices,
	NameBackends, NameCT, NameDropRL, NameEvents, NameCounters, NameConfig,
}

// ErrMapFull is matched (errors.Is) by insert errors of a map at capacity.
var ErrMapFull = errors.New("bpf map full")

// FullError reports which map is full.
type FullError struct {
	Map string
	Err error
}

func (e *FullError) Error() string {
	return fmt.Sprintf("bpf map %s is full (raise max_entries in bpf/lib/sl_maps.h or remove entries): %v", e.Map, e.Err)
}

// Is makes errors.Is(err, ErrMapFull) true.
func (e *FullError) Is(target error) bool { return target == ErrMapFull }

func (e *FullError) Unwrap() error { return e.Err }

// Maps holds the open datapath maps.
type Maps struct {
	Endpoints  *ebpf.Map
	EpByIP     *ebpf.Map
	IPCache    *ebpf.Map
	Policy     *ebpf.Map
	CIDRPolicy *ebpf.Map
	Services   *ebpf.Map
	Backends   *ebpf.Map
	CT         *ebpf.Map
	DropRL     *ebpf.Map
	Events     *ebpf.Map
	Counters   *ebpf.Map
	Config     *ebpf.Map
}

// FromCollection picks the datapath maps out of a loaded collection.
func FromCollection(maps map[string]*ebpf.Map) (*Maps, error) {
	m := &Maps{}
	dst := map[string]**ebpf.Map{
		NameEndpoints: &m.Endpoints, NameEpByIP: &m.EpByIP, NameIPCache: &m.IPCache,
		NamePolicy: &m.Policy, NameCIDRPolicy: &m.CIDRPolicy, NameServices: &m.Services,
		NameBackends: &m.Backends, NameCT: &m.CT, NameDropRL: &m.DropRL, NameEvents: &m.Events,
		NameCounters: &m.Counters, NameConfig: &m.Config,
	}
	for name, p := range dst {
		mp, ok := maps[name]
		if !ok || mp == nil {
			return nil, fmt.Errorf("datapath map %s missing from the collection (rebuild bpf objects with go generate ./datapath/bpfobj)", name)
		}
		*p = mp
	}
	return m, nil
}

// Proto is an IP protocol number.
type Proto uint8

// Protocols.
const (
	ProtoAny  Proto = 0
	ProtoICMP Proto = 1
	ProtoTCP  Proto = 6
	ProtoUDP  Proto = 17
)

var protoNames = [...]string{ProtoAny: "ANY", ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP"}

func (p Proto) String() string { return EnumName(protoNames[:], uint8(p), "proto(%d)") }

// Direction of a policy entry.
type Direction uint8

// Directions.
const (
	Ingress Direction = 1
	Egress  Direction = 2
)

var directionNames = [...]string{Ingress: "INGRESS", Egress: "EGRESS"}

func (d Direction) String() string { return EnumName(directionNames[:], uint8(d), "direction(%d)") }

// EnumName names a datapath enum value: names[v], or unknown (a format with one %d, e.g. "proto(%d)")
// filled with v for a value without a name. datapath/flowevent names its event enums with it too.
func EnumName(names []string, v uint8, unknown string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf(unknown, v)
}

// Reserved identities.
const (
	IdentityAny        uint32 = 0
	IdentityHost       uint32 = 1
	IdentityWorld      uint32 = 2
	IdentityUnmanaged  uint32 = 3
	IdentityRemoteNode uint32 = 6
	// IdentityFirstPod is the first identity for pods.
	IdentityFirstPod uint32 = 256
)

// IPToU32 converts an IPv4 address to the u32 the datapath stores (network
// byte order in memory).
func IPToU32(ip netip.Addr) (uint32, error) {
	if !ip.IsValid() {
		return 0, nil
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return 0, fmt.Errorf("address %s is not IPv4: the datapath is IPv4-only", ip)
	}
	b := ip.As4()
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}

// U32ToIP is the inverse of IPToU32.
func U32ToIP(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

// Htons converts a host-order port to the network-order u16 the datapath stores.
func Htons(p uint16) uint16 { return bits.ReverseBytes16(p) }

// Ntohs is the inverse of Htons.
func Ntohs(p uint16) uint16 { return bits.ReverseBytes16(p) }

func mustIP(what string, ip netip.Addr) (uint32, error) {
	if !ip.IsValid() {
		return 0, fmt.Errorf("%s: missing IPv4 address", what)
	}
	v, err := IPToU32(ip)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// wrap adds the map name and turns "no space" errnos into FullError.
func wrap(m *ebpf.Map, name, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.ENOMEM) {
		return &FullError{Map: name, Err: err}
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

func put(m *ebpf.Map, name string, k, v any) error {
	return wrap(m, name, "update", m.Update(k, v, ebpf.UpdateAny))
}

// del deletes a key; a missing key is not an error.
func del(m *ebpf.Map, name string, k any) error {
	err := m.Delete(k)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return wrap(m, name, "delete", err)
}

// batchPut writes many entries with BPF_MAP_UPDATE_BATCH where the map type
// supports it, else one by one.
func batchPut[K, V any](m *ebpf.Map, name string, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if err == nil {
		return nil
	}
	if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.EINVAL) {
		return wrap(m, name, "batch update", err)
	}
	for i := range keys {
		if err := put(m, name, &keys[i], &vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func batchDel[K any](m *ebpf.Map, name string, keys []K) error {
	for i := range keys {
		if err := del(m, name, &keys[i]); err != nil {
			return err
		}
	}
	return nil
}
