// Package flowevent decodes the datapath's ring-buffer flow events
// (struct sl_flow_event in bpf/lib/sl_events.h) and reads them.
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
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// Size is the encoded size of struct sl_flow_event.
const Size = 72

// Verdict of the packet.
type Verdict uint8

// Verdicts.
const (
	VerdictForwarded Verdict = 1
	VerdictDropped   Verdict = 2
)

var verdictNames = [...]string{VerdictForwarded: "FORWARDED", VerdictDropped: "DROPPED"}

func (v Verdict) String() string { return maps.EnumName(verdictNames[:], uint8(v), "VERDICT_%d") }

// DropReason is enum sl_drop_reason.
type DropReason uint8

// Drop reasons.
const (
	DropNone                   DropReason = 0
	DropPolicyDenied           DropReason = 1
	DropServiceBackendNotFound DropReason = 2
	DropInvalidSourceIP        DropReason = 3
	DropCTMapInsertionFailed   DropReason = 4
	DropPolicyUnrepresentable  DropReason = 5
	DropUnknownEndpoint        DropReason = 6
	DropInvalidPacket          DropReason = 7
)

var dropNames = [...]string{
	"", "POLICY_DENIED", "SERVICE_BACKEND_NOT_FOUND", "INVALID_SOURCE_IP", "CT_MAP_INSERTION_FAILED",
	"POLICY_UNREPRESENTABLE", "UNKNOWN_ENDPOINT", "INVALID_PACKET",
}

// String is the JSON drop_reason_desc name ("" for none).
func (r DropReason) String() string {
	if r == DropNone {
		return ""
	}
	return maps.EnumName(dropNames[:], uint8(r), "DROP_REASON_%d")
}

// Direction of the traffic relative to the endpoint.
type Direction uint8

// Directions.
const (
	DirectionIngress Direction = 1
	DirectionEgress  Direction = 2
)

var directionNames = [...]string{DirectionIngress: "INGRESS", DirectionEgress: "EGRESS"}

func (d Direction) String() string { return maps.EnumName(directionNames[:], uint8(d), "DIRECTION_%d") }

// Type of event.
type Type uint8

// Event types.
const (
	TypeNew   Type = 1
	TypeDrop  Type = 2
	TypeClose Type = 3
	TypeTrace Type = 4 // per packet, only at event level "all"
)

var typeNames = [...]string{TypeNew: "NEW", TypeDrop: "DROP", TypeClose: "CLOSE", TypeTrace: "TRACE"}

func (t Type) String() string { return maps.EnumName(typeNames[:], uint8(t), "TYPE_%d") }

// ObsPoint is where the event was observed.
type ObsPoint uint8

// Observation points.
const (
	ObsFromContainer ObsPoint = 1
	ObsToContainer   ObsPoint = 2
	ObsFromNetdev    ObsPoint = 3
)

var obsNames = [...]string{ObsFromContainer: "FROM_CONTAINER", ObsToContainer: "TO_CONTAINER", ObsFromNetdev: "FROM_NETDEV"}

func (o ObsPoint) String() string { return maps.EnumName(obsNames[:], uint8(o), "OBS_%d") }

// TCPFlags are the TCP header flags.
type TCPFlags uint8

// TCP flags.
const (
	FlagFIN TCPFlags = 0x01
	FlagSYN TCPFlags = 0x02
	FlagRST TCPFlags = 0x04
	FlagPSH TCPFlags = 0x08
	FlagACK TCPFlags = 0x10
	FlagURG TCPFlags = 0x20
	FlagECE TCPFlags = 0x40
	FlagCWR TCPFlags = 0x80
)

var flagNames = [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}

// String joins set flags with "|" ("" when none).
func (f TCPFlags) String() string {
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "|")
}

// Proto is an IP protocol number.
type Proto uint8

var protoNames = [...]string{1: "ICMP", 6: "TCP", 17: "UDP"}

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

func ip4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]}) }

// Decode parses one raw event. Extra trailing bytes (a newer datapath that
// appended fields) are ignored; a short buffer is an error.
func Decode(b []byte, e *Event) error {
	if len(b) < Size {
		return fmt.Errorf("flow event: %d bytes, want at least %d (datapath and agent out of sync?)", len(b), Size)
	}
	le := binary.LittleEndian
	be := binary.BigEndian
	*e = Event{
		TsNs:        le.Uint64(b[0:]),
		Src:         ip4(b[8:]),
		Dst:         ip4(b[12:]),
		OrigDst:     ip4(b[16:]),
		SrcPort:     be.Uint16(b[20:]),
		DstPort:     be.Uint16(b[22:]),
		OrigDstPort: be.Uint16(b[24:]),
		Proto:       Proto(b[26]),
		Verdict:     Verdict(b[27]),
		DropReason:  DropReason(b[28]),
		Direction:   Direction(b[29]),
		TCPFlags:    TCPFlags(b[30]),
		Type:        Type(b[31]),
		ObsPoint:    ObsPoint(b[32]),
		IsReply:     b[33] != 0,
		Rule:        le.Uint16(b[34:]),
		Ifindex:     le.Uint32(b[36:]),
		SrcIdentity: le.Uint32(b[40:]),
		DstIdentity: le.Uint32(b[44:]),
		PolicyID:    le.Uint32(b[48:]),
		Packets:     le.Uint64(b[56:]),
		Bytes:       le.Uint64(b[64:]),
	}
	return nil
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
