package policy

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// PodFromK8s converts a corev1.Pod into the compiler's Pod. A pod that has
// finished (phase Succeeded or Failed) gets no IP: its address may already
// belong to another pod. A terminating pod (deletionTimestamp set, not
// finished) keeps its IP and so its identity: its in-flight traffic is still
// judged by its labels until it is gone (Terminating marks it, so that a live
// pod that gets its address wins the ipcache entry). Container ports with an unknown protocol are kept
// out (a named port pointing at them then resolves to nothing: fail closed).
func PodFromK8s(p *corev1.Pod) Pod {
	out := Pod{
		Name:        p.Name,
		Namespace:   p.Namespace,
		Labels:      p.Labels,
		Node:        p.Spec.NodeName,
		HostNetwork: p.Spec.HostNetwork,
		Terminating: p.DeletionTimestamp != nil,
	}
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil && ip.Is4() {
			out.IP = ip
		}
	}
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, cp := range c.Ports {
				proto, err := protoNumber(cp.Protocol)
				if err != nil || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
					continue
				}
				out.Ports = append(out.Ports, ContainerPort{Name: cp.Name, Port: uint16(cp.ContainerPort), Protocol: proto})
			}
		}
	}
	add(p.Spec.InitContainers) // sidecars (restartPolicy Always) may serve named ports
	add(p.Spec.Containers)
	return out
}

// NamespaceFromK8s converts a corev1.Namespace.
func NamespaceFromK8s(ns *corev1.Namespace) Namespace {
	return Namespace{Name: ns.Name, Labels: ns.Labels}
}

// NodeFromK8s converts a corev1.Node, keeping its IPv4 InternalIP and
// ExternalIP addresses.
func NodeFromK8s(n *corev1.Node) Node {
	out := Node{Name: n.Name, Labels: n.Labels}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}

// protoNumber maps a Kubernetes protocol name to its IP protocol number;
// empty means TCP.
func protoNumber(p corev1.Protocol) (maps.Proto, error) {
	switch p {
	case "", corev1.ProtocolTCP:
		return ProtoTCP, nil
	case corev1.ProtocolUDP:
		return ProtoUDP, nil
	case corev1.ProtocolSCTP:
		return ProtoSCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want TCP, UDP or SCTP)", p)
}
