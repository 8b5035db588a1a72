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
	var self *Pod
	var peer *Pod
	for i := range in.Pods {
		p := &in.Pods[i]
		if p.Namespace == pod.Namespace && p.Name == pod.Name {
			self = p
		}
		if !p.HostNetwork && p.IP.IsValid() && p.IP == peerIP {
			peer = p
		}
	}
	if self == nil {
		return false
	}
	nsLabels := func(name string) labels.Set {
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
