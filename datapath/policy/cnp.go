package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// ClusterNetworkPolicy (sigs.k8s.io/network-policy-api v1beta1) compiles into the tier hits of the
// same sl_policy / sl_cidr_policy entries NetworkPolicy uses (maps.PolicyValue.Admin, .Baseline):
//
//	policy objects -> compiledCNP (subject, rules with peers resolved) -> per local endpoint and
//	direction: tier atoms (key + TierHit) -> folded into the endpoint's entries (foldTiers).
//
// Precedence: each tier ranks its policies by (priority, name); a rule's Prec is
// 1 + rank<<16 + rule index, so lower wins and equal priorities are ordered by name (Overlaps
// reports them). Fail closed as the API defines: an Accept rule that cannot be represented
// matches nothing; a Deny or Pass rule that cannot be represented becomes a Deny of all traffic
// at its precedence.

// cnpMaxPriority is the API's maximum priority (validation: 0..1000).
const cnpMaxPriority = 1000

// cnpRule is one ingress or egress rule of a ClusterNetworkPolicy, peers resolved.
type cnpRule struct {
	index   uint16
	action  maps.CNPAction
	denyAll bool           // unrepresentable Deny/Pass: deny everything at this precedence
	peers   []uint32       // pod identities (namespaces, pods peers)
	cidrs   []netip.Prefix // networks and node addresses
	ports   []portSpec     // numeric ports, all ports of a protocol, or all protocols
	named   []string       // destinationNamedPort names (ingress: resolved on the endpoint)
	egress  compiledRule   // egress named ports resolved on the peers (egressNamed, egressNamedIPs)
}

// compiledCNP is one ClusterNetworkPolicy after parsing.
type compiledCNP struct {
	ref      PolicyRef
	priority int32
	subject  func(*identityInfo) bool
	rules    [3][]cnpRule
	prec     uint32 // 1 + rank<<16; a rule's precedence adds its index
}

// compileClusterPolicies parses every ClusterNetworkPolicy, ranks each tier and reports problems
// and overlaps into res.
func compileClusterPolicies(in Input, polNums map[string]uint32, idents []*identityInfo, res *Result) []*compiledCNP {
	var out []*compiledCNP
	for _, p := range in.ClusterPolicies {
		ref := PolicyRef{ID: polNums[clusterPolicyKey(p.Name)], Name: p.Name, Kind: KindClusterNetworkPolicy}
		cp := compileCNP(p, ref, idents, in.Nodes, res)
		res.Policies[ref.ID] = cp.ref
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b *compiledCNP) int {
		return cmp.Or(cmp.Compare(a.ref.Tier, b.ref.Tier), cmp.Compare(a.priority, b.priority), cmp.Compare(a.ref.Name, b.ref.Name))
	})
	rank := map[Tier]uint32{}
	for _, cp := range out {
		cp.prec = 1 + rank[cp.ref.Tier]<<16
		rank[cp.ref.Tier]++
	}
	// Same tier and priority, a common pod: ambiguous (reported, ordered by name).
	for i, a := range out {
		for _, b := range out[i+1:] {
			if a.ref.Tier != b.ref.Tier || a.priority != b.priority {
				break
			}
			for _, id := range idents {
				if a.subject(id) && b.subject(id) && len(id.pods) > 0 {
					res.Overlaps = append(res.Overlaps, Overlap{Tier: a.ref.Tier, Priority: a.priority, A: a.ref, B: b.ref, Pod: id.pods[0].Ref()})
					break
				}
			}
		}
	}
	return out
}

func clusterPolicyKey(name string) string { return "cnp:" + name }

// compileCNP parses one ClusterNetworkPolicy. A policy whose priority or tier is out of range
// keeps its rules' fail-closed form only (Accept rules dropped, Deny/Pass rules deny all).
func compileCNP(p *cnpv1beta1.ClusterNetworkPolicy, ref PolicyRef, idents []*identityInfo, nodes []Node, res *Result) *compiledCNP {
	problem := func(reason, format string, args ...any) {
		r := ref
		res.Problems = append(res.Problems, Problem{Policy: &r, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	cp := &compiledCNP{priority: p.Spec.Priority}
	broken := false
	switch p.Spec.Tier {
	case cnpv1beta1.AdminTier:
		ref.Tier = TierAdmin
	case cnpv1beta1.BaselineTier:
		ref.Tier = TierBaseline
	default:
		ref.Tier = TierAdmin
		broken = true
		problem(ProblemReasonTier, "spec.tier %q is neither Admin nor Baseline: evaluated in the Admin tier, its Accept rules match nothing and its Deny/Pass rules deny all (fix the tier)", p.Spec.Tier)
	}
	if p.Spec.Priority < 0 || p.Spec.Priority > cnpMaxPriority {
		cp.priority = min(max(p.Spec.Priority, 0), cnpMaxPriority)
		broken = true
		problem(ProblemReasonPriority, "spec.priority %d is outside 0..%d: ordered as %d, its Accept rules match nothing and its Deny/Pass rules deny all (fix the priority)", p.Spec.Priority, cnpMaxPriority, cp.priority)
	}
	cp.ref = ref
	subject, err := cnpSubject(p.Spec.Subject)
	if err != nil {
		broken = true
		subject = func(*identityInfo) bool { return true }
		problem(ProblemReasonSelector, "spec.subject: %v: applied to every pod, its Accept rules match nothing and its Deny/Pass rules deny all (fix the subject)", err)
	}
	cp.subject = subject

	names := [3][]string{}
	for i, r := range p.Spec.Ingress {
		names[DirIngress] = append(names[DirIngress], r.Name)
		peers := make([]cnpv1beta1.ClusterNetworkPolicyEgressPeer, len(r.From))
		for j, f := range r.From {
			peers[j] = cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
		}
		cp.addRule(DirIngress, i, r.Action, peers, r.Protocols, broken, idents, nodes, problem)
	}
	for i, r := range p.Spec.Egress {
		names[DirEgress] = append(names[DirEgress], r.Name)
		cp.addRule(DirEgress, i, r.Action, r.To, r.Protocols, broken, idents, nodes, problem)
	}
	if res.ClusterRules == nil {
		res.ClusterRules = map[uint32][3][]string{}
	}
	res.ClusterRules[ref.ID] = names
	return cp
}

// addRule compiles one rule, or its fail-closed form.
func (cp *compiledCNP) addRule(dir maps.Direction, index int, action cnpv1beta1.ClusterNetworkPolicyRuleAction,
	peers []cnpv1beta1.ClusterNetworkPolicyEgressPeer, protocols []cnpv1beta1.ClusterNetworkPolicyProtocol,
	broken bool, idents []*identityInfo, nodes []Node, problem func(reason, format string, args ...any)) {
	where := fmt.Sprintf("spec.%s[%d]", map[maps.Direction]string{DirIngress: "ingress", DirEgress: "egress"}[dir], index)
	if index > 0xffff {
		problem(ProblemReasonUnrepresentable, "%s: more rules than the 16-bit rule field holds: the rule denies all", where)
		cp.rules[dir] = append(cp.rules[dir], cnpRule{index: 0xffff, action: CNPDeny, denyAll: true})
		return
	}
	r := cnpRule{index: uint16(index)}
	switch action {
	case cnpv1beta1.ClusterNetworkPolicyRuleActionAccept:
		r.action = CNPAccept
	case cnpv1beta1.ClusterNetworkPolicyRuleActionDeny:
		r.action = CNPDeny
	case cnpv1beta1.ClusterNetworkPolicyRuleActionPass:
		r.action = CNPPass
	default:
		problem(ProblemReasonAction, "%s: unknown action %q (want Accept, Deny or Pass): the rule denies all", where, action)
		cp.rules[dir] = append(cp.rules[dir], cnpRule{index: r.index, action: CNPDeny, denyAll: true})
		return
	}
	failClosed := func(reason, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if r.action == CNPAccept {
			problem(reason, "%s: %s: the Accept rule matches nothing", where, msg)
			return
		}
		problem(reason, "%s: %s: the %s rule denies all", where, msg, r.action)
		cp.rules[dir] = append(cp.rules[dir], cnpRule{index: r.index, action: CNPDeny, denyAll: true})
	}
	if broken {
		if r.action != CNPAccept {
			cp.rules[dir] = append(cp.rules[dir], cnpRule{index: r.index, action: CNPDeny, denyAll: true})
		}
		return
	}
	if err := r.resolvePeers(peers, idents, nodes); err != nil {
		reason := ProblemReasonUnrepresentable
		if isCIDRError(err) {
			reason = ProblemReasonCIDR
		}
		failClosed(reason, "%v", err)
		return
	}
	if err := r.parseProtocols(protocols); err != nil {
		failClosed(ProblemReasonUnrepresentable, "%v", err)
		return
	}
	if len(r.named) > 0 && len(r.cidrs) > 0 {
		failClosed(ProblemReasonUnrepresentable, "destinationNamedPort with a networks or nodes peer (those have no named ports)")
		return
	}
	if len(r.cidrs) > 0 {
		for _, s := range r.ports {
			if !s.allPorts() && int(s.Hi)-int(s.Lo)+1 > maxCIDRPortRange {
				failClosed(ProblemReasonUnrepresentable, "port range %d-%d toward networks/nodes spans more than %d ports (the CIDR map holds exact ports)", s.Lo, s.Hi, maxCIDRPortRange)
				return
			}
		}
	}
	if len(r.named) > 0 {
		if !r.namedResolvable(dir, idents) {
			problem(ProblemReasonNamedPort, "%s: no selected pod declares a container port named %v: the rule matches nothing until one does", where, r.named)
		}
		if dir == DirEgress {
			r.egress = compiledRule{peers: r.peers}
			for _, n := range r.named {
				for _, proto := range []maps.Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
					r.egress.named = append(r.egress.named, portSpec{Proto: proto, Named: n})
				}
			}
			r.egress.resolveEgressNamed(idents)
		}
	}
	cp.rules[dir] = append(cp.rules[dir], r)
}

type cidrError struct{ error }

func isCIDRError(err error) bool {
	_, ok := err.(cidrError)
	return ok
}

// cnpSubject returns whom a subject selects (pod identities; host-network pods have none).
func cnpSubject(s cnpv1beta1.ClusterNetworkPolicySubject) (func(*identityInfo) bool, error) {
	switch {
	case s.Namespaces != nil && s.Pods != nil:
		return nil, fmt.Errorf("both namespaces and pods are set (set exactly one)")
	case s.Namespaces != nil:
		ns, err := metav1.LabelSelectorAsSelector(s.Namespaces)
		if err != nil {
			return nil, fmt.Errorf("namespaces: %w", err)
		}
		return func(id *identityInfo) bool { return ns.Matches(id.nsLabels) }, nil
	case s.Pods != nil:
		return namespacedPod(s.Pods)
	}
	return nil, fmt.Errorf("neither namespaces nor pods is set (a newer API version? set exactly one)")
}

func namespacedPod(p *cnpv1beta1.NamespacedPod) (func(*identityInfo) bool, error) {
	ns, err := metav1.LabelSelectorAsSelector(&p.NamespaceSelector)
	if err != nil {
		return nil, fmt.Errorf("pods.namespaceSelector: %w", err)
	}
	pods, err := metav1.LabelSelectorAsSelector(&p.PodSelector)
	if err != nil {
		return nil, fmt.Errorf("pods.podSelector: %w", err)
	}
	return func(id *identityInfo) bool { return ns.Matches(id.nsLabels) && pods.Matches(id.podLabels) }, nil
}

// resolvePeers resolves every peer: identities for namespaces/pods, prefixes for networks
// (IPv6 ones never match the IPv4 datapath and are left out) and the addresses of the nodes a
// nodes peer selects.
func (r *cnpRule) resolvePeers(peers []cnpv1beta1.ClusterNetworkPolicyEgressPeer, idents []*identityInfo, nodes []Node) error {
	if len(peers) == 0 {
		return fmt.Errorf("no peers (the API requires at least one)")
	}
	set := map[uint32]bool{}
	for j, p := range peers {
		n := 0
		for _, set := range []bool{p.Namespaces != nil, p.Pods != nil, p.Nodes != nil, p.Networks != nil, p.DomainNames != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("peer %d sets %d fields (exactly one of namespaces, pods, nodes, networks, domainNames)", j, n)
		}
		var match func(*identityInfo) bool
		switch {
		case p.Namespaces != nil:
			sel, err := metav1.LabelSelectorAsSelector(p.Namespaces)
			if err != nil {
				return fmt.Errorf("peer %d namespaces: %w", j, err)
			}
			match = func(id *identityInfo) bool { return sel.Matches(id.nsLabels) }
		case p.Pods != nil:
			m, err := namespacedPod(p.Pods)
			if err != nil {
				return fmt.Errorf("peer %d: %w", j, err)
			}
			match = m
		case p.Nodes != nil:
			sel, err := metav1.LabelSelectorAsSelector(p.Nodes)
			if err != nil {
				return fmt.Errorf("peer %d nodes: %w", j, err)
			}
			for _, nd := range nodes {
				if sel.Matches(labels.Set(nd.Labels)) {
					for _, ip := range nd.IPs {
						if ip.Is4() {
							r.cidrs = append(r.cidrs, netip.PrefixFrom(ip, 32))
						}
					}
				}
			}
		case p.Networks != nil:
			for _, c := range p.Networks {
				pfx, err := netip.ParsePrefix(string(c))
				if err != nil {
					return cidrError{fmt.Errorf("peer %d networks %q: %w (want a CIDR like 10.0.0.0/8)", j, c, err)}
				}
				if pfx.Addr().Is4() {
					r.cidrs = append(r.cidrs, pfx.Masked())
				}
			}
		default:
			return fmt.Errorf("peer %d: domainNames are not supported by this datapath", j)
		}
		if match != nil {
			for _, id := range idents {
				if match(id) {
					set[id.id] = true
				}
			}
		}
	}
	r.peers = slices.Sorted(func(yield func(uint32) bool) {
		for id := range set {
			if !yield(id) {
				return
			}
		}
	})
	slices.SortFunc(r.cidrs, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	r.cidrs = slices.Compact(r.cidrs)
	return nil
}

// parseProtocols turns protocols into port specs; none means all traffic.
func (r *cnpRule) parseProtocols(ps []cnpv1beta1.ClusterNetworkPolicyProtocol) error {
	if len(ps) == 0 {
		r.ports = []portSpec{{Proto: ProtoAny}}
		return nil
	}
	for i, p := range ps {
		n := 0
		var proto maps.Proto
		var port *cnpv1beta1.Port
		if p.TCP != nil {
			n, proto, port = n+1, ProtoTCP, p.TCP.DestinationPort
		}
		if p.UDP != nil {
			n, proto, port = n+1, ProtoUDP, p.UDP.DestinationPort
		}
		if p.SCTP != nil {
			n, proto, port = n+1, ProtoSCTP, p.SCTP.DestinationPort
		}
		if p.DestinationNamedPort != "" {
			n++
		}
		if n != 1 {
			return fmt.Errorf("protocols[%d] sets %d fields (exactly one of tcp, udp, sctp, destinationNamedPort)", i, n)
		}
		if p.DestinationNamedPort != "" {
			r.named = append(r.named, p.DestinationNamedPort)
			continue
		}
		s := portSpec{Proto: proto}
		switch {
		case port == nil:
		case port.Range != nil && port.Number != 0:
			return fmt.Errorf("protocols[%d]: both number and range set", i)
		case port.Range != nil:
			lo, hi := port.Range.Start, port.Range.End
			if lo < 1 || hi > 65535 || lo > hi {
				return fmt.Errorf("protocols[%d]: range %d-%d (want 1 <= start <= end <= 65535)", i, lo, hi)
			}
			s.Lo, s.Hi = uint16(lo), uint16(hi)
		default:
			if port.Number < 1 || port.Number > 65535 {
				return fmt.Errorf("protocols[%d]: port %d out of range 1..65535", i, port.Number)
			}
			s.Lo, s.Hi = uint16(port.Number), uint16(port.Number)
		}
		r.ports = append(r.ports, s)
	}
	return nil
}

// namedResolvable reports whether any destination pod declares one of the rule's named ports:
// ingress, any pod (the subject's pods are the destinations); egress, a peer pod.
func (r *cnpRule) namedResolvable(dir maps.Direction, idents []*identityInfo) bool {
	peers := map[uint32]bool{}
	for _, id := range r.peers {
		peers[id] = true
	}
	for _, id := range idents {
		if dir == DirEgress && !peers[id.id] {
			continue
		}
		for _, p := range id.pods {
			for _, cp := range p.Ports {
				if slices.Contains(r.named, cp.Name) {
					return true
				}
			}
		}
	}
	return false
}

// tierAtoms holds one endpoint's ClusterNetworkPolicy rules as keys with tier hits, before
// folding: sl_policy keys and sl_cidr_policy keys.
type tierAtoms struct {
	policy []policyAtom
	cidr   []cidrAtom
}

type policyAtom struct {
	key  maps.PolicyKey
	hit  maps.TierHit
	tier Tier
}

type cidrAtom struct {
	key  maps.CIDRPolicyKey
	hit  maps.TierHit
	tier Tier
}

// endpointTierAtoms builds the atoms of every ClusterNetworkPolicy selecting the endpoint's pod.
func endpointTierAtoms(ep *Endpoint, p *Pod, id *identityInfo, cnps []*compiledCNP) tierAtoms {
	var out tierAtoms
	if id == nil {
		return out
	}
	for _, cp := range cnps {
		if !cp.subject(id) {
			continue
		}
		for _, dir := range []maps.Direction{DirIngress, DirEgress} {
			for _, r := range cp.rules[dir] {
				hit := maps.TierHit{Prec: cp.prec + uint32(r.index), PolicyID: cp.ref.ID, Rule: r.index, Action: r.action}
				addP := func(k maps.PolicyKey) {
					out.policy = append(out.policy, policyAtom{key: k, hit: hit, tier: cp.ref.Tier})
				}
				addC := func(proto maps.Proto, port uint16, pfx netip.Prefix) {
					out.cidr = append(out.cidr, cidrAtom{key: maps.CIDRPolicyKey{EpID: ep.EpID, Dir: dir, Proto: proto, Port: port, Prefix: pfx}, hit: hit, tier: cp.ref.Tier})
				}
				if r.denyAll {
					addP(maps.PolicyKey{EpID: ep.EpID, PeerID: IdentityAny, Dir: dir})
					continue
				}
				specs := slices.Clone(r.ports)
				if dir == DirIngress {
					for _, n := range r.named {
						for _, proto := range []maps.Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
							for _, num := range resolveNamed(p, n, proto) {
								specs = append(specs, portSpec{Proto: proto, Lo: num, Hi: num})
							}
						}
					}
				}
				for _, s := range specs {
					for _, peer := range r.peers {
						for _, k := range policyKeys(ep.EpID, peer, dir, s) {
							addP(k)
						}
					}
					for _, pfx := range r.cidrs {
						if s.Proto == ProtoAny || s.allPorts() {
							addC(s.Proto, 0, pfx)
							continue
						}
						for port := uint32(s.Lo); port <= uint32(s.Hi); port++ {
							addC(s.Proto, uint16(port), pfx)
						}
					}
				}
				for _, ip := range r.egress.egressNamed {
					addP(maps.PolicyKey{EpID: ep.EpID, PeerID: ip.peer, Dir: dir, Proto: ip.proto, Port: ip.port, PortPrefixLen: 16})
				}
				for _, ip := range r.egress.egressNamedIPs {
					addC(ip.proto, ip.port, netip.PrefixFrom(ip.ip, 32))
				}
			}
		}
	}
	return out
}

// foldTiers adds the tier atoms to an endpoint's entries so that one LPM hit per lookup is
// complete: every key (NetworkPolicy or tier) gets, per tier, the best hit of all atoms whose
// prefix covers it, and keys that only tiers need get the NetworkPolicy answer of their longest
// covering NetworkPolicy entry (what the LPM returned for them before). Sets the tier flags.
func foldTiers(ep *Endpoint, atoms tierAtoms) {
	for _, a := range atoms.policy {
		ep.Flags |= tierFlag(a.key.Dir)
	}
	for _, a := range atoms.cidr {
		ep.Flags |= tierFlag(a.key.Dir)
	}
	if len(atoms.policy) > 0 {
		ep.Policy = foldPolicy(ep.Policy, atoms.policy)
	}
	if len(atoms.cidr) > 0 {
		ep.CIDR = foldCIDR(ep.CIDR, atoms.cidr)
	}
}

func tierFlag(dir maps.Direction) maps.EndpointFlags {
	if dir == DirEgress {
		return EndpointEgressTiers
	}
	return EndpointIngressTiers
}

// mergeHit keeps the better (lower precedence) hit in *dst.
func mergeHit(dst *maps.TierHit, h maps.TierHit) {
	if h.Prec != 0 && (dst.Prec == 0 || h.Prec < dst.Prec) {
		*dst = h
	}
}

func mergeTier(v *maps.PolicyValue, tier Tier, h maps.TierHit) {
	if tier == TierBaseline {
		mergeHit(&v.Baseline, h)
	} else {
		mergeHit(&v.Admin, h)
	}
}

// portCovers reports whether sl_policy key a's port prefix covers b's (same slot).
func portCovers(a, b maps.PolicyKey) bool {
	return a.EpID == b.EpID && a.PeerID == b.PeerID && a.Dir == b.Dir && a.Proto == b.Proto &&
		a.PortPrefixLen <= b.PortPrefixLen && portMaskOf(b.Port, a.PortPrefixLen) == portMaskOf(a.Port, a.PortPrefixLen)
}

func portMaskOf(port uint16, plen uint8) uint16 {
	if plen == 0 {
		return 0
	}
	return port & (^uint16(0) << (16 - plen))
}

func normPolicyKey(k maps.PolicyKey) maps.PolicyKey {
	k.Port = portMaskOf(k.Port, k.PortPrefixLen)
	return k
}

func foldPolicy(np []maps.PolicyEntry, atoms []policyAtom) []maps.PolicyEntry {
	vals := map[maps.PolicyKey]maps.PolicyValue{}
	for _, e := range np {
		vals[normPolicyKey(e.Key)] = e.Value
	}
	for _, a := range atoms {
		k := normPolicyKey(a.key)
		if _, ok := vals[k]; ok {
			continue
		}
		// The NetworkPolicy answer the LPM gave for this key: its longest covering entry.
		best, v := -1, maps.PolicyValue{}
		for _, e := range np {
			if portCovers(e.Key, k) && int(e.Key.PortPrefixLen) > best {
				best, v = int(e.Key.PortPrefixLen), e.Value
			}
		}
		vals[k] = maps.PolicyValue{Action: v.Action, Rule: v.Rule, PolicyID: v.PolicyID}
	}
	out := make([]maps.PolicyEntry, 0, len(vals))
	for k, v := range vals {
		for _, a := range atoms {
			if portCovers(a.key, k) {
				mergeTier(&v, a.tier, a.hit)
			}
		}
		out = append(out, maps.PolicyEntry{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b maps.PolicyEntry) int { return comparePolicyKey(a.Key, b.Key) })
	return out
}

// cidrCovers reports whether sl_cidr_policy key a's prefix covers b's (same level).
func cidrCovers(a, b maps.CIDRPolicyKey) bool {
	return a.EpID == b.EpID && a.Dir == b.Dir && a.Proto == b.Proto && a.Port == b.Port &&
		a.Prefix.Bits() <= b.Prefix.Bits() && a.Prefix.Contains(b.Prefix.Addr())
}

func foldCIDR(np []maps.CIDRPolicyEntry, atoms []cidrAtom) []maps.CIDRPolicyEntry {
	vals := map[maps.CIDRPolicyKey]maps.PolicyValue{}
	for _, e := range np {
		vals[e.Key] = e.Value
	}
	for _, a := range atoms {
		k := a.key
		if _, ok := vals[k]; ok {
			continue
		}
		best, v := -1, maps.PolicyValue{}
		for _, e := range np {
			if cidrCovers(e.Key, k) && e.Key.Prefix.Bits() > best {
				best, v = e.Key.Prefix.Bits(), e.Value
			}
		}
		vals[k] = maps.PolicyValue{Action: v.Action, Rule: v.Rule, PolicyID: v.PolicyID}
	}
	out := make([]maps.CIDRPolicyEntry, 0, len(vals))
	for k, v := range vals {
		for _, a := range atoms {
			if cidrCovers(a.key, k) {
				mergeTier(&v, a.tier, a.hit)
			}
		}
		out = append(out, maps.CIDRPolicyEntry{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b maps.CIDRPolicyEntry) int { return compareCIDRKey(a.Key, b.Key) })
	return out
}
