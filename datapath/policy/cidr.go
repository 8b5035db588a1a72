package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// cidrRule is one ipBlock peer of one rule, for one protocol/port (Port 0 =
// any port; Proto 0 = any protocol).
type cidrRule struct {
	Proto  maps.Proto
	Port   uint16
	CIDR   netip.Prefix
	Except []netip.Prefix
	Value  maps.PolicyValue // Action is ActionAllow
}

type cidrLevel struct {
	Proto maps.Proto
	Port  uint16
}

// compileCIDR turns the ipBlock rules of one endpoint and direction into
// sl_cidr_policy entries.
//
// The BPF looks up (proto,port), then (proto,0), then (0,0) and the first
// hit decides. Each level therefore holds the complete answer for the
// traffic it covers: the entries at (proto,port) represent exactly the union
// of every rule that applies to that protocol and port (including any-port
// and any-protocol rules). Within one level, the entries are the prefixes of
// all applicable CIDRs and excepts; each prefix gets the verdict of the
// addresses whose longest matching prefix it is (allow when any rule allows
// them, except otherwise), and prefixes that would repeat the verdict of
// their nearest emitted ancestor are left out. A miss at a level falls
// through to a coarser level whose allowed set is a subset, so whether the
// datapath stops at an except entry or falls through, the verdict is the
// same.
func compileCIDR(epID uint32, dir maps.Direction, rules []cidrRule) []maps.CIDRPolicyEntry {
	if len(rules) == 0 {
		return nil
	}
	levels := map[cidrLevel]bool{}
	for _, r := range rules {
		levels[cidrLevel{r.Proto, r.Port}] = true
	}
	var out []maps.CIDRPolicyEntry
	var applicable []cidrRule
	for lv := range levels {
		applicable = applicable[:0]
		for _, r := range rules {
			if r.Proto == ProtoAny || (r.Proto == lv.Proto && (r.Port == 0 || r.Port == lv.Port)) {
				applicable = append(applicable, r)
			}
		}
		for _, e := range levelEntries(applicable) {
			out = append(out, maps.CIDRPolicyEntry{
				Key:   maps.CIDRPolicyKey{EpID: epID, Dir: dir, Proto: lv.Proto, Port: lv.Port, Prefix: e.prefix},
				Value: e.value,
			})
		}
	}
	slices.SortFunc(out, func(a, b maps.CIDRPolicyEntry) int { return compareCIDRKey(a.Key, b.Key) })
	return out
}

type prefixVerdict struct {
	prefix netip.Prefix
	value  maps.PolicyValue
}

type trieNode struct {
	prefix  netip.Prefix
	cidrOf  []int       // indices of rules whose CIDR is this prefix
	except  []int       // indices of rules with this prefix in their except list
	verdict maps.Action // effective action for addresses under this node (0 = none)
}

func betterValue(a, b maps.PolicyValue) bool {
	if a.PolicyID != b.PolicyID {
		return a.PolicyID < b.PolicyID
	}
	return a.Rule < b.Rule
}

// levelEntries computes the LPM entries representing the union of rules
// (each CIDR minus its excepts).
func levelEntries(rules []cidrRule) []prefixVerdict {
	byPrefix := map[netip.Prefix]*trieNode{}
	node := func(p netip.Prefix) *trieNode {
		n := byPrefix[p]
		if n == nil {
			n = &trieNode{prefix: p}
			byPrefix[p] = n
		}
		return n
	}
	for i, r := range rules {
		n := node(r.CIDR)
		n.cidrOf = append(n.cidrOf, i)
		for _, e := range r.Except {
			n := node(e)
			n.except = append(n.except, i)
		}
	}
	nodes := make([]*trieNode, 0, len(byPrefix))
	for _, n := range byPrefix {
		nodes = append(nodes, n)
	}
	// Address order, shorter prefix first: a pre-order walk of the trie.
	slices.SortFunc(nodes, func(a, b *trieNode) int {
		if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.prefix.Bits(), b.prefix.Bits())
	})
	var out []prefixVerdict
	var stack []*trieNode
	inCIDR := make([]bool, len(rules))
	excepted := make([]bool, len(rules))
	for _, n := range nodes {
		for len(stack) > 0 && !containsPrefix(stack[len(stack)-1].prefix, n.prefix) {
			stack = stack[:len(stack)-1]
		}
		parentVerdict := maps.Action(0)
		if len(stack) > 0 {
			parentVerdict = stack[len(stack)-1].verdict
		}
		stack = append(stack, n)
		// Addresses whose longest matching prefix is n: inside every prefix
		// on the stack, outside every other one.
		clear(inCIDR)
		clear(excepted)
		for _, s := range stack {
			for _, i := range s.cidrOf {
				inCIDR[i] = true
			}
			for _, i := range s.except {
				excepted[i] = true
			}
		}
		var allow, deny maps.PolicyValue
		haveAllow, haveDeny := false, false
		for i, r := range rules {
			if !inCIDR[i] {
				continue
			}
			if excepted[i] {
				if !haveDeny || betterValue(r.Value, deny) {
					deny, haveDeny = r.Value, true
				}
				continue
			}
			if !haveAllow || betterValue(r.Value, allow) {
				allow, haveAllow = r.Value, true
			}
		}
		v := prefixVerdict{prefix: n.prefix}
		switch {
		case haveAllow:
			v.value = maps.PolicyValue{Action: ActionAllow, Rule: allow.Rule, PolicyID: allow.PolicyID}
		case haveDeny:
			v.value = maps.PolicyValue{Action: ActionExcept, Rule: deny.Rule, PolicyID: deny.PolicyID}
		default:
			v.value = maps.PolicyValue{Action: ActionExcept}
		}
		n.verdict = v.value.Action
		if parentVerdict == 0 && v.value.Action == ActionExcept {
			// Nothing above allows these addresses: a miss says the same.
			n.verdict = 0
			continue
		}
		if v.value.Action == parentVerdict {
			continue
		}
		out = append(out, v)
	}
	return out
}

// containsPrefix reports whether outer contains inner.
func containsPrefix(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func compareCIDRKey(a, b maps.CIDRPolicyKey) int {
	return cmp.Or(
		cmp.Compare(a.EpID, b.EpID),
		cmp.Compare(a.Dir, b.Dir),
		cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Port, b.Port),
		a.Prefix.Addr().Compare(b.Prefix.Addr()),
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
	)
}

func comparePolicyKey(a, b maps.PolicyKey) int {
	return cmp.Or(
		cmp.Compare(a.EpID, b.EpID),
		cmp.Compare(a.Dir, b.Dir),
		cmp.Compare(a.PeerID, b.PeerID),
		cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.PortPrefixLen, b.PortPrefixLen),
	)
}
