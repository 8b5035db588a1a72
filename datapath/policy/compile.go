package policy

import (
	"cmp"
	"errors"
	"fmt"
	gomaps "maps"
	"net/netip"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// maxCIDRPortRange is the widest port range expanded into exact-port
// sl_cidr_policy entries; wider ranges on ipBlock peers are unrepresentable.
const maxCIDRPortRange = 256

// namespaceNameLabel is set on every namespace by the API server.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// identityInfo is a pod identity with what selectors look at.
type identityInfo struct {
	id        uint32
	namespace string
	podLabels labels.Set
	nsLabels  labels.Set
	pods      []*Pod // pods of this identity that have an IP (reachable)
}

// ipBlock is a parsed ipBlock peer.
type ipBlock struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

// compiledRule is one ingress or egress rule with its peers resolved to
// identities and CIDRs. Everything here is independent of the local
// endpoint, except ingress named ports (resolved on the endpoint).
type compiledRule struct {
	index   uint16
	anyPeer bool     // from/to missing or empty
	peers   []uint32 // pod identities selected by podSelector/namespaceSelector peers
	blocks  []ipBlock
	ports   []portSpec // numeric ports, all ports of a protocol, or all protocols
	named   []portSpec // named ports
	// egressNamed holds named ports already resolved per peer identity (egress
	// only: the destination is the peer).
	egressNamed []identityPort
	// egressNamedIPs holds named ports resolved per destination pod IP: pods of
	// an identity that name a port differently, and pods inside ipBlock peers.
	egressNamedIPs []ipPort
}

type ipPort struct {
	ip    netip.Addr
	proto maps.Proto
	port  uint16
}

type identityPort struct {
	peer  uint32
	proto maps.Proto
	port  uint16
}

// compiledPolicy is one NetworkPolicy after parsing.
type compiledPolicy struct {
	ref      PolicyRef
	selector labels.Selector // nil when the podSelector is invalid
	dirs     [3]bool         // indexed by DirIngress, DirEgress
	rules    [3][]compiledRule
	problems []string
}

// Compile turns pods, namespaces, nodes and NetworkPolicies into map entries.
// It returns an error only for malformed input (nil policy, duplicate pod,
// allocator exhaustion); policies it cannot represent are reported in
// Result.Problems and fail closed.
func Compile(in Input) (*Result, error) {
	alloc := in.Alloc
	if alloc == nil {
		alloc = NewAllocator()
	}
	res := &Result{
		Endpoints:  map[uint32]*Endpoint{},
		Policies:   map[uint32]PolicyRef{},
		Identities: map[uint32]Identity{},
	}

	nsLabels := map[string]labels.Set{}
	for _, ns := range in.Namespaces {
		if ns.Name == "" {
			return nil, errors.New("compile policy: namespace with empty name in input")
		}
		set := labels.Set{}
		gomaps.Copy(set, ns.Labels)
		if _, ok := set[namespaceNameLabel]; !ok {
			set[namespaceNameLabel] = ns.Name
		}
		nsLabels[ns.Name] = set
	}
	nsLabelsOf := func(name string) labels.Set {
		if s, ok := nsLabels[name]; ok {
			return s
		}
		return labels.Set{namespaceNameLabel: name}
	}

	// Pods and identity keys.
	pods := make(map[PodRef]*Pod, len(in.Pods))
	var idKeys []string
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.Name == "" || p.Namespace == "" {
			return nil, fmt.Errorf("compile policy: pod %d in input has empty name or namespace", i)
		}
		if _, dup := pods[p.Ref()]; dup {
			return nil, fmt.Errorf("compile policy: pod %s listed twice in input", p.Ref())
		}
		pods[p.Ref()] = p
		if !p.HostNetwork {
			idKeys = append(idKeys, identityKey(p.Namespace, p.Labels))
		}
	}
	var polKeys []string
	seenPol := map[string]bool{}
	for i, np := range in.Policies {
		if np == nil || np.Name == "" || np.Namespace == "" {
			return nil, fmt.Errorf("compile policy: networkpolicy %d in input is nil or has empty name/namespace", i)
		}
		k := policyKey(np.Namespace, np.Name)
		if seenPol[k] {
			return nil, fmt.Errorf("compile policy: networkpolicy %s listed twice in input", k)
		}
		seenPol[k] = true
		polKeys = append(polKeys, k)
	}
	for i, cnp := range in.ClusterPolicies {
		if cnp == nil || cnp.Name == "" {
			return nil, fmt.Errorf("compile policy: clusternetworkpolicy %d in input is nil or has an empty name", i)
		}
		k := clusterPolicyKey(cnp.Name)
		if seenPol[k] {
			return nil, fmt.Errorf("compile policy: clusternetworkpolicy %s listed twice in input", cnp.Name)
		}
		seenPol[k] = true
		polKeys = append(polKeys, k)
	}
	idNums, polNums, err := alloc.allocate(idKeys, polKeys)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}

	// Identities, in id order.
	idents := map[uint32]*identityInfo{}
	podIdentity := map[PodRef]uint32{}
	for _, p := range sortedPods(in.Pods) {
		if p.HostNetwork {
			continue
		}
		id := idNums[identityKey(p.Namespace, p.Labels)]
		podIdentity[p.Ref()] = id
		info := idents[id]
		if info == nil {
			info = &identityInfo{id: id, namespace: p.Namespace, podLabels: labels.Set(gomaps.Clone(p.Labels)), nsLabels: nsLabelsOf(p.Namespace)}
			idents[id] = info
			res.Identities[id] = Identity{ID: id, Namespace: p.Namespace, Labels: gomaps.Clone(p.Labels)}
		}
		if p.IP.IsValid() {
			info.pods = append(info.pods, p)
		}
	}
	identList := slices.SortedFunc(gomaps.Values(idents), func(a, b *identityInfo) int { return cmp.Compare(a.id, b.id) })

	res.IPCache = buildIPCache(in, podIdentity, &res.Problems)

	// Policies, in id order.
	var policies []*compiledPolicy
	byNamespace := map[string][]*compiledPolicy{}
	for _, np := range in.Policies {
		ref := PolicyRef{ID: polNums[policyKey(np.Namespace, np.Name)], Namespace: np.Namespace, Name: np.Name}
		res.Policies[ref.ID] = ref
		cp := compilePolicy(np, ref, identList)
		policies = append(policies, cp)
	}
	slices.SortFunc(policies, func(a, b *compiledPolicy) int { return cmp.Compare(a.ref.ID, b.ref.ID) })
	for _, cp := range policies {
		byNamespace[cp.ref.Namespace] = append(byNamespace[cp.ref.Namespace], cp)
		for _, msg := range cp.problems {
			ref := cp.ref
			res.Problems = append(res.Problems, Problem{Policy: &ref, Message: msg})
		}
	}

	cnps := compileClusterPolicies(in, polNums, identList, res)

	// Local endpoints.
	for _, ref := range slices.SortedFunc(gomaps.Keys(in.LocalEndpoints), func(a, b PodRef) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	}) {
		epID := in.LocalEndpoints[ref]
		if _, dup := res.Endpoints[epID]; dup {
			return nil, fmt.Errorf("compile policy: ep_id %d used by two local endpoints (one is %s)", epID, ref)
		}
		ep := &Endpoint{EpID: epID, Pod: ref}
		res.Endpoints[epID] = ep
		p := pods[ref]
		if p == nil || p.HostNetwork {
			r := ref
			why := "pod not in input (labels unknown)"
			if p != nil {
				why = "pod uses the host network"
			}
			res.Problems = append(res.Problems, Problem{Endpoint: &r, Message: why + ": denying all its traffic until it is known"})
			ep.Identity = IdentityUnmanaged
			ep.Flags = EndpointPolicyError
			continue
		}
		ep.Identity = podIdentity[ref]
		compileEndpoint(ep, p, byNamespace[p.Namespace])
		if ep.Flags&EndpointPolicyError == 0 {
			foldTiers(ep, endpointTierAtoms(ep, p, idents[ep.Identity], cnps))
		}
	}
	return res, nil
}

func sortedPods(in []Pod) []*Pod {
	out := make([]*Pod, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	slices.SortFunc(out, func(a, b *Pod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// buildIPCache maps node IPs to host/remote-node and pod IPs to their
// identity. An address claimed by two owners with different identities gets
// IdentityUnmanaged (no pod selector matches it: fail closed), except that a
// terminating pod's claim yields to any other owner's (its address was
// released and given to a new pod; until then it keeps its identity).
func buildIPCache(in Input, podIdentity map[PodRef]uint32, problems *[]Problem) []maps.IPCacheEntry {
	owner := map[netip.Addr]uint32{}
	conflict := map[netip.Addr]bool{}
	set := func(ip netip.Addr, id uint32) {
		if !ip.IsValid() || !ip.Is4() {
			return
		}
		if old, ok := owner[ip]; ok && old != id {
			conflict[ip] = true
			return
		}
		owner[ip] = id
	}
	for _, n := range in.Nodes {
		id := IdentityRemoteNode
		if n.Name == in.LocalNode {
			id = IdentityHost
		}
		for _, ip := range n.IPs {
			set(ip, id)
		}
	}
	pods := sortedPods(in.Pods)
	for _, p := range pods {
		if !p.HostNetwork && !p.Terminating {
			set(p.IP, podIdentity[p.Ref()])
		}
	}
	live := gomaps.Clone(owner)
	for _, p := range pods {
		if p.HostNetwork || !p.Terminating {
			continue
		}
		if _, taken := live[p.IP]; !taken {
			set(p.IP, podIdentity[p.Ref()])
		}
	}
	out := make([]maps.IPCacheEntry, 0, len(owner))
	for ip, id := range owner {
		if conflict[ip] {
			id = IdentityUnmanaged
		}
		out = append(out, maps.IPCacheEntry{Prefix: netip.PrefixFrom(ip, 32), Identity: id})
	}
	slices.SortFunc(out, func(a, b maps.IPCacheEntry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	for _, e := range out {
		if conflict[e.Prefix.Addr()] {
			*problems = append(*problems, Problem{Message: fmt.Sprintf("address %s is claimed by several pods/nodes with different identities: mapped to the unmanaged identity", e.Prefix.Addr())})
		}
	}
	return out
}

// selectorFor converts a label selector; nil (a peer without that selector)
// means everything.
func selectorFor(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return nil, err
	}
	return sel, nil
}

// compilePolicy parses one NetworkPolicy against the known identities.
func compilePolicy(np *networkingv1.NetworkPolicy, ref PolicyRef, idents []*identityInfo) *compiledPolicy {
	cp := &compiledPolicy{ref: ref}
	problem := func(format string, args ...any) { cp.problems = append(cp.problems, fmt.Sprintf(format, args...)) }

	sel, err := selectorFor(&np.Spec.PodSelector)
	if err != nil {
		problem("spec.podSelector: %v (fix the selector; every pod in namespace %s is denied meanwhile)", err, np.Namespace)
	} else {
		cp.selector = sel
	}

	if len(np.Spec.PolicyTypes) == 0 {
		cp.dirs[DirIngress] = true
		cp.dirs[DirEgress] = len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			cp.dirs[DirIngress] = true
		case networkingv1.PolicyTypeEgress:
			cp.dirs[DirEgress] = true
		default:
			problem("spec.policyTypes: unknown type %q (want Ingress or Egress)", t)
			cp.dirs[DirIngress], cp.dirs[DirEgress] = true, true
		}
	}

	if cp.dirs[DirIngress] {
		for i, r := range np.Spec.Ingress {
			cr, err := compileRule(np.Namespace, DirIngress, i, r.From, r.Ports, idents)
			if err != nil {
				problem("spec.ingress[%d]: %v", i, err)
				continue
			}
			cp.rules[DirIngress] = append(cp.rules[DirIngress], cr)
		}
	}
	if cp.dirs[DirEgress] {
		for i, r := range np.Spec.Egress {
			cr, err := compileRule(np.Namespace, DirEgress, i, r.To, r.Ports, idents)
			if err != nil {
				problem("spec.egress[%d]: %v", i, err)
				continue
			}
			cp.rules[DirEgress] = append(cp.rules[DirEgress], cr)
		}
	}
	return cp
}

// compileRule resolves one rule's peers and ports.
func compileRule(namespace string, dir maps.Direction, index int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, idents []*identityInfo) (compiledRule, error) {
	if index > int(^uint16(0)) {
		return compiledRule{}, fmt.Errorf("rule index %d does not fit the map's 16-bit rule field", index)
	}
	cr := compiledRule{index: uint16(index), anyPeer: len(peers) == 0}
	specs, err := parsePorts(ports)
	if err != nil {
		return cr, err
	}
	for _, s := range specs {
		if s.Named != "" {
			cr.named = append(cr.named, s)
		} else {
			cr.ports = append(cr.ports, s)
		}
	}

	peerSet := map[uint32]bool{}
	for j, peer := range peers {
		hasSel := peer.PodSelector != nil || peer.NamespaceSelector != nil
		switch {
		case peer.IPBlock != nil && hasSel:
			return cr, fmt.Errorf("peer %d: ipBlock cannot be combined with podSelector/namespaceSelector", j)
		case peer.IPBlock != nil:
			b, skip, err := parseIPBlock(peer.IPBlock)
			if err != nil {
				return cr, fmt.Errorf("peer %d: %w", j, err)
			}
			if !skip {
				cr.blocks = append(cr.blocks, b)
			}
		case hasSel:
			podSel, err := selectorFor(peer.PodSelector)
			if err != nil {
				return cr, fmt.Errorf("peer %d podSelector: %w", j, err)
			}
			var nsSel labels.Selector
			if peer.NamespaceSelector != nil {
				if nsSel, err = selectorFor(peer.NamespaceSelector); err != nil {
					return cr, fmt.Errorf("peer %d namespaceSelector: %w", j, err)
				}
			}
			for _, id := range idents {
				if nsSel == nil {
					if id.namespace != namespace {
						continue
					}
				} else if !nsSel.Matches(id.nsLabels) {
					continue
				}
				if podSel.Matches(id.podLabels) {
					peerSet[id.id] = true
				}
			}
		default:
			return cr, fmt.Errorf("peer %d is empty (set podSelector, namespaceSelector or ipBlock)", j)
		}
	}
	cr.peers = slices.Sorted(gomaps.Keys(peerSet))

	// Exact-port expansion for ipBlock peers.
	if len(cr.blocks) > 0 {
		for _, s := range cr.ports {
			if !s.allPorts() && int(s.Hi)-int(s.Lo)+1 > maxCIDRPortRange {
				return cr, fmt.Errorf("port range %d-%d toward an ipBlock spans more than %d ports (the CIDR map holds exact ports; split the rule or use a podSelector)", s.Lo, s.Hi, maxCIDRPortRange)
			}
		}
	}

	if dir == DirEgress && len(cr.named) > 0 {
		cr.resolveEgressNamed(idents)
	}
	return cr, nil
}

// resolveEgressNamed resolves the rule's named ports on its destinations, which are the peers. For a
// peer identity whose reachable pods all map a name to the same numbers, the numbers become
// identity keys (sl_policy). When the pods of one identity differ, each pod gets its own numbers
// as /32 entries in sl_cidr_policy: the datapath looks the peer's IP up there too, so every pod is
// reachable on exactly the ports its own spec names and no pod, in any namespace, can make the
// rule unrepresentable. ipBlock peers resolve on the pods whose IPs lie in the block and outside
// its excepts (/32 entries as well); addresses that are no pod's name no ports.
func (cr *compiledRule) resolveEgressNamed(idents []*identityInfo) {
	targets := idents
	if !cr.anyPeer {
		targets = nil
		peers := map[uint32]bool{}
		for _, id := range cr.peers {
			peers[id] = true
		}
		for _, id := range idents {
			if peers[id.id] {
				targets = append(targets, id)
			}
		}
	}
	for _, s := range cr.named {
		for _, id := range targets {
			if nums, same := resolveOnIdentity(id, s); same {
				for _, n := range nums {
					cr.egressNamed = append(cr.egressNamed, identityPort{peer: id.id, proto: s.Proto, port: n})
				}
				continue
			}
			for _, p := range id.pods {
				cr.addNamedIP(p, s)
			}
		}
		for _, b := range cr.blocks {
			for _, id := range idents {
				for _, p := range id.pods {
					if b.contains(p.IP) {
						cr.addNamedIP(p, s)
					}
				}
			}
		}
	}
}

// addNamedIP adds the numbers pod p names for s as /32 destinations.
func (cr *compiledRule) addNamedIP(p *Pod, s portSpec) {
	for _, n := range resolveNamed(p, s.Named, s.Proto) {
		cr.egressNamedIPs = append(cr.egressNamedIPs, ipPort{ip: p.IP, proto: s.Proto, port: n})
	}
}

// contains reports whether ip lies in the block and outside its excepts.
func (b ipBlock) contains(ip netip.Addr) bool {
	if !b.cidr.Contains(ip) {
		return false
	}
	for _, e := range b.except {
		if e.Contains(ip) {
			return false
		}
	}
	return true
}

// resolveOnIdentity resolves a named port on every reachable pod of an identity. The datapath
// keys sl_policy by identity, not pod: same is false when pods sharing the identity map the name
// to different numbers (an identity entry per number would let traffic reach a pod on a port its
// own spec does not name), and the caller then resolves per pod.
func resolveOnIdentity(id *identityInfo, s portSpec) (nums []uint16, same bool) {
	for i, p := range id.pods {
		got := resolveNamed(p, s.Named, s.Proto)
		slices.Sort(got)
		got = slices.Compact(got)
		if i == 0 {
			nums = got
			continue
		}
		if !slices.Equal(nums, got) {
			return nil, false
		}
	}
	return nums, true
}

// parseIPBlock parses an ipBlock. skip is set for IPv6 blocks: the datapath
// is IPv4-only, so such a block can never match and allows nothing.
func parseIPBlock(b *networkingv1.IPBlock) (ipBlock, bool, error) {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return ipBlock{}, false, fmt.Errorf("ipBlock cidr %q: %w", b.CIDR, err)
	}
	if !p.Addr().Is4() {
		return ipBlock{}, true, nil
	}
	out := ipBlock{cidr: p.Masked()}
	for _, e := range b.Except {
		ep, err := netip.ParsePrefix(e)
		if err != nil {
			return ipBlock{}, false, fmt.Errorf("ipBlock except %q: %w", e, err)
		}
		if !ep.Addr().Is4() {
			continue // cannot overlap an IPv4 cidr
		}
		out.except = append(out.except, ep.Masked())
	}
	return out, false, nil
}

// compileEndpoint fills one local endpoint's flags and entries.
func compileEndpoint(ep *Endpoint, p *Pod, policies []*compiledPolicy) {
	podLabels := labels.Set(p.Labels)
	var selecting [3][]*compiledPolicy
	failed := false
	for _, cp := range policies {
		if cp.selector == nil {
			// Invalid podSelector: cannot know whom it selects; deny all in its namespace.
			failed = true
			continue
		}
		if !cp.selector.Matches(podLabels) {
			continue
		}
		if len(cp.problems) > 0 {
			failed = true
		}
		for _, dir := range []maps.Direction{DirIngress, DirEgress} {
			if cp.dirs[dir] {
				selecting[dir] = append(selecting[dir], cp)
			}
		}
	}
	byName := func(a, b PolicyRef) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	}
	for _, cp := range selecting[DirIngress] {
		ep.IngressPolicies = append(ep.IngressPolicies, cp.ref)
	}
	for _, cp := range selecting[DirEgress] {
		ep.EgressPolicies = append(ep.EgressPolicies, cp.ref)
	}
	slices.SortFunc(ep.IngressPolicies, byName)
	slices.SortFunc(ep.EgressPolicies, byName)
	if len(selecting[DirIngress]) > 0 {
		ep.Flags |= EndpointIngressEnforced
	}
	if len(selecting[DirEgress]) > 0 {
		ep.Flags |= EndpointEgressEnforced
	}
	if failed {
		ep.Flags |= EndpointPolicyError
		return
	}

	entries := map[maps.PolicyKey]maps.PolicyValue{}
	add := func(k maps.PolicyKey, v maps.PolicyValue) {
		if old, ok := entries[k]; ok && !betterValue(v, old) {
			return
		}
		entries[k] = v
	}
	for _, dir := range []maps.Direction{DirIngress, DirEgress} {
		var cidrRules []cidrRule
		for _, cp := range selecting[dir] {
			for _, r := range cp.rules[dir] {
				val := maps.PolicyValue{Action: ActionAllow, Rule: r.index, PolicyID: cp.ref.ID}
				peers := r.peers
				if r.anyPeer {
					peers = []uint32{IdentityAny}
				}
				specs := r.ports
				if dir == DirIngress {
					// Named ports resolve on the destination: this endpoint.
					for _, s := range r.named {
						for _, n := range resolveNamed(p, s.Named, s.Proto) {
							specs = append(specs, portSpec{Proto: s.Proto, Lo: n, Hi: n})
						}
					}
				}
				for _, s := range specs {
					for _, peer := range peers {
						for _, k := range policyKeys(ep.EpID, peer, dir, s) {
							add(k, val)
						}
					}
					for _, b := range r.blocks {
						cidrRules = append(cidrRules, cidrRulesFor(b, s, val)...)
					}
				}
				for _, ip := range r.egressNamed {
					add(maps.PolicyKey{EpID: ep.EpID, PeerID: ip.peer, Dir: dir, Proto: ip.proto, Port: ip.port, PortPrefixLen: 16}, val)
				}
				for _, ip := range r.egressNamedIPs {
					cidrRules = append(cidrRules, cidrRule{Proto: ip.proto, Port: ip.port, CIDR: netip.PrefixFrom(ip.ip, 32), Value: val})
				}
			}
		}
		ep.CIDR = append(ep.CIDR, compileCIDR(ep.EpID, dir, cidrRules)...)
	}
	ep.Policy = make([]maps.PolicyEntry, 0, len(entries))
	for k, v := range entries {
		ep.Policy = append(ep.Policy, maps.PolicyEntry{Key: k, Value: v})
	}
	slices.SortFunc(ep.Policy, func(a, b maps.PolicyEntry) int { return comparePolicyKey(a.Key, b.Key) })
}

// policyKeys returns the sl_policy keys for one peer and port spec.
func policyKeys(epID, peer uint32, dir maps.Direction, s portSpec) []maps.PolicyKey {
	base := maps.PolicyKey{EpID: epID, PeerID: peer, Dir: dir, Proto: s.Proto}
	if s.Proto == ProtoAny || s.allPorts() {
		return []maps.PolicyKey{base}
	}
	var out []maps.PolicyKey
	for _, pp := range rangePrefixes(s.Lo, s.Hi) {
		k := base
		k.Port, k.PortPrefixLen = pp.Port, pp.Len
		out = append(out, k)
	}
	return out
}

// cidrRulesFor expands one ipBlock and port spec into exact-port CIDR rules
// (the range width was checked when the rule was compiled).
func cidrRulesFor(b ipBlock, s portSpec, val maps.PolicyValue) []cidrRule {
	if s.Proto == ProtoAny || s.allPorts() {
		return []cidrRule{{Proto: s.Proto, CIDR: b.cidr, Except: b.except, Value: val}}
	}
	out := make([]cidrRule, 0, int(s.Hi)-int(s.Lo)+1)
	for port := uint32(s.Lo); port <= uint32(s.Hi); port++ {
		out = append(out, cidrRule{Proto: s.Proto, Port: uint16(port), CIDR: b.cidr, Except: b.except, Value: val})
	}
	return out
}
