package policy

import (
	"net/netip"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// Decide evaluates the compiled entries for one packet the way the BPF
// programs do: an unknown endpoint or one with EndpointPolicyError is denied;
// a direction that is not enforced is allowed; otherwise the peer's identity
// comes from the ipcache (longest prefix, IdentityWorld on a miss), sl_policy
// is looked up as (peer,proto), (peer,0), (0,proto), (0,0) with the longest
// port prefix winning inside each lookup, then sl_cidr_policy as
// (proto,port), (proto,0), (0,0) with the longest IP prefix winning; the
// first allow decides. policyID is the allowing policy, 0 when denied or not
// enforced.
//
// An except entry never allows; whether a lookup stops at it or falls
// through to the next, wider lookup (bpf/lib/sl_policy.h falls through) gives
// the same verdict, because every level holds the complete answer for its
// traffic (see compileCIDR). Decide models the fall-through.
//
// The datapath's own exemption (traffic from and to the local host identity,
// the node's own addresses, is always allowed: kubelet probes) is not part of
// the compiled entries and is not applied here.
func (r *Result) Decide(ep uint32, dir maps.Direction, peerIP netip.Addr, proto maps.Proto, port uint16) (allowed bool, policyID uint32) {
	v := r.DecideVerdict(ep, dir, peerIP, proto, port)
	if !v.Allowed {
		return false, 0
	}
	return true, v.PolicyID
}

// Verdict is what the datapath decides for one new flow: allowed or not, and the rule that
// decided (PolicyID 0: no rule, a default allow or NetworkPolicy's default deny), plus the Admin
// Pass rule the decision went through (PassPolicyID 0: none). Tier is the deciding tier
// (TierNone for a direction nothing enforces, or an endpoint that fails closed).
type Verdict struct {
	Allowed      bool
	Tier         Tier
	PolicyID     uint32
	Rule         uint16
	PassPolicyID uint32
	PassRule     uint16
}

// DecideVerdict is Decide with the deciding rule and tier. Endpoints with a tier flag for the
// direction are evaluated as bpf/lib/sl_policy.h's sl_tier_check does: every lookup, the lowest
// precedence per tier, any NetworkPolicy allow; then Admin Accept/Deny, else NetworkPolicy when
// enforced, else Baseline Accept/Deny, else allow.
func (r *Result) DecideVerdict(ep uint32, dir maps.Direction, peerIP netip.Addr, proto maps.Proto, port uint16) Verdict {
	e := r.Endpoints[ep]
	if e == nil || e.Flags&EndpointPolicyError != 0 {
		return Verdict{}
	}
	enforced, tiers := EndpointIngressEnforced, EndpointIngressTiers
	if dir == DirEgress {
		enforced, tiers = EndpointEgressEnforced, EndpointEgressTiers
	}
	if e.Flags&(enforced|tiers) == 0 {
		return Verdict{Allowed: true}
	}
	peer := r.lookupIdentity(peerIP)
	slots := [...]struct {
		peer  uint32
		proto maps.Proto
	}{{peer, proto}, {peer, ProtoAny}, {IdentityAny, proto}, {IdentityAny, ProtoAny}}
	levels := [...]struct {
		proto maps.Proto
		port  uint16
	}{{proto, port}, {proto, 0}, {ProtoAny, 0}}
	if e.Flags&tiers == 0 {
		for _, l := range slots {
			if v, ok := e.lookupPolicy(dir, l.peer, l.proto, port); ok {
				if v.Action != ActionAllow {
					break
				}
				return Verdict{Allowed: true, Tier: TierNetworkPolicy, PolicyID: v.PolicyID, Rule: v.Rule}
			}
		}
		for _, l := range levels {
			if v, ok := e.lookupCIDR(dir, l.proto, l.port, peerIP); ok && v.Action == ActionAllow {
				return Verdict{Allowed: true, Tier: TierNetworkPolicy, PolicyID: v.PolicyID, Rule: v.Rule}
			}
		}
		return Verdict{Tier: TierNetworkPolicy}
	}

	var admin, baseline maps.TierHit
	var np *maps.PolicyValue
	fold := func(v maps.PolicyValue) {
		mergeHit(&admin, v.Admin)
		mergeHit(&baseline, v.Baseline)
		if v.Action == ActionAllow && np == nil {
			np = &v
		}
	}
	for _, l := range slots {
		if v, ok := e.lookupPolicy(dir, l.peer, l.proto, port); ok {
			fold(v)
		}
	}
	for _, l := range levels {
		if v, ok := e.lookupCIDR(dir, l.proto, l.port, peerIP); ok {
			fold(v)
		}
	}
	var out Verdict
	if admin.Prec != 0 {
		if admin.Action != CNPPass {
			return Verdict{Allowed: admin.Action == CNPAccept, Tier: TierAdmin, PolicyID: admin.PolicyID, Rule: admin.Rule}
		}
		out.PassPolicyID, out.PassRule = admin.PolicyID, admin.Rule
	}
	switch {
	case e.Flags&enforced != 0:
		out.Tier = TierNetworkPolicy
		if np != nil {
			out.Allowed, out.PolicyID, out.Rule = true, np.PolicyID, np.Rule
		}
	case baseline.Prec != 0 && baseline.Action != CNPPass:
		out.Tier, out.Allowed, out.PolicyID, out.Rule = TierBaseline, baseline.Action == CNPAccept, baseline.PolicyID, baseline.Rule
	default:
		out.Allowed = true
	}
	return out
}

// lookupIdentity is the sl_ipcache LPM lookup.
func (r *Result) lookupIdentity(ip netip.Addr) uint32 {
	best, id := -1, IdentityWorld
	for _, c := range r.IPCache {
		if c.Prefix.Bits() > best && c.Prefix.Contains(ip) {
			best, id = c.Prefix.Bits(), c.Identity
		}
	}
	return id
}

// lookupPolicy is one sl_policy LPM lookup: fixed ep/peer/dir/proto, longest
// port prefix containing port.
func (e *Endpoint) lookupPolicy(dir maps.Direction, peer uint32, proto maps.Proto, port uint16) (maps.PolicyValue, bool) {
	best := -1
	var val maps.PolicyValue
	for _, p := range e.Policy {
		k := p.Key
		if k.Dir != dir || k.PeerID != peer || k.Proto != proto || int(k.PortPrefixLen) <= best {
			continue
		}
		mask := uint16(0xffff) << (16 - uint(k.PortPrefixLen))
		if k.PortPrefixLen == 0 {
			mask = 0
		}
		if port&mask == k.Port&mask {
			best, val = int(k.PortPrefixLen), p.Value
		}
	}
	return val, best >= 0
}

// lookupCIDR is one sl_cidr_policy LPM lookup: fixed ep/dir/proto/port,
// longest IP prefix containing ip.
func (e *Endpoint) lookupCIDR(dir maps.Direction, proto maps.Proto, port uint16, ip netip.Addr) (maps.PolicyValue, bool) {
	best := -1
	var val maps.PolicyValue
	for _, c := range e.CIDR {
		k := c.Key
		if k.Dir != dir || k.Proto != proto || k.Port != port || k.Prefix.Bits() <= best {
			continue
		}
		if k.Prefix.Contains(ip) {
			best, val = k.Prefix.Bits(), c.Value
		}
	}
	return val, best >= 0
}
