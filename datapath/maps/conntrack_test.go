package maps_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/datapath/maps"
)

func TestConntrackMatchers(t *testing.T) {
	pod, backend, client, vip := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.1.7"),
		netip.MustParseAddr("10.244.2.9"), netip.MustParseAddr("10.96.0.10")
	other := netip.MustParseAddr("10.244.3.3")
	tests := []struct {
		name      string
		key       maps.CTKey
		entry     maps.CTEntry
		involves  bool // CTInvolves(pod)
		toBackend bool // CTToBackend(7, UDP, backend, 5353)
	}{
		{name: "pod is the source", key: maps.CTKey{Src: pod, Dst: other, Proto: maps.ProtoUDP}, involves: true},
		{name: "pod is the destination", key: maps.CTKey{Src: other, Dst: pod, Proto: maps.ProtoTCP}, involves: true},
		{name: "pod is the DNAT target", key: maps.CTKey{Src: other, Dst: vip}, entry: maps.CTEntry{Flags: maps.CTDNAT, NatAddr: pod}, involves: true},
		{name: "pod is the SNAT address", key: maps.CTKey{Src: other, Dst: vip}, entry: maps.CTEntry{Flags: maps.CTSNAT, SnatAddr: pod}, involves: true},
		{name: "stale NAT address without a NAT flag", key: maps.CTKey{Src: other, Dst: vip}, entry: maps.CTEntry{NatAddr: pod}},
		{name: "unrelated flow", key: maps.CTKey{Src: other, Dst: client}},
		{
			name: "service flow DNAT'd to the backend", key: maps.CTKey{Src: client, Dst: vip, SrcPort: 40000, DstPort: 53, Proto: maps.ProtoUDP},
			entry: maps.CTEntry{Flags: maps.CTDNAT, NatAddr: backend, NatPort: 5353, SvcID: 7}, toBackend: true,
		},
		{
			name: "its reverse-NAT reply entry", key: maps.CTKey{Src: backend, Dst: client, SrcPort: 5353, DstPort: 40000, Proto: maps.ProtoUDP},
			entry: maps.CTEntry{Flags: maps.CTRevNAT, NatAddr: vip, NatPort: 53, SvcID: 7}, toBackend: true,
		},
		{
			name: "same backend, other service", key: maps.CTKey{Src: client, Dst: vip, Proto: maps.ProtoUDP},
			entry: maps.CTEntry{Flags: maps.CTDNAT, NatAddr: backend, NatPort: 5353, SvcID: 8},
		},
		{
			name: "same service, other backend port", key: maps.CTKey{Src: client, Dst: vip, Proto: maps.ProtoUDP},
			entry: maps.CTEntry{Flags: maps.CTDNAT, NatAddr: backend, NatPort: 5354, SvcID: 7},
		},
		{
			name: "same service and backend, TCP", key: maps.CTKey{Src: client, Dst: vip, Proto: maps.ProtoTCP},
			entry: maps.CTEntry{Flags: maps.CTDNAT, NatAddr: backend, NatPort: 5353, SvcID: 7},
		},
		{
			name: "direct flow to the backend, not through the service", key: maps.CTKey{Src: client, Dst: backend, DstPort: 5353, Proto: maps.ProtoUDP},
			entry: maps.CTEntry{SvcID: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.involves, maps.CTInvolves(pod)(tt.key, tt.entry), "CTInvolves")
			assert.Equal(t, tt.toBackend, maps.CTToBackend(7, maps.ProtoUDP, backend, 5353)(tt.key, tt.entry), "CTToBackend")
		})
	}
}
