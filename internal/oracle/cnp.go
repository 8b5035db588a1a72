package oracle

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Tier names, in evaluation order: a direction's decision walks them until one decides.
const (
	TierAdmin         = "Admin"
	TierNetworkPolicy = "NetworkPolicy"
	TierBaseline      = "Baseline"
	TierDefault       = "Default"
)

// Rule actions of ClusterNetworkPolicy.
const (
	ActionAccept = string(policyv1beta1.ClusterNetworkPolicyRuleActionAccept)
	ActionDeny   = string(policyv1beta1.ClusterNetworkPolicyRuleActionDeny)
	ActionPass   = string(policyv1beta1.ClusterNetworkPolicyRuleActionPass)
)

// cnpRefPrefix prefixes a ClusterNetworkPolicy's name in references ("cnp/NAME"): it is cluster scoped,
// so a bare name could be mistaken for a namespace.
const cnpRefPrefix = "cnp/"

// clusterPolicy is a ClusterNetworkPolicy parsed once.
type clusterPolicy struct {
	ref      string // cnp/NAME
	name     string
	tier     string
	priority int32
	// subject: a namespace selector (nil pod selector: every pod of the namespaces) or both.
	subjectNS  labels.Selector
	subjectPod labels.Selector
	inRules    []cnpRule
	egRules    []cnpRule
}

// cnpRule is one rule: an action, peers (ORed) and protocols (ORed; none: every port and protocol).
type cnpRule struct {
	name   string
	action string
	peers  []cnpPeer
	protos []cnpProto
}

// cnpPeer is one from/to element; exactly one of its selectors is set.
type cnpPeer struct {
	namespaces labels.Selector // every pod of the matching namespaces
	podNS      labels.Selector // pods: namespaceSelector AND podSelector
	pods       labels.Selector
	nodes      labels.Selector // egress: the nodes' addresses
	networks   []netip.Prefix  // egress: addresses
	domains    []string        // egress: FQDNs (the oracle resolves no names: matches nothing)
}

// cnpProto is one protocols element: a protocol with an optional port or range, or a named port.
type cnpProto struct {
	proto     corev1.Protocol // empty with namedPort
	any       bool
	lo, hi    int32
	namedPort string
}

// parseClusterPolicy converts a ClusterNetworkPolicy. Errors are input the oracle cannot evaluate; the
// API server rejects most of them (a priority out of 0..1000, an unknown tier or action, a bad CIDR).
func parseClusterPolicy(cnp *policyv1beta1.ClusterNetworkPolicy) (*clusterPolicy, error) {
	p := &clusterPolicy{ref: cnpRefPrefix + cnp.Name, name: cnp.Name, tier: string(cnp.Spec.Tier), priority: cnp.Spec.Priority}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("clusternetworkpolicy %s: %s", cnp.Name, fmt.Sprintf(format, args...))
	}
	switch cnp.Spec.Tier {
	case policyv1beta1.AdminTier, policyv1beta1.BaselineTier:
	default:
		return nil, fail("spec.tier %q: want Admin or Baseline", cnp.Spec.Tier)
	}
	if cnp.Spec.Priority < 0 || cnp.Spec.Priority > 1000 {
		return nil, fail("spec.priority %d: want 0..1000", cnp.Spec.Priority)
	}
	s := cnp.Spec.Subject
	var err error
	switch {
	case s.Namespaces != nil && s.Pods == nil:
		if p.subjectNS, err = metav1.LabelSelectorAsSelector(s.Namespaces); err != nil {
			return nil, fail("spec.subject.namespaces: %v", err)
		}
	case s.Pods != nil && s.Namespaces == nil:
		if p.subjectNS, err = metav1.LabelSelectorAsSelector(&s.Pods.NamespaceSelector); err != nil {
			return nil, fail("spec.subject.pods.namespaceSelector: %v", err)
		}
		if p.subjectPod, err = metav1.LabelSelectorAsSelector(&s.Pods.PodSelector); err != nil {
			return nil, fail("spec.subject.pods.podSelector: %v", err)
		}
	default:
		return nil, fail("spec.subject: set exactly one of namespaces and pods")
	}
	for i, r := range cnp.Spec.Ingress {
		peers := make([]policyv1beta1.ClusterNetworkPolicyEgressPeer, len(r.From))
		for j, f := range r.From {
			peers[j] = policyv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
		}
		cr, err := parseCNPRule(r.Name, r.Action, peers, r.Protocols, p.tier)
		if err != nil {
			return nil, fail("spec.ingress[%d]: %v", i, err)
		}
		p.inRules = append(p.inRules, cr)
	}
	for i, r := range cnp.Spec.Egress {
		cr, err := parseCNPRule(r.Name, r.Action, r.To, r.Protocols, p.tier)
		if err != nil {
			return nil, fail("spec.egress[%d]: %v", i, err)
		}
		p.egRules = append(p.egRules, cr)
	}
	return p, nil
}

func parseCNPRule(name string, action policyv1beta1.ClusterNetworkPolicyRuleAction, peers []policyv1beta1.ClusterNetworkPolicyEgressPeer,
	protos []policyv1beta1.ClusterNetworkPolicyProtocol, tier string) (cnpRule, error) {
	r := cnpRule{name: name, action: string(action)}
	switch r.action {
	case ActionAccept, ActionDeny:
	case ActionPass:
		if tier == TierBaseline {
			return cnpRule{}, fmt.Errorf("action Pass is not allowed in the Baseline tier (want Accept or Deny)")
		}
	default:
		return cnpRule{}, fmt.Errorf("action %q: want Accept, Deny or Pass", action)
	}
	if len(peers) == 0 {
		return cnpRule{}, fmt.Errorf("no peers: a rule needs at least one from/to element")
	}
	for i, pe := range peers {
		out, err := parseCNPPeer(pe)
		if err != nil {
			return cnpRule{}, fmt.Errorf("peer %d: %w", i, err)
		}
		r.peers = append(r.peers, out)
	}
	for i, pr := range protos {
		out, err := parseCNPProto(pr)
		if err != nil {
			return cnpRule{}, fmt.Errorf("protocols[%d]: %w", i, err)
		}
		r.protos = append(r.protos, out)
	}
	return r, nil
}

func parseCNPPeer(pe policyv1beta1.ClusterNetworkPolicyEgressPeer) (cnpPeer, error) {
	var out cnpPeer
	var err error
	set := 0
	if pe.Namespaces != nil {
		set++
		if out.namespaces, err = metav1.LabelSelectorAsSelector(pe.Namespaces); err != nil {
			return out, fmt.Errorf("namespaces: %w", err)
		}
	}
	if pe.Pods != nil {
		set++
		if out.podNS, err = metav1.LabelSelectorAsSelector(&pe.Pods.NamespaceSelector); err != nil {
			return out, fmt.Errorf("pods.namespaceSelector: %w", err)
		}
		if out.pods, err = metav1.LabelSelectorAsSelector(&pe.Pods.PodSelector); err != nil {
			return out, fmt.Errorf("pods.podSelector: %w", err)
		}
	}
	if pe.Nodes != nil {
		set++
		if out.nodes, err = metav1.LabelSelectorAsSelector(pe.Nodes); err != nil {
			return out, fmt.Errorf("nodes: %w", err)
		}
	}
	if len(pe.Networks) > 0 {
		set++
		for _, n := range pe.Networks {
			pfx, err := netip.ParsePrefix(string(n))
			if err != nil {
				return out, fmt.Errorf("networks %q: %w (want a CIDR such as 10.0.0.0/8)", n, err)
			}
			out.networks = append(out.networks, pfx.Masked())
		}
	}
	if len(pe.DomainNames) > 0 {
		set++
		for _, d := range pe.DomainNames {
			out.domains = append(out.domains, string(d))
		}
	}
	if set != 1 {
		return out, fmt.Errorf("set exactly one of namespaces, pods, nodes, networks and domainNames (found %d)", set)
	}
	return out, nil
}

func parseCNPProto(pr policyv1beta1.ClusterNetworkPolicyProtocol) (cnpProto, error) {
	var out cnpProto
	set := 0
	portOf := func(proto corev1.Protocol, p *policyv1beta1.Port) error {
		set++
		out.proto = proto
		switch {
		case p == nil:
			out.any = true
		case p.Range != nil && p.Number != 0:
			return fmt.Errorf("%s.destinationPort: set number or range, not both", proto)
		case p.Range != nil:
			if p.Range.Start < 1 || p.Range.End > 65535 || p.Range.End < p.Range.Start {
				return fmt.Errorf("%s.destinationPort.range %d-%d: want 1 <= start <= end <= 65535", proto, p.Range.Start, p.Range.End)
			}
			out.lo, out.hi = p.Range.Start, p.Range.End
		case p.Number >= 1 && p.Number <= 65535:
			out.lo, out.hi = p.Number, p.Number
		default:
			return fmt.Errorf("%s.destinationPort.number %d: want 1..65535", proto, p.Number)
		}
		return nil
	}
	var err error
	if pr.TCP != nil {
		err = portOf(corev1.ProtocolTCP, pr.TCP.DestinationPort)
	}
	if err == nil && pr.UDP != nil {
		err = portOf(corev1.ProtocolUDP, pr.UDP.DestinationPort)
	}
	if err == nil && pr.SCTP != nil {
		err = portOf(corev1.ProtocolSCTP, pr.SCTP.DestinationPort)
	}
	if err != nil {
		return out, err
	}
	if pr.DestinationNamedPort != "" {
		set++
		out.namedPort = pr.DestinationNamedPort
	}
	if set != 1 {
		return out, fmt.Errorf("set exactly one of tcp, udp, sctp and destinationNamedPort (found %d)", set)
	}
	return out, nil
}

// selects reports whether the policy's subject is pod p; hostNetwork pods are never selected.
func (p *clusterPolicy) selects(pod *Pod, nsLabels labels.Set) bool {
	if pod.HostNetwork || !p.subjectNS.Matches(nsLabels) {
		return false
	}
	return p.subjectPod == nil || p.subjectPod.Matches(labels.Set(pod.Labels))
}

// matches reports whether the peer is the other side of the traffic: a pod (nil when not a pod) at ip.
func (pe *cnpPeer) matches(other *Pod, ip netip.Addr, nsLabels func(string) labels.Set, nodes []Node) bool {
	switch {
	case pe.namespaces != nil:
		return other != nil && !other.HostNetwork && pe.namespaces.Matches(nsLabels(other.Namespace))
	case pe.pods != nil:
		return other != nil && !other.HostNetwork && pe.podNS.Matches(nsLabels(other.Namespace)) && pe.pods.Matches(labels.Set(other.Labels))
	case pe.nodes != nil:
		if !ip.IsValid() {
			return false
		}
		for i := range nodes {
			if pe.nodes.Matches(labels.Set(nodes[i].Labels)) {
				for _, nip := range nodes[i].IPs {
					if nip == ip {
						return true
					}
				}
			}
		}
		return false
	case len(pe.networks) > 0:
		for _, n := range pe.networks {
			if ip.IsValid() && n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// matches reports whether the protocols element matches proto/port to the destination pod dst (nil when
// the destination is not a pod: a named port then matches nothing).
func (pr *cnpProto) matches(dst *Pod, proto corev1.Protocol, port int32) bool {
	if pr.namedPort != "" {
		return namedPortIs(dst, pr.namedPort, proto, port)
	}
	if pr.proto != proto {
		return false
	}
	return pr.any || (port >= pr.lo && port <= pr.hi)
}

// ruleMatches reports whether a rule matches the traffic.
func (o *Oracle) cnpRuleMatches(r *cnpRule, other side, dst *Pod, port int32, proto corev1.Protocol) bool {
	peerOK := false
	for i := range r.peers {
		if r.peers[i].matches(other.pod, other.ip, o.nsLabels, o.cluster.Nodes) {
			peerOK = true
			break
		}
	}
	if !peerOK {
		return false
	}
	if len(r.protos) == 0 {
		return true
	}
	for i := range r.protos {
		if r.protos[i].matches(dst, proto, port) {
			return true
		}
	}
	return false
}

// sortClusterPolicies orders each tier's policies by priority (lower first), then name: the API leaves
// the order of equal priorities to the implementation, the oracle makes it deterministic and reports
// the ambiguity.
func sortClusterPolicies(ps []*clusterPolicy) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].tier != ps[j].tier {
			return ps[i].tier == TierAdmin
		}
		if ps[i].priority != ps[j].priority {
			return ps[i].priority < ps[j].priority
		}
		return ps[i].name < ps[j].name
	})
}
