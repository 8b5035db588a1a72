package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/datapath/ipam"
)

func TestNewRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		dir    string
		prefix netip.Prefix
	}{
		{"invalid prefix", dir, netip.Prefix{}},
		{"ipv6", dir, netip.MustParsePrefix("fd00::/64")},
		{"too small", dir, netip.MustParsePrefix("10.0.0.0/31")},
		{"no dir", "", netip.MustParsePrefix("10.0.0.0/24")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ipam.New(tc.dir, tc.prefix)
			require.Error(t, err)
		})
	}
}

func TestAllocateSkipsReservedAndExhausts(t *testing.T) {
	ctx := context.Background()
	a, err := ipam.New(t.TempDir(), netip.MustParsePrefix("10.244.1.0/29"))
	require.NoError(t, err)
	var got []string
	for i := 0; i < 5; i++ {
		ip, err := a.Allocate(ctx, fmt.Sprintf("c%d", i), "eth0")
		require.NoError(t, err)
		got = append(got, ip.String())
	}
	// .0 network, .1 gateway, .7 broadcast are never handed out.
	assert.Equal(t, []string{"10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"}, got)
	_, err = a.Allocate(ctx, "c-extra", "eth0")
	require.ErrorIs(t, err, ipam.ErrExhausted)

	// Same owner again: same address, no new allocation.
	ip, err := a.Allocate(ctx, "c3", "eth0")
	require.NoError(t, err)
	assert.Equal(t, "10.244.1.5", ip.String())

	require.NoError(t, a.Release(ctx, "c1"))
	require.NoError(t, a.Release(ctx, "c1"), "release is idempotent")
	require.NoError(t, a.Release(ctx, "never-existed"))
	ip, err = a.Allocate(ctx, "c-new", "eth0")
	require.NoError(t, err)
	assert.Equal(t, "10.244.1.3", ip.String(), "the freed address is the only one left")
}

func TestRoundRobinAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := netip.MustParsePrefix("10.244.2.0/24")
	a, err := ipam.New(dir, p)
	require.NoError(t, err)
	ip1, err := a.Allocate(ctx, "a", "eth0")
	require.NoError(t, err)
	require.NoError(t, a.Release(ctx, "a"))
	ip2, err := a.Allocate(ctx, "b", "eth0")
	require.NoError(t, err)
	assert.NotEqual(t, ip1, ip2, "a just-freed address is not reused at once")

	// A new allocator over the same directory (agent/node restart) sees the state.
	b, err := ipam.New(dir, p)
	require.NoError(t, err)
	owned, err := b.Lookup(ctx, "b")
	require.NoError(t, err)
	require.Len(t, owned, 1)
	assert.Equal(t, ip2, owned[0].IP)
	ip3, err := b.Allocate(ctx, "c", "eth0")
	require.NoError(t, err)
	assert.NotEqual(t, ip2, ip3)
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	a, err := ipam.New(t.TempDir(), netip.MustParsePrefix("10.244.3.0/24"))
	require.NoError(t, err)
	for _, id := range []string{"live1", "dead1", "live2", "dead2"} {
		_, err := a.Allocate(ctx, id, "eth0")
		require.NoError(t, err)
	}
	freed, err := a.GC(ctx, map[string]bool{"live1": true, "live2": true})
	require.NoError(t, err)
	var ids []string
	for _, f := range freed {
		ids = append(ids, f.ContainerID)
	}
	assert.ElementsMatch(t, []string{"dead1", "dead2"}, ids)
	all, err := a.List(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, "live1", all[0].ContainerID)
}

func TestConcurrentGoroutinesNeverDoubleAllocate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := netip.MustParsePrefix("10.244.4.0/24")
	const n = 100
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			a, err := ipam.New(dir, p) // separate allocators: separate lock fds
			if err != nil {
				errs[i] = err
				return
			}
			ips[i], errs[i] = a.Allocate(ctx, "g"+strconv.Itoa(i), "eth0")
		}(i)
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := 0; i < n; i++ {
		require.NoError(t, errs[i])
		require.False(t, seen[ips[i]], "address %s handed out twice", ips[i])
		seen[ips[i]] = true
	}
}

const helperEnv = "STARLAB_IPAM_HELPER"

// TestMain doubles as the child process of TestConcurrentProcessesNeverDoubleAllocate.
func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperAllocate(spec))
	}
	os.Exit(m.Run())
}

func helperAllocate(spec string) int {
	var dir, id string
	var count int
	if _, err := fmt.Sscanf(spec, "%s %s %d", &dir, &id, &count); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	a, err := ipam.New(dir, netip.MustParsePrefix("10.244.5.0/24"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; i < count; i++ {
		if _, err := a.Allocate(context.Background(), fmt.Sprintf("%s-%d", id, i), "eth0"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func TestConcurrentProcessesNeverDoubleAllocate(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 4, 30
	var wg sync.WaitGroup
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	for i := 0; i < procs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s p%d %d", helperEnv, dir, i, each))
			outs[i], errs[i] = cmd.CombinedOutput()
		}(i)
	}
	wg.Wait()
	for i := range errs {
		require.NoError(t, errs[i], string(outs[i]))
	}
	a, err := ipam.New(dir, netip.MustParsePrefix("10.244.5.0/24"))
	require.NoError(t, err)
	all, err := a.List(context.Background())
	require.NoError(t, err)
	require.Len(t, all, procs*each, "every allocation has its own file, so no address was shared")
	owners := map[string]bool{}
	for _, al := range all {
		require.False(t, owners[al.ContainerID])
		owners[al.ContainerID] = true
	}
}

func BenchmarkAllocateRelease(b *testing.B) {
	ctx := context.Background()
	a, err := ipam.New(b.TempDir(), netip.MustParsePrefix("10.244.6.0/24"))
	if err != nil {
		b.Fatal(err)
	}
	// A realistic node: 100 pods already allocated.
	for i := 0; i < 100; i++ {
		if _, err := a.Allocate(ctx, fmt.Sprintf("pre-%d", i), "eth0"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "c-" + strconv.Itoa(i)
		if _, err := a.Allocate(ctx, id, "eth0"); err != nil {
			b.Fatal(err)
		}
		if err := a.Release(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
