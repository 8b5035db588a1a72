package policy

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// The compiler against the independent oracle (internal/oracle), on the random inputs of fuzzInput.
//
// How each side sees the same input:
//   - Compiler: Compile(Input) as the agent would, then (*Result).Decide per local endpoint, direction,
//     peer IP, protocol and port: the compiled map entries evaluated the way the BPF programs do.
//   - Oracle: the same namespaces, pods (labels, IP, hostNetwork, named container ports with the protocol
//     number mapped to TCP/UDP/SCTP) and policies as an oracle.Cluster. The peer addresses that are no
//     pod's (8.8.8.8, 10.0.0.200, 172.18.0.9 and the node IPs) are oracle.Externals. Ingress of local pod
//     P from peer IP is Evaluate(ip, P).Ingress; egress is Evaluate(P, ip).Egress. An IP of a
//     non-hostNetwork pod resolves to that pod in the oracle, as the ipcache resolves it to the pod's
//     identity in the compiler.
//   - Host peers: node IPs (and so hostNetwork pods, which share them) are compared as plain addresses,
//     matched only by ipBlock on both sides. The datapath's own exemption of ingress from the local host
//     (kubelet probes) is not in the compiled entries nor in Decide, so it is not compared here.
//   - Endpoints the compiler flags EndpointPolicyError (it reported a Problem and fails closed) deny
//     everything by design. They must be exactly the endpoints naiveFailClosed judges unrepresentable
//     from the objects (invalid objects, and the datapath's documented limit), so an over-eager
//     deny-all fails the test; their decisions are counted and checked never to allow what the
//     oracle denies.

// oracleCluster maps a compiler Input to the oracle's model.
func oracleCluster(in Input, externals []netip.Addr) oracle.Cluster {
	c := oracle.Cluster{Policies: in.Policies}
	known := map[string]bool{}
	for _, ns := range in.Namespaces {
		c.Namespaces = append(c.Namespaces, oracle.Namespace{Name: ns.Name, Labels: ns.Labels})
		known[ns.Name] = true
	}
	// A namespace without a Namespace object (not seen by the informer yet) has only its
	// kubernetes.io/metadata.name label for the compiler; the oracle needs the object, which it
	// gives that label as well.
	for _, name := range fuzzNamespaces {
		if !known[name] {
			c.Namespaces = append(c.Namespaces, oracle.Namespace{Name: name})
		}
	}
	for _, p := range in.Pods {
		op := oracle.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: p.IP, HostNetwork: p.HostNetwork}
		for _, cp := range p.Ports {
			op.Ports = append(op.Ports, oracle.ContainerPort{Name: cp.Name, Port: int32(cp.Port), Protocol: oracleProto(cp.Protocol)})
		}
		c.Pods = append(c.Pods, op)
	}
	for _, ip := range externals {
		c.Externals = append(c.Externals, oracle.External{IP: ip})
	}
	return c
}

func oracleProto(p maps.Proto) corev1.Protocol {
	switch p {
	case ProtoUDP:
		return corev1.ProtocolUDP
	case ProtoSCTP:
		return corev1.ProtocolSCTP
	}
	return corev1.ProtocolTCP
}

type oracleStats struct {
	inputs, comparisons int
	// failClosed counts decisions on EndpointPolicyError endpoints; overDenied those of them the
	// oracle allows (the price of failing closed).
	failClosed, overDenied int
}

func TestCompilerMatchesOracleRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 29))
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var st oracleStats
	for range n {
		data := make([]byte, 40+rng.IntN(160))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		if !checkAgainstOracle(t, data, &st) {
			break
		}
	}
	t.Logf("%d random inputs, %d decisions compared, %d on fail-closed endpoints (%d of them allowed by the oracle, denied by the compiler)",
		st.inputs, st.comparisons, st.failClosed, st.overDenied)
}

// checkAgainstOracle compares one input; it returns false after reporting a disagreement.
func checkAgainstOracle(t *testing.T, data []byte, st *oracleStats) bool {
	t.Helper()
	input := fuzzInput(&gen{data: data})
	// internal/oracle models NetworkPolicy only; the tiers are checked against naiveDecideTiers.
	input.ClusterPolicies = nil
	res, err := Compile(input)
	if err != nil {
		t.Fatalf("compile %q: %v", data, err)
	}
	externals := append([]netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("10.0.0.200"), netip.MustParseAddr("172.18.0.9")}, fuzzNodeIPs...)
	o, err := oracle.New(oracleCluster(input, externals))
	if err != nil {
		t.Fatalf("oracle %q: %v", data, err)
	}
	peers := append([]netip.Addr(nil), externals...)
	for _, p := range input.Pods {
		if p.IP.IsValid() && !p.HostNetwork {
			peers = append(peers, p.IP)
		}
	}
	st.inputs++
	for podRef, epID := range input.LocalEndpoints {
		failClosed := res.Endpoints[epID].Flags&EndpointPolicyError != 0
		if failClosed != naiveFailClosed(input, podRef) {
			t.Errorf("input %q: endpoint %s fail-closed %v, but the objects say unrepresentable %v (over-eager or missing fail-closed)\nproblems: %v%s", data, podRef, failClosed, !failClosed, res.Problems, policiesYAML(input))
			return false
		}
		self := oracle.PodEndpoint(podRef.Namespace, podRef.Name)
		for _, ip := range peers {
			peer := oracle.IPEndpoint(ip)
			for _, proto := range []maps.Proto{ProtoTCP, ProtoUDP, ProtoSCTP} {
				for _, port := range fuzzProbePorts {
					if port == 0 {
						continue // the oracle evaluates ports 1..65535 only
					}
					for _, dir := range []maps.Direction{DirIngress, DirEgress} {
						got, _ := res.Decide(epID, dir, ip, proto, port)
						var v oracle.Verdict
						if dir == DirIngress {
							v, err = o.Evaluate(peer, self, int32(port), oracleProto(proto))
						} else {
							v, err = o.Evaluate(self, peer, int32(port), oracleProto(proto))
						}
						if err != nil {
							t.Fatalf("oracle evaluate %q: %v", data, err)
						}
						want := v.Ingress
						if dir == DirEgress {
							want = v.Egress
						}
						st.comparisons++
						if failClosed {
							st.failClosed++
							if want.Allowed {
								st.overDenied++
							}
							if got && !want.Allowed {
								t.Errorf("input %q: fail-closed endpoint %s allows what the oracle denies: dir %d peer %s proto %d port %d: %s", data, podRef, dir, ip, proto, port, want.Reason)
								return false
							}
							continue
						}
						if got != want.Allowed {
							t.Errorf("input %q: compiler %v, oracle %v: %s dir %d peer %s proto %d port %d\noracle: %s\nproblems: %v\npolicies: %s\nendpoint: %+v",
								data, got, want.Allowed, podRef, dir, ip, proto, port, want.Reason, res.Problems, policiesYAML(input), res.Endpoints[epID])
							return false
						}
					}
				}
			}
		}
	}
	return true
}

// policiesYAML prints the input's policies for a failure message.
func policiesYAML(in Input) string {
	var s string
	for _, np := range in.Policies {
		s += "\n" + np.Namespace + "/" + np.Name + ": " + np.Spec.String()
	}
	for _, p := range in.Pods {
		s += "\npod " + p.Namespace + "/" + p.Name + " " + p.IP.String()
	}
	return s
}
