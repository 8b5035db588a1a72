package maps

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"golang.org/x/sys/unix"
)

// Map names (pinned under the loader's pin directory with these names), as
// bpf2go generated them from bpf/lib/sl_maps.h.
const (
	NameEndpoints      = bpfobj.SlMapSlEndpoints
	NameEpByIP         = bpfobj.SlMapSlEpByIp
	NameIPCache        = bpfobj.SlMapSlIpcache
	NamePolicy         = bpfobj.SlMapSlPolicy
	NameCIDRPolicy     = bpfobj.SlMapSlCidrPolicy
	NameServices       = bpfobj.SlMapSlServices
	NameBackends       = bpfobj.SlMapSlBackends
	NameAffinity       = bpfobj.SlMapSlAffinity
	NameLBSourceRanges = bpfobj.SlMapSlLbSrcRanges
	NameCT             = bpfobj.SlMapSlCt
	NameCTNodePort     = bpfobj.SlMapSlCtNodeport
	NameDropRL         = bpfobj.SlMapSlDropRl
	NameEvents         = bpfobj.SlMapSlEvents
	NameCounters       = bpfobj.SlMapSlCounters
	NameConfig         = bpfobj.SlMapSlConfig
)

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
	Affinity   *ebpf.Map // sessionAffinity: ClientIP, (client, service) -> backend (LRU)
	// LBSourceRanges: loadBalancerSourceRanges, (service ID, client prefix) (LPM)
	LBSourceRanges *ebpf.Map
	CT             *ebpf.Map
	CTNodePort     *ebpf.Map // conntrack of NodePort flows from outside (bpf/lib/sl_maps.h)
	DropRL         *ebpf.Map
	Events         *ebpf.Map
	Counters       *ebpf.Map
	Config         *ebpf.Map
}

// New wraps the maps of the loaded lxc object (bpfobj.SlObjects, which holds
// every datapath map; the netdev object shares them).
func New(o *bpfobj.SlMaps) *Maps {
	return &Maps{
		Endpoints: o.SlEndpoints, EpByIP: o.SlEpByIp, IPCache: o.SlIpcache, Policy: o.SlPolicy,
		CIDRPolicy: o.SlCidrPolicy, Services: o.SlServices, Backends: o.SlBackends, Affinity: o.SlAffinity, LBSourceRanges: o.SlLbSrcRanges, CT: o.SlCt, CTNodePort: o.SlCtNodeport,
		DropRL: o.SlDropRl, Events: o.SlEvents, Counters: o.SlCounters, Config: o.SlConfig,
	}
}

// Proto is an IP protocol number (enum sl_proto).
type Proto uint8

// Protocols.
const (
	ProtoAny  = Proto(bpfobj.SlSlProtoSL_PROTO_ANY)
	ProtoICMP = Proto(bpfobj.SlSlProtoSL_PROTO_ICMP)
	ProtoTCP  = Proto(bpfobj.SlSlProtoSL_PROTO_TCP)
	ProtoUDP  = Proto(bpfobj.SlSlProtoSL_PROTO_UDP)
	// ProtoSCTP: ports parsed for policy, conntrack and Services (Services without port
	// translation: the datapath cannot update SCTP's CRC32c checksum).
	ProtoSCTP = Proto(bpfobj.SlSlProtoSL_PROTO_SCTP)
)

var protoNames = [...]string{ProtoAny: "ANY", ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoSCTP: "SCTP"}

func (p Proto) String() string { return EnumName(protoNames[:], uint8(p), "proto(%d)") }

// Direction of a policy entry (enum sl_dir).
type Direction uint8

// Directions.
const (
	Ingress = Direction(bpfobj.SlSlDirSL_DIR_INGRESS)
	Egress  = Direction(bpfobj.SlSlDirSL_DIR_EGRESS)
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

// Reserved identities (enum sl_identity).
const (
	IdentityAny        = uint32(bpfobj.SlSlIdentitySL_ID_ANY)
	IdentityHost       = uint32(bpfobj.SlSlIdentitySL_ID_HOST)
	IdentityWorld      = uint32(bpfobj.SlSlIdentitySL_ID_WORLD)
	IdentityUnmanaged  = uint32(bpfobj.SlSlIdentitySL_ID_UNMANAGED)
	IdentityRemoteNode = uint32(bpfobj.SlSlIdentitySL_ID_REMOTE_NODE)
	// IdentityFirstPod is the first identity for pods.
	IdentityFirstPod = uint32(bpfobj.SlSlIdentitySL_ID_FIRST_POD)
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
