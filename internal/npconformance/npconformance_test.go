package npconformance

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/network-policy-api/conformance"
	"sigs.k8s.io/network-policy-api/conformance/tests"

	"github.com/starlab-dev/starlab/internal/npconformance/nosctptests"
)

// TestNoSCTPManifestsMatchUpstream: nosctp/base is the module's base/ with only the SCTP server
// containers removed (run go generate ./internal/npconformance after a version bump).
func TestNoSCTPManifestsMatchUpstream(t *testing.T) {
	var upstream []string
	require.NoError(t, fs.WalkDir(conformance.Manifests, "base", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			upstream = append(upstream, p)
		}
		return err
	}))
	var ours []string
	require.NoError(t, fs.WalkDir(noSCTP, "nosctp/base", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			ours = append(ours, strings.TrimPrefix(p, "nosctp/"))
		}
		return err
	}))
	assert.Equal(t, upstream, ours)
	for _, p := range upstream {
		want, err := conformance.Manifests.ReadFile(p)
		require.NoError(t, err)
		if p == "base/manifests.yaml" {
			want = StripSCTPServers(want)
		}
		got, err := noSCTP.ReadFile("nosctp/" + p)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "%s is stale: go generate ./internal/npconformance", p)
	}
}

func TestStripSCTPServersRemovesOnlyThem(t *testing.T) {
	orig, err := conformance.Manifests.ReadFile("base/manifests.yaml")
	require.NoError(t, err)
	got := string(StripSCTPServers(orig))
	assert.NotContains(t, got, "SERVE_SCTP_PORT_")
	assert.NotContains(t, got, "/agnhost porter")
	removed := strings.Count(string(orig), "\n") - strings.Count(got, "\n")
	assert.Equal(t, 6*strings.Count(string(orig), "SERVE_SCTP_PORT_"), removed, "each SCTP server container is 6 lines")
	for _, keep := range []string{"harry-potter-80", "harry-potter-53", "centaur", "hostNetwork: true", "{{ index .HostNetworkPorts 0 }}"} {
		assert.Contains(t, got, keep)
	}
}

// TestSCTPTestsAreTheOnesProbingSCTP: SCTPTests lists exactly the suite's tests whose source probes
// "sctp", and every name is a test of the suite.
func TestSCTPTestsAreTheOnesProbingSCTP(t *testing.T) {
	short := regexp.MustCompile(`ShortName:\s+"([^"]+)"`)
	var probing []string
	entries, err := conformance.Manifests.ReadDir("tests")
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		src, err := conformance.Manifests.ReadFile("tests/" + e.Name())
		require.NoError(t, err)
		// a file may declare several tests: split at each ShortName
		locs := short.FindAllSubmatchIndex(src, -1)
		for i, loc := range locs {
			end := len(src)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			if strings.Contains(string(src[loc[0]:end]), `"sctp"`) {
				probing = append(probing, string(src[loc[2]:loc[3]]))
			}
		}
	}
	sort.Strings(probing)
	assert.Equal(t, SCTPTests, probing)
	names := map[string]bool{}
	for _, ct := range tests.ConformanceTests {
		names[ct.ShortName] = true
	}
	for _, n := range SCTPTests {
		assert.True(t, names[n], n)
	}
	assert.Len(t, tests.ConformanceTests, 30, "the v0.3.0 suite has 30 tests (24 standard, 6 experimental)")
}

// TestNoSCTPTestsMatchUpstream: nosctptests is what StripSCTPProbes makes of the suite's sources (run go
// generate ./internal/npconformance after a version bump), and each rewritten test keeps every TCP and
// UDP probe of its upstream test and no SCTP probe.
func TestNoSCTPTestsMatchUpstream(t *testing.T) {
	want, err := NoSCTPTestSources()
	require.NoError(t, err)
	entries, err := os.ReadDir(NoSCTPTestsPackage)
	require.NoError(t, err)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	var names []string
	for name, src := range want {
		file := strings.ReplaceAll(name, "-", "_")
		names = append(names, file)
		have, err := os.ReadFile(filepath.Join(NoSCTPTestsPackage, file))
		require.NoError(t, err)
		assert.Equal(t, string(src), string(have), "%s is stale: go generate ./internal/npconformance", file)
		if name == "main.go" {
			continue
		}
		up, err := conformance.Manifests.ReadFile("tests/" + name)
		require.NoError(t, err)
		assert.NotContains(t, string(src), `"sctp"`)
		for _, proto := range []string{`"tcp",`, `"udp",`} {
			assert.LessOrEqual(t, strings.Count(string(src), proto), strings.Count(string(up), proto), name)
		}
	}
	sort.Strings(names)
	assert.Equal(t, names, got)

	var rewritten []string
	probes := 0
	for _, ct := range nosctptests.ConformanceTests {
		rewritten = append(rewritten, strings.TrimSuffix(ct.ShortName, WithoutSCTPSuffix))
	}
	for _, src := range want {
		probes += strings.Count(string(src), "kubernetes.PokeServer(")
	}
	sort.Strings(rewritten)
	// the four tests that probe nothing but SCTP are left out; the other eight keep their TCP/UDP probes
	assert.Equal(t, []string{
		"CNPAdminTierEgressInlineCIDRPeers", "CNPAdminTierEgressNodePeers", "CNPAdminTierGress", "CNPAdminTierPortRange",
		"CNPBaselineTierEgressInlineCIDRPeers", "CNPBaselineTierEgressNodePeers", "CNPBaselineTierGress", "CNPBaselineTierPortRange",
	}, rewritten)
	assert.Equal(t, 131, probes, "TCP and UDP probes of the rewritten tests")
	for _, n := range rewritten {
		assert.Contains(t, SCTPTests, n)
	}
}

// TestStripSCTPProbesKeepsOtherProbes: on a small source, the SCTP probe goes, the TCP probe and a
// variable only the SCTP probe read stay valid Go.
func TestStripSCTPProbesKeepsOtherProbes(t *testing.T) {
	src := `package tests

import (
	"testing"

	"sigs.k8s.io/network-policy-api/conformance/utils/kubernetes"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
)

func init() { ConformanceTests = append(ConformanceTests, A, B) }

var A = suite.ConformanceTest{
	ShortName: "A",
	Test: func(t *testing.T, s *suite.ConformanceTestSuite) {
		t.Run("x", func(t *testing.T) {
			p := kubernetes.GetPod(t, s.Client, "ns", "a", s.TimeoutConfig.GetTimeout)
			q := kubernetes.GetPod(t, s.Client, "ns", "b", s.TimeoutConfig.GetTimeout)
			kubernetes.PokeServer(t, s.ClientSet, &s.KubeConfig, "ns", "c", "tcp", p.Status.PodIP, int32(80), s.TimeoutConfig, true)
			kubernetes.PokeServer(t, s.ClientSet, &s.KubeConfig, "ns", "c", "sctp", q.Status.PodIP, int32(9003), s.TimeoutConfig, true)
		})
	},
}

var B = suite.ConformanceTest{
	ShortName: "B",
	Test: func(t *testing.T, s *suite.ConformanceTestSuite) {
		kubernetes.PokeServer(t, s.ClientSet, &s.KubeConfig, "ns", "c", "tcp", "10.0.0.1", int32(80), s.TimeoutConfig, true)
	},
}
`
	out, kept, err := StripSCTPProbes("x.go", []byte(src))
	require.NoError(t, err)
	assert.Equal(t, []string{"A"}, kept, "B probes no SCTP: it runs as upstream wrote it")
	s := string(out)
	assert.Contains(t, s, `"AWithoutSCTPProbes"`)
	assert.Contains(t, s, `"tcp", p.Status.PodIP`)
	assert.NotContains(t, s, `"sctp"`)
	assert.Contains(t, s, "_ = q")
	assert.NotContains(t, s, "var B")
	assert.Contains(t, s, "append(ConformanceTests, A)")
	assert.Contains(t, s, "package "+NoSCTPTestsPackage)
}
