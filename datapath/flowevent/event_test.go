package flowevent

import (
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func encode(t testing.TB, e bpfobj.SlSlFlowEvent) []byte {
	t.Helper()
	b, err := binary.Append(nil, binary.LittleEndian, e)
	require.NoError(t, err)
	return b
}

// TestSizeMatchesC: the generated struct has no padding Go would add on its
// own, so the in-memory copy in Decode and the wire encoding agree.
func TestSizeMatchesC(t *testing.T) {
	require.Equal(t, Size, binary.Size(bpfobj.SlSlFlowEvent{}))
	require.Equal(t, 80, Size, "sl_flow_event changed size: fields may only be appended (docs/ARCHITECTURE.md)")
}

// TestDecodeEveryField gives every field of the generated struct a distinct
// value, encodes it in field order and checks that each lands in its Event
// field: a reordered or retyped sl_flow_event field fails here.
func TestDecodeEveryField(t *testing.T) {
	var raw bpfobj.SlSlFlowEvent
	rv := reflect.ValueOf(&raw).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if !f.CanSet() {
			continue // structs.HostLayout marker
		}
		f.SetUint(uint64(i + 1))
	}
	var e Event
	require.NoError(t, Decode(encode(t, raw), &e))
	field := func(name string) uint64 { return rv.FieldByName(name).Uint() }
	ip := func(name string) netip.Addr {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(field(name)))
		return netip.AddrFrom4(b)
	}
	port := func(name string) uint16 { return uint16(field(name))<<8 | uint16(field(name))>>8 }
	assert.Equal(t, Event{
		TsNs: field("TsNs"), Src: ip("Saddr"), Dst: ip("Daddr"), OrigDst: ip("OrigDaddr"),
		SrcPort: port("Sport"), DstPort: port("Dport"), OrigDstPort: port("OrigDport"),
		Proto: Proto(field("Proto")), Verdict: Verdict(field("Verdict")), DropReason: DropReason(field("DropReason")),
		Direction: Direction(field("Direction")), TCPFlags: TCPFlags(field("TcpFlags")), Type: Type(field("EventType")),
		ObsPoint: ObsPoint(field("ObsPoint")), IsReply: field("IsReply") != 0, Rule: uint16(field("Rule")),
		Ifindex: uint32(field("Ifindex")), SrcIdentity: uint32(field("SrcIdentity")), DstIdentity: uint32(field("DstIdentity")),
		PolicyID: uint32(field("PolicyId")), Packets: field("Packets"), Bytes: field("Bytes"),
		PassPolicyID: uint32(field("PassPolicyId")), PassRule: uint16(field("PassRule")),
	}, e)
}

func TestEveryDropReasonNamed(t *testing.T) {
	require.NotEmpty(t, DropReasons())
	for _, r := range DropReasons() {
		assert.NotContains(t, r.String(), "DROP_REASON_", "drop reason %d has no name in dropNames", uint8(r))
	}
	assert.Equal(t, "FIB_LOOKUP_FAILED", DropFIBLookupFailed.String())
}

func TestDecode(t *testing.T) {
	ip := func(s string) uint32 { b := netip.MustParseAddr(s).As4(); return binary.LittleEndian.Uint32(b[:]) }
	ns := func(p uint16) uint16 { return p<<8 | p>>8 }
	tests := []struct {
		name string
		raw  bpfobj.SlSlFlowEvent
		want Event
		str  string
	}{
		{
			name: "service new",
			raw: bpfobj.SlSlFlowEvent{TsNs: 42, Saddr: ip("10.244.1.2"), Daddr: ip("10.244.1.3"), OrigDaddr: ip("10.96.0.10"),
				Sport: ns(40000), Dport: ns(8080), OrigDport: ns(80), Proto: 6, Verdict: 1, Direction: 2, TcpFlags: 0x02,
				EventType: 1, ObsPoint: 1, Ifindex: 7, SrcIdentity: 256, DstIdentity: 257, PolicyId: 3, Rule: 2, Packets: 1, Bytes: 74},
			want: Event{TsNs: 42, Src: netip.MustParseAddr("10.244.1.2"), Dst: netip.MustParseAddr("10.244.1.3"),
				OrigDst: netip.MustParseAddr("10.96.0.10"), SrcPort: 40000, DstPort: 8080, OrigDstPort: 80, Proto: 6,
				Verdict: VerdictForwarded, Direction: DirectionEgress, TCPFlags: FlagSYN, Type: TypeNew,
				ObsPoint: ObsFromContainer, Ifindex: 7, SrcIdentity: 256, DstIdentity: 257, PolicyID: 3, Rule: 2, Packets: 1, Bytes: 74},
			str: "NEW FORWARDED FROM_CONTAINER TCP 10.244.1.2:40000 -> 10.244.1.3:8080 (orig 10.96.0.10:80) flags=SYN dir=EGRESS if=7 id=256->257 policy=3 rule=2",
		},
		{
			name: "drop",
			raw: bpfobj.SlSlFlowEvent{Saddr: ip("10.244.1.9"), Daddr: ip("10.244.1.3"), OrigDaddr: ip("10.244.1.3"),
				Sport: ns(1), Dport: ns(80), OrigDport: ns(80), Proto: 17, Verdict: 2, DropReason: 3, Direction: 2,
				EventType: 2, ObsPoint: 1, IsReply: 0},
			want: Event{Src: netip.MustParseAddr("10.244.1.9"), Dst: netip.MustParseAddr("10.244.1.3"),
				OrigDst: netip.MustParseAddr("10.244.1.3"), SrcPort: 1, DstPort: 80, OrigDstPort: 80, Proto: 17,
				Verdict: VerdictDropped, DropReason: DropInvalidSourceIP, Direction: DirectionEgress, Type: TypeDrop, ObsPoint: ObsFromContainer},
			str: "DROP DROPPED FROM_CONTAINER UDP 10.244.1.9:1 -> 10.244.1.3:80 reason=INVALID_SOURCE_IP dir=EGRESS if=0 id=0->0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			require.NoError(t, Decode(encode(t, tc.raw), &e))
			assert.Equal(t, tc.want, e)
			assert.Equal(t, tc.str, e.String())
		})
	}
}

func TestDecodeShort(t *testing.T) {
	var e Event
	require.Error(t, Decode(make([]byte, Size-1), &e))
}

func TestNames(t *testing.T) {
	assert.Equal(t, "SERVICE_BACKEND_NOT_FOUND", DropServiceBackendNotFound.String())
	assert.Equal(t, "POLICY_UNREPRESENTABLE", DropPolicyUnrepresentable.String())
	assert.Equal(t, "SYN|ACK", (FlagSYN | FlagACK).String())
	assert.Equal(t, "CLOSE", TypeClose.String())
	assert.Equal(t, "TO_CONTAINER", ObsToContainer.String())
	assert.Equal(t, "DROP_REASON_99", DropReason(99).String())
}

func FuzzDecode(f *testing.F) {
	f.Add(make([]byte, Size))
	f.Add([]byte{1, 2, 3})
	f.Add(make([]byte, Size+9))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := Decode(b, &e); err != nil {
			return
		}
		_ = e.String()
		_ = e.IsTranslated()
	})
}
