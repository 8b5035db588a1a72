package oracle

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// NamespaceFromK8s converts a corev1.Namespace.
func NamespaceFromK8s(ns *corev1.Namespace) Namespace {
	return Namespace{Name: ns.Name, Labels: ns.Labels}
}

// PodFromK8s converts a corev1.Pod: labels, status.podIP (when it parses), hostNetwork and the
// container ports of its containers and init containers (sidecars may serve named ports).
func PodFromK8s(p *corev1.Pod) Pod {
	out := podFromSpec(p.Namespace, p.Name, p.Labels, &p.Spec)
	if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
		out.IP = ip
	}
	return out
}

func podFromSpec(namespace, name string, labels map[string]string, spec *corev1.PodSpec) Pod {
	out := Pod{Namespace: namespace, Name: name, Labels: labels, HostNetwork: spec.HostNetwork}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				out.Ports = append(out.Ports, ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: protoOrTCP(cp.Protocol)})
			}
		}
	}
	return out
}

// ServiceFromK8s converts a corev1.Service (selector, clusterIP, ports with targetPort).
func ServiceFromK8s(s *corev1.Service) Service {
	out := Service{Namespace: s.Namespace, Name: s.Name, Selector: s.Spec.Selector}
	if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
		out.ClusterIP = ip
	}
	for _, p := range s.Spec.Ports {
		out.Ports = append(out.Ports, ServicePort{Name: p.Name, Port: p.Port, Protocol: protoOrTCP(p.Protocol), TargetPort: p.TargetPort})
	}
	return out
}

// NodeFromK8s converts a corev1.Node: labels and the addresses of status.addresses that parse as IPs.
func NodeFromK8s(n *corev1.Node) Node {
	out := Node{Name: n.Name, Labels: n.Labels}
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}
