package policy

import (
	"cmp"
	"net/netip"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// naiveDecideTiers evaluates ClusterNetworkPolicies and NetworkPolicies directly, the way the
// network-policy-api documentation reads: Admin rules by (priority, name, rule order), first
// match decides (Pass goes on); then NetworkPolicy when one selects the pod for the direction;
// then Baseline the same way (Pass allows); then allow. It shares no code with the compiler and
// expects valid objects.
func naiveDecideTiers(in Input, pod PodRef, dir maps.Direction, peerIP netip.Addr, proto maps.Proto, port uint16) bool {
	var self, peer *Pod
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
	match := func(s *metav1.LabelSelector, set labels.Set) bool {
		sel, err := metav1.LabelSelectorAsSelector(s)
		return err == nil && sel.Matches(set)
	}
	selects := func(ns *metav1.LabelSelector, np *cnpv1beta1.NamespacedPod, p *Pod) bool {
		if p == nil {
			return false
		}
		if ns != nil {
			return match(ns, nsLabels(p.Namespace))
		}
		return match(&np.NamespaceSelector, nsLabels(p.Namespace)) && match(&np.PodSelector, labels.Set(p.Labels))
	}
	dst := peer // the pod whose named ports count
	if dir == DirIngress {
		dst = self
	}
	protoMatch := func(ps []cnpv1beta1.ClusterNetworkPolicyProtocol) bool {
		if len(ps) == 0 {
			return true
		}
		for _, p := range ps {
			if p.DestinationNamedPort != "" {
				if dst == nil {
					continue
				}
				for _, cp := range dst.Ports {
					if cp.Name == p.DestinationNamedPort && cp.Protocol == proto && cp.Port == port {
						return true
					}
				}
				continue
			}
			var dp *cnpv1beta1.Port
			var pr maps.Proto
			switch {
			case p.TCP != nil:
				pr, dp = ProtoTCP, p.TCP.DestinationPort
			case p.UDP != nil:
				pr, dp = ProtoUDP, p.UDP.DestinationPort
			case p.SCTP != nil:
				pr, dp = ProtoSCTP, p.SCTP.DestinationPort
			}
			if pr != proto {
				continue
			}
			switch {
			case dp == nil:
				return true
			case dp.Range != nil:
				if int32(port) >= dp.Range.Start && int32(port) <= dp.Range.End {
					return true
				}
			case int32(port) == dp.Number:
				return true
			}
		}
		return false
	}
	peerMatch := func(p cnpv1beta1.ClusterNetworkPolicyEgressPeer) bool {
		switch {
		case p.Namespaces != nil || p.Pods != nil:
			return selects(p.Namespaces, p.Pods, peer)
		case p.Networks != nil:
			for _, c := range p.Networks {
				if pfx, err := netip.ParsePrefix(string(c)); err == nil && pfx.Contains(peerIP) {
					return true
				}
			}
		case p.Nodes != nil:
			for _, n := range in.Nodes {
				if match(p.Nodes, labels.Set(n.Labels)) && slices.Contains(n.IPs, peerIP) {
					return true
				}
			}
		}
		return false
	}
	type rule struct {
		action cnpv1beta1.ClusterNetworkPolicyRuleAction
		hit    bool
	}
	walk := func(tier cnpv1beta1.Tier) (cnpv1beta1.ClusterNetworkPolicyRuleAction, bool) {
		pols := slices.Clone(in.ClusterPolicies)
		slices.SortFunc(pols, func(a, b *cnpv1beta1.ClusterNetworkPolicy) int {
			return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Name, b.Name))
		})
		for _, p := range pols {
			if p.Spec.Tier != tier || !selects(p.Spec.Subject.Namespaces, p.Spec.Subject.Pods, self) {
				continue
			}
			var rules []rule
			if dir == DirIngress {
				for _, r := range p.Spec.Ingress {
					hit := false
					for _, f := range r.From {
						hit = hit || peerMatch(cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
					}
					rules = append(rules, rule{r.Action, hit && protoMatch(r.Protocols)})
				}
			} else {
				for _, r := range p.Spec.Egress {
					hit := false
					for _, t := range r.To {
						hit = hit || peerMatch(t)
					}
					rules = append(rules, rule{r.Action, hit && protoMatch(r.Protocols)})
				}
			}
			for _, r := range rules {
				if r.hit {
					return r.action, true
				}
			}
		}
		return "", false
	}
	if a, ok := walk(cnpv1beta1.AdminTier); ok && a != cnpv1beta1.ClusterNetworkPolicyRuleActionPass {
		return a == cnpv1beta1.ClusterNetworkPolicyRuleActionAccept
	}
	if naiveSelected(in, self, dir) {
		return naiveDecide(in, pod, dir, peerIP, proto, port)
	}
	if a, ok := walk(cnpv1beta1.BaselineTier); ok {
		return a != cnpv1beta1.ClusterNetworkPolicyRuleActionDeny
	}
	return true
}

// naiveSelected reports whether a NetworkPolicy selects the pod for the direction.
func naiveSelected(in Input, self *Pod, dir maps.Direction) bool {
	for _, np := range in.Policies {
		if np.Namespace != self.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(self.Labels)) {
			continue
		}
		ingress, egress := len(np.Spec.PolicyTypes) == 0, len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
		for _, t := range np.Spec.PolicyTypes {
			ingress = ingress || t == "Ingress"
			egress = egress || t == "Egress"
		}
		if (dir == DirIngress && ingress) || (dir == DirEgress && egress) {
			return true
		}
	}
	return false
}
