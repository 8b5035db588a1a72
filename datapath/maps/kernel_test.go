//go:build datapath

package maps_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T) *loader.Datapath {
	t.Helper()
	dir := fmt.Sprintf("/sys/fs/bpf/slmaps-%d-%s", os.Getpid(), t.Name())
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close(); dp.Unpin() })
	return dp
}

func TestEndpointsRoundTrip(t *testing.T) {
	m := load(t).Maps
	ip := netip.MustParseAddr("10.244.1.5")
	require.NoError(t, m.UpsertEndpoint(9, maps.Endpoint{IP: ip, Identity: 300, Flags: maps.EndpointIngressEnforced}))
	got, err := m.LookupEndpoint(9)
	require.NoError(t, err)
	assert.Equal(t, ip, got.IP)
	assert.Equal(t, uint32(9), got.EpID, "ep_id defaults to the ifindex")
	all, err := m.ListEndpoints()
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.NoError(t, m.DeleteEndpoint(9))
	require.NoError(t, m.DeleteEndpoint(9), "deleting twice is fine")
	var idx uint32
	require.ErrorIs(t, m.EpByIP.Lookup(ip.As4(), &idx), ebpf.ErrKeyNotExist)
}

func TestServiceSlotsShrink(t *testing.T) {
	m := load(t).Maps
	k := maps.ServiceKey{VIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Proto: maps.ProtoTCP}
	be := func(s string) maps.Backend { return maps.Backend{IP: netip.MustParseAddr(s), Port: 8080} }
	require.NoError(t, m.UpsertService(k, maps.Service{ID: 4}, []maps.Backend{be("10.0.0.1"), be("10.0.0.2"), be("10.0.0.3")}))
	require.NoError(t, m.UpsertService(k, maps.Service{ID: 4}, []maps.Backend{be("10.0.0.3")}))
	svcs, err := m.ListServices()
	require.NoError(t, err)
	require.Len(t, svcs, 1)
	assert.Equal(t, []maps.Backend{be("10.0.0.3")}, svcs[0].Backends)
	require.NoError(t, m.UpsertService(k, maps.Service{ID: 4, Flags: maps.ServiceAffinity, AffinityTimeout: 30}, []maps.Backend{be("10.0.0.3")}))
	svcs, err = m.ListServices()
	require.NoError(t, err)
	require.Len(t, svcs, 1)
	assert.Equal(t, maps.Service{ID: 4, Flags: maps.ServiceAffinity, AffinityTimeout: 30}, svcs[0].Service, "the affinity timeout round-trips")
	require.Error(t, m.UpsertService(k, maps.Service{ID: 4, Flags: maps.ServiceAffinity}, []maps.Backend{be("10.0.0.3")}), "affinity without a timeout")
	n := 0
	var bk, bv [8]byte
	it := m.Backends.Iterate()
	for it.Next(&bk, &bv) {
		n++
	}
	assert.Equal(t, 1, n, "stale slots removed")
	require.NoError(t, m.DeleteService(k))
	svcs, err = m.ListServices()
	require.NoError(t, err)
	assert.Empty(t, svcs)
}

func TestPolicyBatchAndList(t *testing.T) {
	m := load(t).Maps
	var entries []maps.PolicyEntry
	for i := 0; i < 1000; i++ {
		entries = append(entries, maps.PolicyEntry{
			Key:   maps.PolicyKey{EpID: 5, PeerID: uint32(256 + i), Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 80, PortPrefixLen: 16},
			Value: maps.PolicyValue{Action: maps.ActionAllow, PolicyID: uint32(i + 1)},
		})
	}
	require.NoError(t, m.UpsertPolicies(entries))
	got, err := m.ListPolicies()
	require.NoError(t, err)
	require.Len(t, got, 1000)
	require.NoError(t, m.DeletePolicies([]maps.PolicyKey{entries[0].Key}))
	got, err = m.ListPolicies()
	require.NoError(t, err)
	require.Len(t, got, 999)
}

func TestMapFullIsTyped(t *testing.T) {
	m := load(t).Maps
	small, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 28, MaxEntries: 2})
	require.NoError(t, err)
	defer small.Close()
	m.Endpoints = small
	for i := uint32(1); i <= 2; i++ {
		require.NoError(t, m.UpsertEndpoint(i, maps.Endpoint{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}))
	}
	err = m.UpsertEndpoint(3, maps.Endpoint{IP: netip.MustParseAddr("10.0.0.3")})
	require.Error(t, err)
	require.True(t, errors.Is(err, maps.ErrMapFull), "got %v", err)
	var fe *maps.FullError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, maps.NameEndpoints, fe.Map)
}

func TestConfigAndCounters(t *testing.T) {
	m := load(t).Maps
	cfg := maps.Config{NodeIPs: []netip.Addr{netip.MustParseAddr("172.18.0.2")}, NetdevIfindex: 2, EventLevel: maps.EventsAll}
	require.NoError(t, m.SetConfig(cfg))
	got, err := m.GetConfig()
	require.NoError(t, err)
	assert.Equal(t, cfg, got)
	require.Error(t, m.SetConfig(maps.Config{NodeIPs: make([]netip.Addr, 5)}))
	c, err := m.ReadCounters()
	require.NoError(t, err)
	assert.Zero(t, c.Packets)
}

func TestGCConntrack(t *testing.T) {
	m := load(t).Maps
	now, err := maps.BootTimeNs()
	require.NoError(t, err)
	type ctk struct {
		Saddr, Daddr uint32
		Sport, Dport uint16
		Proto, Scope uint8
		Pad          uint16
	}
	val := make([]byte, 96)
	put := func(i uint32, lastSeen uint64) {
		for b := 0; b < 8; b++ {
			val[8+b] = byte(lastSeen >> (8 * b))
		}
		require.NoError(t, m.CT.Put(ctk{Saddr: i, Daddr: 1, Proto: 6, Scope: 2}, val))
	}
	put(1, now-uint64(10*time.Minute))
	put(2, now)
	n, err := m.GCConntrack(context.Background(), maps.DefaultCTLifetimes())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	left := 0
	require.NoError(t, m.IterateCT(func(maps.CTKey, maps.CTEntry) bool { left++; return true }))
	assert.Equal(t, 1, left)
}

// TestDeleteCTWhereTakesPairs writes two flows (each a forward and a reply entry) into sl_ct and
// deletes the entries of one address: both of its entries go, the other flow stays.
func TestDeleteCTWhereTakesPairs(t *testing.T) {
	m := load(t).Maps
	raw := func(src, dst string, sport, dport uint16, scope maps.CTScope) bpfobj.SlSlCtKey {
		s, _ := maps.IPToU32(netip.MustParseAddr(src))
		d, _ := maps.IPToU32(netip.MustParseAddr(dst))
		return bpfobj.SlSlCtKey{Saddr: s, Daddr: d, Sport: maps.Htons(sport), Dport: maps.Htons(dport), Proto: uint8(maps.ProtoUDP), Scope: uint8(scope)}
	}
	pair := func(fk, rk bpfobj.SlSlCtKey) {
		require.NoError(t, m.CT.Update(&fk, &bpfobj.SlSlCtEntry{Pair: rk}, ebpf.UpdateAny))
		require.NoError(t, m.CT.Update(&rk, &bpfobj.SlSlCtEntry{Pair: fk, Flags: uint16(maps.CTReply)}, ebpf.UpdateAny))
	}
	pair(raw("10.244.2.9", "10.244.1.5", 40000, 53, maps.CTIngress), raw("10.244.1.5", "10.244.2.9", 53, 40000, maps.CTEgress))
	pair(raw("10.244.2.9", "10.244.1.6", 40000, 53, maps.CTIngress), raw("10.244.1.6", "10.244.2.9", 53, 40000, maps.CTEgress))

	// Match only the forward entry: its reply entry goes with it as its pair.
	gone := netip.MustParseAddr("10.244.1.5")
	n, err := m.DeleteCTWhere(t.Context(), func(k maps.CTKey, _ maps.CTEntry) bool { return k.Dst == gone })
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	var left []maps.CTKey
	require.NoError(t, m.IterateCT(func(k maps.CTKey, _ maps.CTEntry) bool { left = append(left, k); return true }))
	require.Len(t, left, 2)
	for _, k := range left {
		assert.Contains(t, []string{k.Src.String(), k.Dst.String()}, "10.244.1.6")
	}
	n, err = m.DeleteCTWhere(t.Context(), func(maps.CTKey, maps.CTEntry) bool { return false })
	require.NoError(t, err)
	assert.Zero(t, n)
}
