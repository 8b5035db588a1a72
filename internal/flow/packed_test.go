package flow

import (
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestPackRoundTrip(t *testing.T) {
	in := newInterner()
	base := time.Now()
	cases := map[string]func(*Flow){
		"as built":       func(*Flow) {},
		"reply, close":   func(f *Flow) { f.IsReply, f.EventType, f.Packets, f.Bytes = true, EventClose, 7, 900 },
		"service nat":    func(f *Flow) { f.IP.OrigDestination, f.L4.OrigDestinationPort = "10.96.0.10", 80 },
		"no endpoint ip": func(f *Flow) { f.Source.IP, f.Destination.IP = "", "" },
		"world":          func(f *Flow) { f.Source = Endpoint{Identity: IdentityWorld, Labels: []string{"reserved:world"}} },
		"empty labels":   func(f *Flow) { f.Source.Labels = []string{} },
		"udp no flags":   func(f *Flow) { f.L4 = L4{Protocol: ProtoUDP, SourcePort: 5, DestinationPort: 53} },
		"all flags": func(f *Flow) {
			f.L4.Flags = &TCPFlags{FIN: true, SYN: true, RST: true, PSH: true, ACK: true, URG: true, ECE: true, CWR: true}
		},
		"no uuid":           func(f *Flow) { f.UUID = "" },
		"upper uuid":        func(f *Flow) { f.UUID = "8A3F2C10-0001-4E1B-9C7D-000000000001" },
		"odd uuid":          func(f *Flow) { f.UUID = "not-a-uuid" },
		"ipv6 long form":    func(f *Flow) { f.IP.Source, f.Source.IP = "fd00:0::1", "fd00:0::1" },
		"endpoint ip apart": func(f *Flow) { f.Destination.IP = "10.1.1.1" },
		"unknown verdict":   func(f *Flow) { f.Verdict = "MAYBE" },
		"unknown protocol":  func(f *Flow) { f.L4.Protocol = "47" },
		"source service":    func(f *Flow) { f.SourceService = &Service{Name: "a", Namespace: "b"} },
	}
	i := 0
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			f := benchFlow(i, base.Add(time.Duration(i)))
			i++
			mod(f)
			p := in.pack(f)
			require.Equal(t, f, p.flow())
		})
	}
	full := benchFlow(1, base)
	full.UUID = "not-a-uuid"
	pf := in.pack(full)
	require.Same(t, full, pf.flow(), "a flow that does not pack is kept whole")
	require.Nil(t, in.pack(benchFlow(2, base)).full, "a realistic flow packs")
}

func TestPackShares(t *testing.T) {
	in := newInterner()
	a, b := in.pack(benchFlow(3, time.Now())), in.pack(benchFlow(6, time.Now()))
	require.Same(t, a.dst, b.dst, "flows of one pod share its metadata")
	require.Same(t, a.allowed, b.allowed)
	require.LessOrEqual(t, unsafe.Sizeof(packed{}), uintptr(200), "the packed entry's own size")
}

func TestParseCanonicalUUID(t *testing.T) {
	for range 100 {
		u := uuid.New()
		got, ok := parseCanonicalUUID(u.String())
		require.True(t, ok)
		require.Equal(t, [16]byte(u), got)
	}
	for _, s := range []string{"", "8A3F2C10-0001-4E1B-9C7D-000000000001", "8a3f2c10000144e1b9c7d000000000001xxx",
		"{8a3f2c10-0001-4e1b-9c7d-00000000000}", "8a3f2c10-0001-4e1b-9c7d-00000000000g"} {
		_, ok := parseCanonicalUUID(s)
		require.False(t, ok, s)
	}
}
