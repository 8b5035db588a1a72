package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNamedPortCrossNamespaceNoDoS is the reproducer of issue 11 item 7 (SEC-7): pods in another
// namespace that share labels and name "http" differently must not make a victim's broad egress
// named-port policy unrepresentable.
func TestNamedPortCrossNamespaceNoDoS(t *testing.T) {
	v := mkPod("victim/client", "10.0.0.1", "n", kv("app", "client"))
	s := mkPod("victim/server", "10.0.0.2", "n", kv("app", "server"), cport("http", ProtoTCP, 8080))
	e1 := mkPod("evil/x1", "10.0.0.3", "n", kv("app", "x"), cport("http", ProtoTCP, 80))
	e2 := mkPod("evil/x2", "10.0.0.4", "n", kv("app", "x"), cport("http", ProtoTCP, 81))
	np := netpol("victim/egress-http", sel("app", "client"), egressOnly(), nil,
		egressRules(egressRule(ports(namedPort(corev1.ProtocolTCP, "http")), nsPeer(&metav1.LabelSelector{}))))
	base := Input{Namespaces: []Namespace{{Name: "victim"}, {Name: "evil"}}, LocalNode: "n",
		LocalEndpoints: map[PodRef]uint32{ref("victim/client"): 100}, Policies: []*networkingv1.NetworkPolicy{np}}

	tests := []struct {
		name string
		pods []Pod
	}{
		{name: "without the evil pods", pods: []Pod{v, s}},
		{name: "with the evil pods", pods: []Pod{v, s, e1, e2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			in.Pods = tt.pods
			r, err := Compile(in)
			require.NoError(t, err)
			assert.Empty(t, r.Problems)
			assert.Zero(t, r.Endpoints[100].Flags&EndpointPolicyError, "the victim is not set deny-all")
			checks := []struct {
				ip    Pod
				port  uint16
				allow bool
			}{
				{s, 8080, true}, {s, 80, false}, {e1, 80, true}, {e1, 81, false}, {e2, 81, true}, {e2, 80, false},
			}
			for _, c := range checks {
				if !containsPod(tt.pods, c.ip) {
					continue
				}
				ok, _ := r.Decide(100, DirEgress, c.ip.IP, ProtoTCP, c.port)
				assert.Equal(t, c.allow, ok, "client -> %s:%d", c.ip.Ref(), c.port)
			}
		})
	}
}

func containsPod(pods []Pod, p Pod) bool {
	for _, q := range pods {
		if q.Ref() == p.Ref() {
			return true
		}
	}
	return false
}
