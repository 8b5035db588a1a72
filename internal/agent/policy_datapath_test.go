//go:build datapath

package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// TestPolicyPartRoundTripsRealMaps programs a compilation into the real BPF maps and reads it
// back: what the maps hold is exactly the policy part's record (keys are canonical), so a
// restarted agent's first diff writes nothing.
func TestPolicyPartRoundTripsRealMaps(t *testing.T) {
	require.Equal(t, 0, os.Geteuid(), "needs root: BPF maps")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("sltest-agentpol-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	dp, err := loader.Load(context.Background(), loader.Options{PinDir: pinDir})
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })

	dir := t.TempDir()
	f := newPolicyFixtureIn(t, dir)
	f.p.maps = dp.Maps
	f.addWeb(t)
	np := allowClient("7")
	np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
		IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16", "10.1.2.0/24"}},
	}}}}
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	require.NoError(t, f.netpols.Add(np))
	require.NoError(t, f.p.compileAndApply(t.Context()))

	got, err := policy.ReadState(dp.Maps)
	require.NoError(t, err)
	assert.NotEmpty(t, got.Policy)
	assert.NotEmpty(t, got.CIDR)
	assert.Equal(t, f.p.programmed, got)
	assert.True(t, policy.Diff(got, f.p.programmed).Empty())

	// A restarted agent: a new policy part over the same maps writes nothing.
	g := newPolicyFixtureIn(t, dir) // identities and policy ids restored from the state directory
	g.p.maps = dp.Maps
	g.addWeb(t)
	require.NoError(t, g.netpols.Add(np))
	require.NoError(t, g.p.compileAndApply(t.Context()))
	assert.True(t, policy.Diff(got, g.p.programmed).Empty(), "its first diff (from the maps as read) was empty")
	again, err := policy.ReadState(dp.Maps)
	require.NoError(t, err)
	assert.Equal(t, got, again)

	// Policy gone: the maps are emptied of its entries.
	require.NoError(t, g.netpols.Delete(np))
	require.NoError(t, g.p.compileAndApply(t.Context()))
	empty, err := policy.ReadState(dp.Maps)
	require.NoError(t, err)
	assert.Empty(t, empty.Policy)
	assert.Empty(t, empty.CIDR)
}
