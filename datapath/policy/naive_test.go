package policy

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// naiveDecide evaluates the NetworkPolicy objects directly, the way the
// networking/v1 API documentation reads, for traffic of the given local pod
// in direction dir with a peer at peerIP. It is deliberately simple and
// shares no code with the compiler. Invalid objects deny.
func naiveDecide(in Input, pod PodRef, dir maps.Direction, peerIP netip.Addr, proto maps.Proto, port uint16) bool {
	self, peer := naiveParties(in, pod, peerIP)
	if self == nil {
		return false
	}
	nsLabels := naiveNSLabels(in)
	matches := func(sel *metav1.LabelSelector, set labels.Set) (bool, bool) {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false, false
		}
		return s.Matches(set), true
	}

	selected := false
	for _, np := range in.Policies {
		if np.Namespace != self.Namespace {
			continue
		}
		ok, valid := matches(&np.Spec.PodSelector, labels.Set(self.Labels))
		if !valid {
			return false
		}
		if !ok {
			continue
		}
		ingress, egress := false, false
		if len(np.Spec.PolicyTypes) == 0 {
			ingress, egress = true, len(np.Spec.Egress) > 0
		}
		for _, t := range np.Spec.PolicyTypes {
			ingress = ingress || t == networkingv1.PolicyTypeIngress
			egress = egress || t == networkingv1.PolicyTypeEgress
		}
		if dir == DirIngress && ingress {
			selected = true
			for _, r := range np.Spec.Ingress {
				if naivePeersMatch(np.Namespace, r.From, peer, peerIP, nsLabels, matches) && naivePortsMatch(r.Ports, self, proto, port) {
					return true
				}
			}
		}
		if dir == DirEgress && egress {
			selected = true
			for _, r := range np.Spec.Egress {
				if naivePeersMatch(np.Namespace, r.To, peer, peerIP, nsLabels, matches) && naivePortsMatch(r.Ports, peer, proto, port) {
					return true
				}
			}
		}
	}
	return !selected
}

// naiveParties finds the local pod and the pod (not host-network) that has the peer's address.
func naiveParties(in Input, pod PodRef, peerIP netip.Addr) (self, peer *Pod) {
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.Namespace == pod.Namespace && p.Name == pod.Name {
			self = p
		}
		if !p.HostNetwork && p.IP.IsValid() && p.IP == peerIP {
			peer = p
		}
	}
	return self, peer
}

// naiveNSLabels returns a namespace's labels, kubernetes.io/metadata.name included.
func naiveNSLabels(in Input) func(string) labels.Set {
	return func(name string) labels.Set {
		set := labels.Set{"kubernetes.io/metadata.name": name}
		for _, ns := range in.Namespaces {
			if ns.Name == name {
				for k, v := range ns.Labels {
					set[k] = v
				}
			}
		}
		return set
	}
}

func naivePeersMatch(policyNS string, peers []networkingv1.NetworkPolicyPeer, peer *Pod, ip netip.Addr,
	nsLabels func(string) labels.Set, matches func(*metav1.LabelSelector, labels.Set) (bool, bool)) bool {
	if len(peers) == 0 {
		return true
	}
	for _, pr := range peers {
		if pr.IPBlock != nil {
			cidr, err := netip.ParsePrefix(pr.IPBlock.CIDR)
			if err != nil || !cidr.Contains(ip) {
				continue
			}
			excepted := false
			for _, e := range pr.IPBlock.Except {
				ep, err := netip.ParsePrefix(e)
				if err == nil && ep.Contains(ip) {
					excepted = true
				}
			}
			if !excepted {
				return true
			}
			continue
		}
		if peer == nil {
			continue
		}
		nsOK := peer.Namespace == policyNS
		if pr.NamespaceSelector != nil {
			nsOK, _ = matches(pr.NamespaceSelector, nsLabels(peer.Namespace))
		}
		podOK := true
		if pr.PodSelector != nil {
			podOK, _ = matches(pr.PodSelector, labels.Set(peer.Labels))
		}
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// naivePortsMatch checks a ports list against traffic to dst (the pod
// receiving it; nil when the destination is not a pod).
func naivePortsMatch(ports []networkingv1.NetworkPolicyPort, dst *Pod, proto maps.Proto, port uint16) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		want := ProtoTCP
		if p.Protocol != nil {
			switch *p.Protocol {
			case "TCP":
			case "UDP":
				want = ProtoUDP
			case "SCTP":
				want = ProtoSCTP
			default:
				continue
			}
		}
		if want != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.Int:
			lo, hi := p.Port.IntVal, p.Port.IntVal
			if p.EndPort != nil {
				hi = *p.EndPort
			}
			if int32(port) >= lo && int32(port) <= hi {
				return true
			}
		default:
			if dst == nil {
				continue
			}
			for _, cp := range dst.Ports {
				if cp.Name == p.Port.StrVal && cp.Protocol == proto && cp.Port == port {
					return true
				}
			}
		}
	}
	return false
}

// naiveFailClosed reports whether the policies make local pod pod unrepresentable, judged from the
// objects alone (the NetworkPolicy validation of the API server, plus the one documented limit of
// the datapath): a policy of its namespace with an invalid podSelector, or a policy selecting it
// with an invalid policyType, or an invalid rule in a direction it enforces. A rule is invalid
// with an empty peer, an ipBlock combined with a selector, an unparsable selector or CIDR, a
// protocol other than TCP/UDP/SCTP, a port outside 1..65535, an endPort without a numeric port or
// outside port..65535, an empty port name, or (the datapath's limit) a numeric range of more than
// 256 ports toward an IPv4 ipBlock. The compiler must fail closed exactly for these pods.
func naiveFailClosed(in Input, pod PodRef) bool {
	var self *Pod
	for i := range in.Pods {
		if in.Pods[i].Namespace == pod.Namespace && in.Pods[i].Name == pod.Name {
			self = &in.Pods[i]
		}
	}
	if self == nil || self.HostNetwork {
		return true
	}
	validSel := func(s *metav1.LabelSelector) bool {
		_, err := metav1.LabelSelectorAsSelector(s)
		return err == nil
	}
	for _, np := range in.Policies {
		if np.Namespace != self.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			return true
		}
		if !sel.Matches(labels.Set(self.Labels)) {
			continue
		}
		ingress, egress := len(np.Spec.PolicyTypes) == 0, len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
		for _, t := range np.Spec.PolicyTypes {
			switch t {
			case networkingv1.PolicyTypeIngress:
				ingress = true
			case networkingv1.PolicyTypeEgress:
				egress = true
			default:
				return true
			}
		}
		var rules [][2]any // peers, ports
		if ingress {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, [2]any{r.From, r.Ports})
			}
		}
		if egress {
			for _, r := range np.Spec.Egress {
				rules = append(rules, [2]any{r.To, r.Ports})
			}
		}
		for _, r := range rules {
			if naiveRuleInvalid(r[0].([]networkingv1.NetworkPolicyPeer), r[1].([]networkingv1.NetworkPolicyPort), validSel) {
				return true
			}
		}
	}
	return false
}

func naiveRuleInvalid(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, validSel func(*metav1.LabelSelector) bool) bool {
	v4Block := false
	for _, p := range peers {
		hasSel := p.PodSelector != nil || p.NamespaceSelector != nil
		switch {
		case p.IPBlock != nil && hasSel, p.IPBlock == nil && !hasSel:
			return true
		case p.IPBlock != nil:
			cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err != nil {
				return true
			}
			for _, e := range p.IPBlock.Except {
				if _, err := netip.ParsePrefix(e); err != nil {
					return true
				}
			}
			v4Block = v4Block || cidr.Addr().Is4()
		default:
			if (p.PodSelector != nil && !validSel(p.PodSelector)) || (p.NamespaceSelector != nil && !validSel(p.NamespaceSelector)) {
				return true
			}
		}
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != "TCP" && *p.Protocol != "UDP" && *p.Protocol != "SCTP" {
			return true
		}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				return true
			}
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == "" || p.EndPort != nil {
				return true
			}
		default:
			lo, hi := p.Port.IntVal, p.Port.IntVal
			if p.EndPort != nil {
				hi = *p.EndPort
			}
			if lo < 1 || lo > 65535 || hi < lo || hi > 65535 {
				return true
			}
			if v4Block && hi-lo+1 > 256 {
				return true
			}
		}
	}
	return false
}
