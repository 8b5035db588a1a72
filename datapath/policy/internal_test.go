package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/datapath/maps"
)

func TestRangePrefixes(t *testing.T) {
	tests := []struct {
		lo, hi uint16
		want   []portPrefix
	}{
		{80, 80, []portPrefix{{80, 16}}},
		{8000, 8003, []portPrefix{{8000, 14}}},
		{8000, 8090, []portPrefix{{8000, 10}, {8064, 12}, {8080, 13}, {8088, 15}, {8090, 16}}},
		{0, 65535, []portPrefix{{0, 0}}},
		{1, 65535, nil}, // checked by the property loop below
		{32768, 65535, []portPrefix{{32768, 1}}},
	}
	for _, tc := range tests {
		got := rangePrefixes(tc.lo, tc.hi)
		if tc.want != nil {
			assert.Equal(t, tc.want, got, "%d-%d", tc.lo, tc.hi)
		}
	}
	// Property: the prefixes cover exactly [lo, hi], each aligned.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		lo := uint16(rng.IntN(65536))
		hi := lo + uint16(rng.IntN(65536-int(lo)))
		covered := 0
		for _, p := range rangePrefixes(lo, hi) {
			size := 1 << (16 - p.Len)
			require.Zero(t, int(p.Port)%size, "unaligned prefix %v for %d-%d", p, lo, hi)
			require.GreaterOrEqual(t, p.Port, lo)
			require.LessOrEqual(t, int(p.Port)+size-1, int(hi))
			covered += size
		}
		require.Equal(t, int(hi)-int(lo)+1, covered, "%d-%d", lo, hi)
	}
}

// TestLevelEntriesMatchUnion checks the LPM entries of random overlapping
// ipBlocks against the set they stand for, address by address.
func TestLevelEntriesMatchUnion(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randPrefix := func() netip.Prefix {
		if rng.IntN(10) == 0 {
			return netip.MustParsePrefix("0.0.0.0/0")
		}
		bits := 26 + rng.IntN(7)
		addr := netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(64))})
		return netip.PrefixFrom(addr, bits).Masked()
	}
	for iter := range 3000 {
		var rules []cidrRule
		for i := range 1 + rng.IntN(4) {
			r := cidrRule{CIDR: randPrefix(), Value: maps.PolicyValue{Action: ActionAllow, PolicyID: uint32(1 + rng.IntN(3)), Rule: uint16(i)}}
			for range rng.IntN(3) {
				r.Except = append(r.Except, randPrefix())
			}
			rules = append(rules, r)
		}
		entries := levelEntries(rules)
		for a := range 72 {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(a)})
			if a >= 64 {
				ip = netip.AddrFrom4([4]byte{8, 8, 8, byte(a)})
			}
			want := false
			for _, r := range rules {
				in := r.CIDR.Contains(ip)
				for _, e := range r.Except {
					in = in && !e.Contains(ip)
				}
				want = want || in
			}
			best, got := -1, false
			for _, e := range entries {
				if e.prefix.Contains(ip) && e.prefix.Bits() > best {
					best, got = e.prefix.Bits(), e.value.Action == ActionAllow
				}
			}
			require.Equal(t, want, got, "iteration %d, %s, rules %+v, entries %+v", iter, ip, rules, entries)
		}
	}
}
