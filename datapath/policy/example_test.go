package policy_test

import (
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/datapath/policy"
)

// The agent's view: gather pods, namespaces, nodes and policies, compile,
// then write Result.IPCache, each Endpoint's Flags/Identity, Policy and CIDR
// entries into the maps.
func ExampleCompile() {
	deny := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "stars", Name: "default-deny"},
	}
	res, err := policy.Compile(policy.Input{
		Namespaces: []policy.Namespace{{Name: "stars"}},
		Pods: []policy.Pod{
			{Namespace: "stars", Name: "backend", Labels: map[string]string{"role": "backend"}, IP: netip.MustParseAddr("10.244.1.6"), Node: "worker"},
		},
		Nodes:          []policy.Node{{Name: "worker", IPs: []netip.Addr{netip.MustParseAddr("172.18.0.3")}}},
		Policies:       []*networkingv1.NetworkPolicy{deny},
		LocalNode:      "worker",
		LocalEndpoints: map[policy.PodRef]uint32{{Namespace: "stars", Name: "backend"}: 7},
	})
	if err != nil {
		panic(err)
	}
	ep := res.Endpoints[7]
	fmt.Println("identity:", ep.Identity, "flags:", ep.Flags, "ingress policies:", ep.IngressPolicies)
	for _, e := range res.IPCache {
		fmt.Println("ipcache:", e.Prefix, e.Identity)
	}
	in, _ := res.Decide(7, policy.DirIngress, netip.MustParseAddr("10.244.2.7"), policy.ProtoTCP, 6379)
	out, _ := res.Decide(7, policy.DirEgress, netip.MustParseAddr("10.244.2.7"), policy.ProtoTCP, 80)
	fmt.Println("ingress allowed:", in, "egress allowed:", out)
	// Output:
	// identity: 256 flags: 1 ingress policies: [stars/default-deny]
	// ipcache: 10.244.1.6/32 256
	// ipcache: 172.18.0.3/32 1
	// ingress allowed: false egress allowed: true
}
