// Package flowevent decodes the datapath's ring-buffer flow events
// (struct sl_flow_event in bpf/lib/sl_types.h, generated as
// bpfobj.SlSlFlowEvent) and reads them. It names the event enums (verdict,
// drop reason, direction, type, observation point, TCP flags) whose values
// the generated constants hold.
//
// Usage:
//
//	r, err := flowevent.NewReader(dp.Maps.Events, flowevent.ReaderOptions{Counters: dp.Maps.Counters})
//	defer r.Close()
//	clock, _ := flowevent.NewClock()
//	err = r.Run(ctx, func(e *flowevent.Event) {
//		fmt.Println(clock.Wall(e.TsNs), e) // e is reused after fn returns
//	})
package flowevent

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// Raw is struct sl_flow_event as bpf2go generated it from bpf/lib/sl_types.h.
type Raw = bpfobj.SlSlFlowEvent

// Size is the encoded size of struct sl_flow_event.
const Size = int(unsafe.Sizeof(Raw{}))

// The enums below wrap the generated ones (enum sl_verdict, sl_drop_reason,
// sl_dir, sl_event_type, sl_obs_point, sl_tcp_flags): values come from C,
// this package adds the names.

// Verdict of the packet.
type Verdict uint8

// Verdicts.
const (
	VerdictForwarded = Verdict(bpfobj.SlSlVerdictSL_VERDICT_FORWARDED)
	VerdictDropped   = Verdict(bpfobj.SlSlVerdictSL_VERDICT_DROPPED)
)

var verdictNames = [...]string{VerdictForwarded: "FORWARDED", VerdictDropped: "DROPPED"}

func (v Verdict) String() string { return maps.EnumName(verdictNames[:], uint8(v), "VERDICT_%d") }

// DropReason is enum sl_drop_reason.
type DropReason uint8

// Drop reasons.
const (
	DropNone                   = DropReason(bpfobj.SlSlDropReasonSL_DROP_NONE)
	DropPolicyDenied           = DropReason(bpfobj.SlSlDropReasonSL_DROP_POLICY_DENIED)
	DropServiceBackendNotFound = DropReason(bpfobj.SlSlDropReasonSL_DROP_SERVICE_BACKEND_NOT_FOUND)
	DropInvalidSourceIP        = DropReason(bpfobj.SlSlDropReasonSL_DROP_INVALID_SOURCE_IP)
	DropCTMapInsertionFailed   = DropReason(bpfobj.SlSlDropReasonSL_DROP_CT_MAP_INSERTION_FAILED)
	DropPolicyUnrepresentable  = DropReason(bpfobj.SlSlDropReasonSL_DROP_POLICY_UNREPRESENTABLE)
	DropUnknownEndpoint        = DropReason(bpfobj.SlSlDropReasonSL_DROP_UNKNOWN_ENDPOINT)
	DropInvalidPacket          = DropReason(bpfobj.SlSlDropReasonSL_DROP_INVALID_PACKET)
	DropFIBLookupFailed        = DropReason(bpfobj.SlSlDropReasonSL_DROP_FIB_LOOKUP_FAILED)
	DropPolicyWriteFailed      = DropReason(bpfobj.SlSlDropReasonSL_DROP_POLICY_WRITE_FAILED)
	DropCTTupleInUse           = DropReason(bpfobj.SlSlDropReasonSL_DROP_CT_TUPLE_IN_USE)
	DropFragNotFound           = DropReason(bpfobj.SlSlDropReasonSL_DROP_FRAG_NOT_FOUND)
	// dropMax is one past the last reason.
	dropMax = DropReason(bpfobj.SlSlDropReasonSL_DROP_MAX)
)

// Drop reason names: the JSON drop_reason_desc of each reason (DropReason.String; Hubble's
// spelling where Hubble has the reason). internal/flow uses these constants.
const (
	DropNamePolicyDenied           = "POLICY_DENIED"
	DropNameServiceBackendNotFound = "SERVICE_BACKEND_NOT_FOUND"
	DropNameInvalidSourceIP        = "INVALID_SOURCE_IP"
	DropNameCTMapInsertionFailed   = "CT_MAP_INSERTION_FAILED"
	DropNamePolicyUnrepresentable  = "POLICY_UNREPRESENTABLE"
	DropNameUnknownEndpoint        = "UNKNOWN_ENDPOINT"
	DropNameInvalidPacket          = "INVALID_PACKET"
	DropNameFIBLookupFailed        = "FIB_LOOKUP_FAILED"
	DropNamePolicyWriteFailed      = "POLICY_WRITE_FAILED"
	DropNameCTTupleInUse           = "CT_TUPLE_IN_USE"
	DropNameFragNotFound           = "FRAG_NOT_FOUND"
)

var dropNames = [...]string{
	DropPolicyDenied:           DropNamePolicyDenied,
	DropServiceBackendNotFound: DropNameServiceBackendNotFound,
	DropInvalidSourceIP:        DropNameInvalidSourceIP,
	DropCTMapInsertionFailed:   DropNameCTMapInsertionFailed,
	DropPolicyUnrepresentable:  DropNamePolicyUnrepresentable,
	DropUnknownEndpoint:        DropNameUnknownEndpoint,
	DropInvalidPacket:          DropNameInvalidPacket,
	DropFIBLookupFailed:        DropNameFIBLookupFailed,
	DropPolicyWriteFailed:      DropNamePolicyWriteFailed,
	DropCTTupleInUse:           DropNameCTTupleInUse,
	DropFragNotFound:           DropNameFragNotFound,
}

// DropReasons lists every drop reason the datapath reports, in enum order.
func DropReasons() []DropReason {
	out := make([]DropReason, 0, dropMax-1)
	for r := DropNone + 1; r < dropMax; r++ {
		out = append(out, r)
	}
	return out
}

// DropReasonNames are the names of DropReasons.
func DropReasonNames() []string {
	rs := DropReasons()
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

// String is the JSON drop_reason_desc name ("" for none).
func (r DropReason) String() string {
	if r == DropNone {
		return ""
	}
	return maps.EnumName(dropNames[:], uint8(r), "DROP_REASON_%d")
}

// Direction of the traffic relative to the endpoint (enum sl_dir).
type Direction uint8

// Directions.
const (
	DirectionIngress = Direction(maps.Ingress)
	DirectionEgress  = Direction(maps.Egress)
)

var directionNames = [...]string{DirectionIngress: "INGRESS", DirectionEgress: "EGRESS"}

func (d Direction) String() string { return maps.EnumName(directionNames[:], uint8(d), "DIRECTION_%d") }

// Type of event.
type Type uint8

// Event types.
const (
	TypeNew   = Type(bpfobj.SlSlEventTypeSL_EVENT_NEW)
	TypeDrop  = Type(bpfobj.SlSlEventTypeSL_EVENT_DROP)
	TypeClose = Type(bpfobj.SlSlEventTypeSL_EVENT_CLOSE)
	TypeTrace = Type(bpfobj.SlSlEventTypeSL_EVENT_TRACE) // per packet, only at event level "all"
)

var typeNames = [...]string{TypeNew: "NEW", TypeDrop: "DROP", TypeClose: "CLOSE", TypeTrace: "TRACE"}

func (t Type) String() string { return maps.EnumName(typeNames[:], uint8(t), "TYPE_%d") }

// ObsPoint is where the event was observed.
type ObsPoint uint8

// Observation points.
const (
	ObsFromContainer = ObsPoint(bpfobj.SlSlObsPointSL_OBS_FROM_CONTAINER)
	ObsToContainer   = ObsPoint(bpfobj.SlSlObsPointSL_OBS_TO_CONTAINER)
	ObsFromNetdev    = ObsPoint(bpfobj.SlSlObsPointSL_OBS_FROM_NETDEV)
	ObsToNetdev      = ObsPoint(bpfobj.SlSlObsPointSL_OBS_TO_NETDEV)
)

var obsNames = [...]string{ObsFromContainer: "FROM_CONTAINER", ObsToContainer: "TO_CONTAINER", ObsFromNetdev: "FROM_NETDEV", ObsToNetdev: "TO_NETDEV"}

func (o ObsPoint) String() string { return maps.EnumName(obsNames[:], uint8(o), "OBS_%d") }

// TCPFlags are the TCP header flags.
type TCPFlags uint8

// TCP flags.
const (
	FlagFIN = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_FIN)
	FlagSYN = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_SYN)
	FlagRST = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_RST)
	FlagPSH = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_PSH)
	FlagACK = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_ACK)
	FlagURG = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_URG)
	FlagECE = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_ECE)
	FlagCWR = TCPFlags(bpfobj.SlSlTcpFlagsSL_TCP_CWR)
)

var flagNames = [...]struct {
	flag TCPFlags
	name string
}{{FlagFIN, "FIN"}, {FlagSYN, "SYN"}, {FlagRST, "RST"}, {FlagPSH, "PSH"}, {FlagACK, "ACK"}, {FlagURG, "URG"}, {FlagECE, "ECE"}, {FlagCWR, "CWR"}}

// String joins set flags with "|" ("" when none).
func (f TCPFlags) String() string {
	var parts []string
	for _, n := range flagNames {
		if f&n.flag != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, "|")
}

// Proto is an IP protocol number (enum sl_proto).
type Proto uint8

var protoNames = [...]string{maps.ProtoICMP: "ICMP", maps.ProtoTCP: "TCP", maps.ProtoUDP: "UDP"}

func (p Proto) String() string { return maps.EnumName(protoNames[:], uint8(p), "PROTO_%d") }

// Event is a decoded sl_flow_event. Ports are in host byte order.
type Event struct {
	TsNs        uint64 // CLOCK_BOOTTIME nanoseconds
	Src         netip.Addr
	Dst         netip.Addr
	OrigDst     netip.Addr
	SrcPort     uint16
	DstPort     uint16
	OrigDstPort uint16
	Proto       Proto
	Verdict     Verdict
	DropReason  DropReason
	Direction   Direction
	TCPFlags    TCPFlags
	Type        Type
	ObsPoint    ObsPoint
	IsReply     bool
	Rule        uint16
	Ifindex     uint32
	SrcIdentity uint32
	DstIdentity uint32
	PolicyID    uint32
	Packets     uint64
	Bytes       uint64
}

// Decode parses one raw event: the record is copied into the generated
// struct (the object is bpfel, so are the hosts it loads on) and converted.
// Extra trailing bytes (a newer datapath that appended fields) are ignored;
// a short buffer is an error.
func Decode(b []byte, e *Event) error {
	if len(b) < Size {
		return fmt.Errorf("flow event: %d bytes, want at least %d (datapath and agent out of sync?)", len(b), Size)
	}
	var r Raw
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), Size), b)
	FromRaw(&r, e)
	return nil
}

// FromRaw converts a generated sl_flow_event into an Event.
func FromRaw(r *Raw, e *Event) {
	*e = Event{
		TsNs:        r.TsNs,
		Src:         maps.U32ToIP(r.Saddr),
		Dst:         maps.U32ToIP(r.Daddr),
		OrigDst:     maps.U32ToIP(r.OrigDaddr),
		SrcPort:     maps.Ntohs(r.Sport),
		DstPort:     maps.Ntohs(r.Dport),
		OrigDstPort: maps.Ntohs(r.OrigDport),
		Proto:       Proto(r.Proto),
		Verdict:     Verdict(r.Verdict),
		DropReason:  DropReason(r.DropReason),
		Direction:   Direction(r.Direction),
		TCPFlags:    TCPFlags(r.TcpFlags),
		Type:        Type(r.EventType),
		ObsPoint:    ObsPoint(r.ObsPoint),
		IsReply:     r.IsReply != 0,
		Rule:        r.Rule,
		Ifindex:     r.Ifindex,
		SrcIdentity: r.SrcIdentity,
		DstIdentity: r.DstIdentity,
		PolicyID:    r.PolicyId,
		Packets:     r.Packets,
		Bytes:       r.Bytes,
	}
}

// IsTranslated reports whether the original destination differs (DNAT).
func (e *Event) IsTranslated() bool {
	return e.OrigDst != e.Dst || e.OrigDstPort != e.DstPort
}

func (e *Event) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s %s %s %s:%d -> %s:%d", e.Type, e.Verdict, e.ObsPoint, e.Proto, e.Src, e.SrcPort, e.Dst, e.DstPort)
	if e.IsTranslated() {
		fmt.Fprintf(&sb, " (orig %s:%d)", e.OrigDst, e.OrigDstPort)
	}
	if e.DropReason != DropNone {
		fmt.Fprintf(&sb, " reason=%s", e.DropReason)
	}
	if e.TCPFlags != 0 {
		fmt.Fprintf(&sb, " flags=%s", e.TCPFlags)
	}
	fmt.Fprintf(&sb, " dir=%s if=%d id=%d->%d", e.Direction, e.Ifindex, e.SrcIdentity, e.DstIdentity)
	if e.IsReply {
		sb.WriteString(" reply")
	}
	if e.PolicyID != 0 {
		fmt.Fprintf(&sb, " policy=%d rule=%d", e.PolicyID, e.Rule)
	}
	if e.Type == TypeClose {
		fmt.Fprintf(&sb, " packets=%d bytes=%d", e.Packets, e.Bytes)
	}
	return sb.String()
}

// Clock converts event timestamps (CLOCK_BOOTTIME) to wall-clock time.
type Clock struct {
	offset time.Duration // wall - boottime
}

// NewClock samples the boot-time/wall-clock offset.
func NewClock() (Clock, error) {
	boot, err := maps.BootTimeNs()
	if err != nil {
		return Clock{}, err
	}
	now := time.Now()
	return Clock{offset: time.Duration(now.UnixNano() - int64(boot))}, nil
}

// Wall returns the wall-clock time of a boot-time timestamp.
func (c Clock) Wall(tsNs uint64) time.Time {
	return time.Unix(0, int64(tsNs)+int64(c.offset))
}
