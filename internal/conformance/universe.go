package conformance

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// ControlPort is the demo probe's HTTP port in every pod (/probe/batch, reached by port-forward,
// never probed by the cases).
const ControlPort = 8080

// Universe is the fixed set of namespaces and pods every case runs against, and the pod IPs once
// the pods run (made-up IPs before that, for listing and unit tests).
type Universe struct {
	Namespaces []string
	PodNames   []string
	IPs        map[string]netip.Addr // ns/pod -> IP
	ServiceIPs map[string]netip.Addr // ns/pod -> ClusterIP of its Service s-<pod>
}

// PodIDLabel selects each pod for its own Service; the cases never change it.
const PodIDLabel = "conformance.starlab.dev/pod"

// NewUniverse returns x, y, z with pods a, b, c and placeholder IPs 10.244.<ns>.<pod+10>.
func NewUniverse() *Universe {
	u := &Universe{Namespaces: []string{"x", "y", "z"}, PodNames: []string{"a", "b", "c"}, IPs: map[string]netip.Addr{}, ServiceIPs: map[string]netip.Addr{}}
	for i, ns := range u.Namespaces {
		for j, p := range u.PodNames {
			u.IPs[ns+"/"+p] = netip.AddrFrom4([4]byte{10, 244, byte(i + 1), byte(j + 10)})
			u.ServiceIPs[ns+"/"+p] = netip.AddrFrom4([4]byte{10, 96, byte(i + 1), byte(j + 10)})
		}
	}
	return u
}

// Pods returns every ns/pod, namespace-major.
func (u *Universe) Pods() []string {
	var out []string
	for _, ns := range u.Namespaces {
		for _, p := range u.PodNames {
			out = append(out, ns+"/"+p)
		}
	}
	return out
}

// NamespaceBaseLabels are ns=<name>.
func (u *Universe) NamespaceBaseLabels(ns string) map[string]string {
	return map[string]string{"ns": ns}
}

// PodBaseLabels are pod=<name>.
func (u *Universe) PodBaseLabels(ref string) map[string]string {
	_, name, _ := strings.Cut(ref, "/")
	return map[string]string{"pod": name}
}

// PortName is the named container port of port/proto, e.g. serve-80-tcp.
func PortName(port int32, proto corev1.Protocol) string {
	return fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto)))
}

// Columns are the port/protocol groups of every truth table.
func Columns() []oracle.PortProto {
	var out []oracle.PortProto
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		for _, port := range []int32{80, 81} {
			out = append(out, oracle.PortProto{Port: port, Protocol: proto})
		}
	}
	return out
}

// containerPorts are the named ports every pod declares.
func containerPorts() []oracle.ContainerPort {
	var out []oracle.ContainerPort
	for _, c := range Columns() {
		out = append(out, oracle.ContainerPort{Name: PortName(c.Port, c.Protocol), Port: c.Port, Protocol: c.Protocol})
	}
	return out
}

// Cluster is the oracle's input for state st.
func (u *Universe) Cluster(st State) oracle.Cluster {
	var c oracle.Cluster
	for _, ns := range u.Namespaces {
		c.Namespaces = append(c.Namespaces, oracle.Namespace{Name: ns, Labels: st.NamespaceLabels[ns]})
	}
	for _, ref := range u.Pods() {
		ns, name, _ := strings.Cut(ref, "/")
		c.Pods = append(c.Pods, oracle.Pod{Namespace: ns, Name: name, Labels: st.PodLabels[ref], IP: u.IPs[ref], Ports: containerPorts()})
		c.Services = append(c.Services, u.service(ref))
	}
	for _, np := range st.Policies {
		c.Policies = append(c.Policies, np)
	}
	sort.Slice(c.Policies, func(i, j int) bool {
		return c.Policies[i].Namespace+"/"+c.Policies[i].Name < c.Policies[j].Namespace+"/"+c.Policies[j].Name
	})
	for _, name := range st.ClusterPolicyNames() {
		c.ClusterPolicies = append(c.ClusterPolicies, st.ClusterPolicies[name])
	}
	return c
}

// Oracle builds the oracle for state st.
func (u *Universe) Oracle(st State) (*oracle.Oracle, error) {
	o, err := oracle.New(u.Cluster(st))
	if err != nil {
		return nil, fmt.Errorf("oracle for the case's state: %w", err)
	}
	return o, nil
}

// service is the oracle's view of the Service in front of pod ref: every column, targetPort = port.
func (u *Universe) service(ref string) oracle.Service {
	ns, name, _ := strings.Cut(ref, "/")
	s := oracle.Service{Namespace: ns, Name: ServiceName(name), Selector: map[string]string{PodIDLabel: name}, ClusterIP: u.ServiceIPs[ref]}
	for _, c := range Columns() {
		s.Ports = append(s.Ports, oracle.ServicePort{Name: PortName(c.Port, c.Protocol), Port: c.Port, Protocol: c.Protocol, TargetPort: intstr.FromInt32(c.Port)})
	}
	return s
}
