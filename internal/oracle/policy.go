package oracle

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// policy is a NetworkPolicy parsed once: selectors converted, CIDRs parsed, types defaulted.
type policy struct {
	ref     string // namespace/name
	ns      string
	subject labels.Selector
	ingress bool // the policy isolates its pods for ingress
	egress  bool
	inRules []rule
	egRules []rule
}

// rule is one ingress or egress rule. nil peers means all peers, nil ports all ports.
type rule struct {
	peers []peer
	ports []portRule
}

// peer is one from/to element. For a selector peer, a nil ns means the policy's namespace and a nil
// pod means every pod.
type peer struct {
	block *ipBlock
	ns    labels.Selector
	pod   labels.Selector
}

type ipBlock struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

// portRule is one ports element: protocol (defaulted to TCP) and either no port (all), a number range
// [lo, hi], or a name.
type portRule struct {
	proto  corev1.Protocol
	any    bool
	lo, hi int32
	name   string
}

// parsePolicy converts a NetworkPolicy. Errors are input the oracle cannot evaluate (a selector or CIDR
// that does not parse, an unknown protocol); warnings are input the API server would reject but that
// still has one literal reading, which the oracle then uses.
func parsePolicy(np *networkingv1.NetworkPolicy) (*policy, []string, error) {
	p := &policy{ref: np.Namespace + "/" + np.Name, ns: np.Namespace}
	var warnings []string
	warn := func(format string, args ...any) {
		warnings = append(warnings, fmt.Sprintf("networkpolicy %s: ", p.ref)+fmt.Sprintf(format, args...))
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		return nil, nil, fmt.Errorf("networkpolicy %s: spec.podSelector: %w", p.ref, err)
	}
	p.subject = sel
	if len(np.Spec.PolicyTypes) == 0 {
		p.ingress, p.egress = true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.ingress = true
		case networkingv1.PolicyTypeEgress:
			p.egress = true
		default:
			return nil, nil, fmt.Errorf("networkpolicy %s: unknown policyType %q (want Ingress or Egress)", p.ref, t)
		}
	}
	for i, r := range np.Spec.Ingress {
		pr, err := parseRule(r.From, r.Ports, warn)
		if err != nil {
			return nil, nil, fmt.Errorf("networkpolicy %s: spec.ingress[%d]: %w", p.ref, i, err)
		}
		p.inRules = append(p.inRules, pr)
	}
	for i, r := range np.Spec.Egress {
		pr, err := parseRule(r.To, r.Ports, warn)
		if err != nil {
			return nil, nil, fmt.Errorf("networkpolicy %s: spec.egress[%d]: %w", p.ref, i, err)
		}
		p.egRules = append(p.egRules, pr)
	}
	return p, warnings, nil
}

func parseRule(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, warn func(string, ...any)) (rule, error) {
	var r rule
	for i, pe := range peers {
		out, err := parsePeer(pe, warn)
		if err != nil {
			return rule{}, fmt.Errorf("peer %d: %w", i, err)
		}
		r.peers = append(r.peers, out)
	}
	for i, po := range ports {
		out, err := parsePort(po, warn)
		if err != nil {
			return rule{}, fmt.Errorf("ports[%d]: %w", i, err)
		}
		r.ports = append(r.ports, out)
	}
	return r, nil
}

func parsePeer(pe networkingv1.NetworkPolicyPeer, warn func(string, ...any)) (peer, error) {
	if pe.IPBlock != nil {
		if pe.PodSelector != nil || pe.NamespaceSelector != nil {
			return peer{}, fmt.Errorf("ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
		}
		cidr, err := netip.ParsePrefix(pe.IPBlock.CIDR)
		if err != nil {
			return peer{}, fmt.Errorf("ipBlock.cidr %q: %w", pe.IPBlock.CIDR, err)
		}
		b := &ipBlock{cidr: cidr.Masked()}
		for _, e := range pe.IPBlock.Except {
			ex, err := netip.ParsePrefix(e)
			if err != nil {
				return peer{}, fmt.Errorf("ipBlock.except %q: %w", e, err)
			}
			if !cidr.Contains(ex.Addr()) || ex.Bits() < cidr.Bits() {
				warn("ipBlock.except %s is not inside cidr %s (the API server rejects this; evaluated literally)", e, pe.IPBlock.CIDR)
			}
			b.except = append(b.except, ex.Masked())
		}
		return peer{block: b}, nil
	}
	if pe.PodSelector == nil && pe.NamespaceSelector == nil {
		warn("a peer with neither podSelector, namespaceSelector nor ipBlock (the API server rejects this; evaluated as every pod of the policy's namespace)")
	}
	var out peer
	var err error
	if pe.NamespaceSelector != nil {
		if out.ns, err = metav1.LabelSelectorAsSelector(pe.NamespaceSelector); err != nil {
			return peer{}, fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	if pe.PodSelector != nil {
		if out.pod, err = metav1.LabelSelectorAsSelector(pe.PodSelector); err != nil {
			return peer{}, fmt.Errorf("podSelector: %w", err)
		}
	}
	return out, nil
}

func parsePort(po networkingv1.NetworkPolicyPort, warn func(string, ...any)) (portRule, error) {
	out := portRule{proto: corev1.ProtocolTCP}
	if po.Protocol != nil {
		switch *po.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			out.proto = *po.Protocol
		default:
			return portRule{}, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", *po.Protocol)
		}
	}
	switch {
	case po.Port == nil:
		out.any = true
		if po.EndPort != nil {
			warn("endPort without port (the API server rejects this; ignored)")
		}
	case po.Port.Type == intstr.String:
		out.name = po.Port.StrVal
		if po.EndPort != nil {
			warn("endPort with the named port %q (the API server rejects this; ignored)", out.name)
		}
	default:
		out.lo, out.hi = po.Port.IntVal, po.Port.IntVal
		if po.EndPort != nil {
			out.hi = *po.EndPort
			if out.hi < out.lo {
				warn("endPort %d below port %d (the API server rejects this; matches nothing)", out.hi, out.lo)
			}
		}
	}
	return out, nil
}

// selects reports whether the policy applies to pod p (same namespace, podSelector matches).
// hostNetwork pods are never selected.
func (p *policy) selects(pod *Pod) bool {
	return !pod.HostNetwork && pod.Namespace == p.ns && p.subject.Matches(labels.Set(pod.Labels))
}

// matches reports whether the peer matches the other side of the traffic: a pod (nil when the other
// side is not a pod, or a hostNetwork pod) at ip, in a namespace with nsLabels.
func (pe *peer) matches(policyNS string, other *Pod, ip netip.Addr, nsLabels func(string) labels.Set) bool {
	if pe.block != nil {
		if !ip.IsValid() || !pe.block.cidr.Contains(ip) {
			return false
		}
		for _, e := range pe.block.except {
			if e.Contains(ip) {
				return false
			}
		}
		return true
	}
	if other == nil || other.HostNetwork {
		return false
	}
	if pe.ns == nil {
		if other.Namespace != policyNS {
			return false
		}
	} else if !pe.ns.Matches(nsLabels(other.Namespace)) {
		return false
	}
	return pe.pod == nil || pe.pod.Matches(labels.Set(other.Labels))
}

// matches reports whether the port rule allows proto/port to the destination pod dst (nil when the
// destination is not a pod: then a named port never matches).
func (pr *portRule) matches(dst *Pod, proto corev1.Protocol, port int32) bool {
	if pr.proto != proto {
		return false
	}
	switch {
	case pr.any:
		return true
	case pr.name != "":
		return namedPortIs(dst, pr.name, proto, port)
	}
	return port >= pr.lo && port <= pr.hi
}

// namedPortIs reports whether pod dst (nil: not a pod, never) declares a container port called name
// with that protocol and number.
func namedPortIs(dst *Pod, name string, proto corev1.Protocol, port int32) bool {
	if dst == nil {
		return false
	}
	for _, cp := range dst.Ports {
		if cp.Name == name && protoOrTCP(cp.Protocol) == proto && cp.Port == port {
			return true
		}
	}
	return false
}

func protoOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
