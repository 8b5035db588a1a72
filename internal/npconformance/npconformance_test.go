package npconformance

import (
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/network-policy-api/conformance"
	"sigs.k8s.io/network-policy-api/conformance/tests"
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
