package maps

import (
	"fmt"
	"net/netip"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
)

// Action of a policy entry (enum sl_policy_action).
type Action uint8

// Actions.
const (
	// ActionNone: no NetworkPolicy allows the key's traffic; only its tier hits say something.
	ActionNone  = Action(bpfobj.SlSlPolicyActionSL_ACTION_NONE)
	ActionAllow = Action(bpfobj.SlSlPolicyActionSL_ACTION_ALLOW)
	// ActionExcept (sl_cidr_policy only): an ipBlock "except" range; it
	// never allows, the datapath moves on to the next, wider lookup.
	ActionExcept = Action(bpfobj.SlSlPolicyActionSL_ACTION_EXCEPT)
)

// CNPAction is a ClusterNetworkPolicy rule action (enum sl_cnp_action).
type CNPAction uint8

// ClusterNetworkPolicy actions.
const (
	CNPAccept = CNPAction(bpfobj.SlSlCnpActionSL_CNP_ACCEPT)
	CNPDeny   = CNPAction(bpfobj.SlSlCnpActionSL_CNP_DENY)
	CNPPass   = CNPAction(bpfobj.SlSlCnpActionSL_CNP_PASS)
)

var cnpActionNames = [...]string{CNPAccept: "Accept", CNPDeny: "Deny", CNPPass: "Pass"}

func (a CNPAction) String() string { return EnumName(cnpActionNames[:], uint8(a), "CNP_ACTION_%d") }

// TierHit is struct sl_tier_hit: the best ClusterNetworkPolicy rule of one tier for a key, with
// the rules of every shorter covering prefix folded in. Prec 0 means no rule; lower wins.
type TierHit struct {
	Prec     uint32
	PolicyID uint32
	Rule     uint16
	Action   CNPAction
}

// policyFixedBits is ep_id + peer_id + dir + proto.
const policyFixedBits = uint32(bpfobj.SlSlLpmBitsSL_POLICY_FIXED_BITS)

// cidrFixedBits is ep_id + dir + proto + port.
const cidrFixedBits = uint32(bpfobj.SlSlLpmBitsSL_CIDR_FIXED_BITS)

// PolicyKey is an sl_policy key. PortPrefixLen is how many leading bits of
// Port must match (16 = exactly Port, 0 = any port; endPort ranges become
// aligned prefixes). With Proto 0 (any protocol) PortPrefixLen must be 0.
type PolicyKey struct {
	EpID          uint32
	PeerID        uint32
	Dir           Direction
	Proto         Proto
	Port          uint16
	PortPrefixLen uint8
}

// PolicyValue is an sl_policy / sl_cidr_policy value: the NetworkPolicy part (Action, Rule,
// PolicyID) and the ClusterNetworkPolicy tiers (zero on endpoints without tier flags).
type PolicyValue struct {
	Action   Action
	Rule     uint16
	PolicyID uint32
	Admin    TierHit
	Baseline TierHit
}

// PolicyEntry is one key/value pair.
type PolicyEntry struct {
	Key   PolicyKey
	Value PolicyValue
}

func portMask(port uint16, plen uint8) uint16 {
	if plen == 0 {
		return 0
	}
	return port & (^uint16(0) << (16 - plen))
}

func (k PolicyKey) raw() (bpfobj.SlSlPolicyKey, error) {
	if k.Dir != Ingress && k.Dir != Egress {
		return bpfobj.SlSlPolicyKey{}, fmt.Errorf("policy key %+v: dir must be 1 (ingress) or 2 (egress)", k)
	}
	if k.PortPrefixLen > 16 {
		return bpfobj.SlSlPolicyKey{}, fmt.Errorf("policy key %+v: port prefix length %d > 16", k, k.PortPrefixLen)
	}
	if k.Proto == ProtoAny && k.PortPrefixLen != 0 {
		return bpfobj.SlSlPolicyKey{}, fmt.Errorf("policy key %+v: a port needs a protocol (proto 0 means any protocol, port prefix must be 0)", k)
	}
	return bpfobj.SlSlPolicyKey{
		Prefixlen: policyFixedBits + uint32(k.PortPrefixLen),
		EpId:      k.EpID, PeerId: k.PeerID, Dir: uint8(k.Dir), Proto: uint8(k.Proto),
		Port: Htons(portMask(k.Port, k.PortPrefixLen)),
	}, nil
}

func (v PolicyValue) raw() bpfobj.SlSlPolicyVal {
	r := bpfobj.SlSlPolicyVal{Action: uint8(v.Action), Rule: v.Rule, PolicyId: v.PolicyID}
	r.Admin.Prec, r.Admin.PolicyId, r.Admin.Rule, r.Admin.Action = v.Admin.Prec, v.Admin.PolicyID, v.Admin.Rule, uint8(v.Admin.Action)
	r.Baseline.Prec, r.Baseline.PolicyId, r.Baseline.Rule, r.Baseline.Action = v.Baseline.Prec, v.Baseline.PolicyID, v.Baseline.Rule, uint8(v.Baseline.Action)
	return r
}

func policyValueFromRaw(r *bpfobj.SlSlPolicyVal) PolicyValue {
	return PolicyValue{
		Action: Action(r.Action), Rule: r.Rule, PolicyID: r.PolicyId,
		Admin:    TierHit{Prec: r.Admin.Prec, PolicyID: r.Admin.PolicyId, Rule: r.Admin.Rule, Action: CNPAction(r.Admin.Action)},
		Baseline: TierHit{Prec: r.Baseline.Prec, PolicyID: r.Baseline.PolicyId, Rule: r.Baseline.Rule, Action: CNPAction(r.Baseline.Action)},
	}
}

// UpsertPolicy writes one sl_policy entry.
func (m *Maps) UpsertPolicy(k PolicyKey, v PolicyValue) error {
	return m.UpsertPolicies([]PolicyEntry{{Key: k, Value: v}})
}

// UpsertPolicies writes many sl_policy entries.
func (m *Maps) UpsertPolicies(entries []PolicyEntry) error {
	keys, vals, err := rawPolicyEntries(entries, func(e PolicyEntry) (PolicyKey, PolicyValue) { return e.Key, e.Value })
	if err != nil {
		return err
	}
	return batchPut(m.Policy, NamePolicy, keys, vals)
}

// DeletePolicies removes many sl_policy entries (missing ones are not an error).
func (m *Maps) DeletePolicies(keys []PolicyKey) error {
	raw, err := rawKeys(keys)
	if err != nil {
		return err
	}
	return batchDel(m.Policy, NamePolicy, raw)
}

// ListPolicies returns every sl_policy entry.
func (m *Maps) ListPolicies() ([]PolicyEntry, error) {
	var out []PolicyEntry
	var k bpfobj.SlSlPolicyKey
	var v bpfobj.SlSlPolicyVal
	it := m.Policy.Iterate()
	for it.Next(&k, &v) {
		plen := uint8(0)
		if k.Prefixlen > policyFixedBits {
			plen = uint8(k.Prefixlen - policyFixedBits)
		}
		out = append(out, PolicyEntry{
			Key: PolicyKey{EpID: k.EpId, PeerID: k.PeerId, Dir: Direction(k.Dir), Proto: Proto(k.Proto),
				Port: Ntohs(k.Port), PortPrefixLen: plen},
			Value: policyValueFromRaw(&v),
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", NamePolicy, err)
	}
	return out, nil
}

// CIDRPolicyKey is an sl_cidr_policy key: the peer prefix for one endpoint,
// direction, protocol and port (Port 0 = any port, Proto 0 = any protocol).
type CIDRPolicyKey struct {
	EpID   uint32
	Dir    Direction
	Proto  Proto
	Port   uint16
	Prefix netip.Prefix
}

// CIDRPolicyEntry is one key/value pair.
type CIDRPolicyEntry struct {
	Key   CIDRPolicyKey
	Value PolicyValue
}

func (k CIDRPolicyKey) raw() (bpfobj.SlSlCidrPolicyKey, error) {
	if k.Dir != Ingress && k.Dir != Egress {
		return bpfobj.SlSlCidrPolicyKey{}, fmt.Errorf("cidr policy key %+v: dir must be 1 (ingress) or 2 (egress)", k)
	}
	if !k.Prefix.IsValid() || !k.Prefix.Addr().Unmap().Is4() {
		return bpfobj.SlSlCidrPolicyKey{}, fmt.Errorf("cidr policy key %+v: want an IPv4 prefix like 192.168.0.0/16", k)
	}
	if k.Proto == ProtoAny && k.Port != 0 {
		return bpfobj.SlSlCidrPolicyKey{}, fmt.Errorf("cidr policy key %+v: a port needs a protocol", k)
	}
	p := netip.PrefixFrom(k.Prefix.Addr().Unmap(), k.Prefix.Bits()).Masked()
	ip, _ := IPToU32(p.Addr())
	return bpfobj.SlSlCidrPolicyKey{
		Prefixlen: cidrFixedBits + uint32(p.Bits()),
		EpId:      k.EpID, Dir: uint8(k.Dir), Proto: uint8(k.Proto), Port: Htons(k.Port), Ip: ip,
	}, nil
}

// UpsertCIDRPolicies writes many sl_cidr_policy entries.
func (m *Maps) UpsertCIDRPolicies(entries []CIDRPolicyEntry) error {
	keys, vals, err := rawPolicyEntries(entries, func(e CIDRPolicyEntry) (CIDRPolicyKey, PolicyValue) { return e.Key, e.Value })
	if err != nil {
		return err
	}
	return batchPut(m.CIDRPolicy, NameCIDRPolicy, keys, vals)
}

// DeleteCIDRPolicies removes many sl_cidr_policy entries (missing ones are not an error).
func (m *Maps) DeleteCIDRPolicies(keys []CIDRPolicyKey) error {
	raw, err := rawKeys(keys)
	if err != nil {
		return err
	}
	return batchDel(m.CIDRPolicy, NameCIDRPolicy, raw)
}

// ListCIDRPolicies returns every sl_cidr_policy entry.
func (m *Maps) ListCIDRPolicies() ([]CIDRPolicyEntry, error) {
	var out []CIDRPolicyEntry
	var k bpfobj.SlSlCidrPolicyKey
	var v bpfobj.SlSlPolicyVal
	it := m.CIDRPolicy.Iterate()
	for it.Next(&k, &v) {
		bitsLen := 0
		if k.Prefixlen > cidrFixedBits {
			bitsLen = int(k.Prefixlen - cidrFixedBits)
		}
		out = append(out, CIDRPolicyEntry{
			Key: CIDRPolicyKey{EpID: k.EpId, Dir: Direction(k.Dir), Proto: Proto(k.Proto), Port: Ntohs(k.Port),
				Prefix: netip.PrefixFrom(U32ToIP(k.Ip), bitsLen)},
			Value: policyValueFromRaw(&v),
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", NameCIDRPolicy, err)
	}
	return out, nil
}

// rawKey is a typed map key that validates itself and converts to its bpf2go layout R.
type rawKey[R any] interface {
	raw() (R, error)
}

// rawKeys converts keys to their bpf2go layout, stopping at the first invalid one.
func rawKeys[K rawKey[R], R any](keys []K) ([]R, error) {
	out := make([]R, 0, len(keys))
	for _, k := range keys {
		r, err := k.raw()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// rawPolicyEntries converts policy entries (split into key and value by parts) to their bpf2go
// layout, stopping at the first invalid key.
func rawPolicyEntries[E any, K rawKey[R], R any](entries []E, parts func(E) (K, PolicyValue)) ([]R, []bpfobj.SlSlPolicyVal, error) {
	keys := make([]R, 0, len(entries))
	vals := make([]bpfobj.SlSlPolicyVal, 0, len(entries))
	for _, e := range entries {
		k, v := parts(e)
		r, err := k.raw()
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, r)
		vals = append(vals, v.raw())
	}
	return keys, vals, nil
}
