package maps_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// TestCTLifetimes checks each conntrack lifetime over entry timestamps and flags (issue 11,
// "conntrack lifetimes"): TCP established 6 h idle, TCP SYN-only 60 s, TCP closing (FIN both ways
// or an RST) 10 s, non-TCP 60 s; a flow's two entries are judged together.
func TestCTLifetimes(t *testing.T) {
	l := maps.DefaultCTLifetimes()
	assert.Equal(t, maps.CTLifetimes{TCPEstablished: 6 * time.Hour, TCPSyn: time.Minute, TCPClosing: 10 * time.Second, NonTCP: time.Minute}, l)
	const now = uint64(100 * time.Hour)
	tcp := maps.CTKey{Proto: maps.ProtoTCP}
	udp := maps.CTKey{Proto: maps.ProtoUDP}
	icmp := maps.CTKey{Proto: maps.ProtoICMP}
	entry := func(f maps.CTFlags, idle time.Duration) maps.CTEntry {
		return maps.CTEntry{Flags: f, LastSeenNs: now - uint64(idle)}
	}
	ptr := func(e maps.CTEntry) *maps.CTEntry { return &e }
	est := maps.CTSeenNonSYN
	tests := []struct {
		name     string
		key      maps.CTKey
		e        maps.CTEntry
		pair     *maps.CTEntry
		lifetime time.Duration
		expired  bool
	}{
		{"TCP established, idle 5h59m", tcp, entry(est, 5*time.Hour+59*time.Minute), ptr(entry(est, 6*time.Hour)), 6 * time.Hour, false},
		{"TCP established, idle 6h01m", tcp, entry(est, 6*time.Hour+time.Minute), ptr(entry(est, 7*time.Hour)), 6 * time.Hour, true},
		{"TCP established seen from the reply entry only", tcp, entry(0, time.Hour), ptr(entry(est, time.Hour)), 6 * time.Hour, false},
		{"TCP SYN only (no reply), idle 59 s", tcp, entry(0, 59*time.Second), ptr(entry(maps.CTReply, 59*time.Second)), time.Minute, false},
		{"TCP SYN only (no reply), idle 61 s", tcp, entry(0, 61*time.Second), ptr(entry(maps.CTReply, 61*time.Second)), time.Minute, true},
		{"TCP SYN and SYN-ACK, never ACKed, idle 61 s", tcp, entry(0, 61*time.Second), ptr(entry(maps.CTReply, 61*time.Second)), time.Minute, true},
		{"TCP SYN, pair evicted", tcp, entry(0, 61*time.Second), nil, time.Minute, true},
		{"TCP FIN one way only (half-closed), idle 1 h", tcp, entry(est|maps.CTSeenFIN|maps.CTSeenClose, time.Hour), ptr(entry(est|maps.CTSeenClose, time.Hour)), 6 * time.Hour, false},
		{"TCP FIN both ways, idle 9 s", tcp, entry(est|maps.CTSeenFIN, 9*time.Second), ptr(entry(est|maps.CTSeenFIN, 9*time.Second)), 10 * time.Second, false},
		{"TCP FIN both ways, idle 11 s", tcp, entry(est|maps.CTSeenFIN, 11*time.Second), ptr(entry(est|maps.CTSeenFIN, 11*time.Second)), 10 * time.Second, true},
		{"TCP RST from the peer, idle 11 s", tcp, entry(est, 11*time.Second), ptr(entry(est|maps.CTSeenRST, 11*time.Second)), 10 * time.Second, true},
		{"TCP FIN on a lone entry (pair gone) is not closing", tcp, entry(est|maps.CTSeenFIN, time.Hour), nil, 6 * time.Hour, false},
		{"UDP, idle 59 s", udp, entry(0, 59*time.Second), ptr(entry(maps.CTReply, 59*time.Second)), time.Minute, false},
		{"UDP, idle 61 s", udp, entry(0, 61*time.Second), ptr(entry(maps.CTReply, 61*time.Second)), time.Minute, true},
		{"UDP one-way stream: the idle reply entry stays with its active forward entry", udp, entry(maps.CTReply, 10*time.Minute), ptr(entry(0, time.Second)), time.Minute, false},
		{"ICMP, idle 61 s", icmp, entry(0, 61*time.Second), nil, time.Minute, true},
		{"seen in the future (clock skew): kept", udp, maps.CTEntry{LastSeenNs: now + 1}, nil, time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.lifetime, l.Lifetime(tc.key, tc.e, tc.pair))
			assert.Equal(t, tc.expired, l.Expired(tc.key, tc.e, tc.pair, now))
		})
	}
}
