package flowevent

import (
	"encoding/binary"
	"net/netip"
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

func TestSizeMatchesC(t *testing.T) {
	require.Equal(t, Size, binary.Size(bpfobj.SlSlFlowEvent{}))
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
