package conformance

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func denyAll(ns string, dirs ...string) *networkingv1.NetworkPolicy {
	name := "deny-all"
	for _, d := range dirs {
		name += "-" + d
	}
	return withTypes(netpol(ns, name, metav1.LabelSelector{}), dirs...)
}

func allowAll(ns string, dir string) *networkingv1.NetworkPolicy {
	np := netpol(ns, "allow-all-"+dir, metav1.LabelSelector{})
	if dir == dirIngress {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
	} else {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
	}
	return withTypes(np, dir)
}

// genDefaults: deny-all and allow-all, alone and together, per direction and namespace.
func genDefaults(u *Universe) []Case {
	var out []Case
	for _, dir := range []string{dirIngress, dirEgress} {
		for _, ns := range []string{"x", "y"} {
			out = append(out,
				Case{Name: "deny-all/" + dir + "/ns-" + ns, Tags: tags(TagDenyAll, dir), Steps: []Step{{Name: "apply", Policies: pols(denyAll(ns, dir))}}},
				Case{Name: "allow-all/" + dir + "/ns-" + ns, Tags: tags(TagAllowAll, dir), Steps: []Step{{Name: "apply", Policies: pols(allowAll(ns, dir))}}},
			)
		}
		out = append(out,
			Case{Name: "deny-all-and-allow-all/" + dir, Tags: tags(TagDenyAll, TagAllowAll, TagMultiplePolicies, dir),
				Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dir), allowAll("x", dir))}}},
			Case{Name: "deny-all/" + dir + "/every-namespace", Tags: tags(TagDenyAll, TagMultiplePolicies, dir),
				Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dir), denyAll("y", dir), denyAll("z", dir))}}},
		)
	}
	out = append(out,
		Case{Name: "deny-all/both/ns-x", Tags: tags(TagDenyAll, TagIngress, TagEgress, TagPolicyTypes),
			Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dirIngress, dirEgress))}}},
		Case{Name: "deny-all/ingress-x-egress-y", Tags: tags(TagDenyAll, TagIngress, TagEgress, TagMultiplePolicies),
			Steps: []Step{{Name: "apply", Policies: pols(denyAll("x", dirIngress), denyAll("y", dirEgress))}}},
	)
	return out
}
