package conformance

// Generate returns every case of the full set, in a fixed order, for universe u (ipBlock cases
// use its pod IPs).
func Generate(u *Universe) []Case {
	var out []Case
	for _, g := range []func(*Universe) []Case{genDefaults, genPeers, genPolicyTypes, genMultiple, genUpdates, genClusterPolicies} {
		out = append(out, g(u)...)
	}
	return out
}
