package maps

// PolicyCapacity is how many entries the policy maps hold (their max_entries), for the policy
// part's capacity check before it writes.
type PolicyCapacity struct {
	Policy int // sl_policy
	CIDR   int // sl_cidr_policy
}

// PolicyCapacity returns the max entries of sl_policy and sl_cidr_policy.
func (m *Maps) PolicyCapacity() PolicyCapacity {
	return PolicyCapacity{Policy: int(m.Policy.MaxEntries()), CIDR: int(m.CIDRPolicy.MaxEntries())}
}
