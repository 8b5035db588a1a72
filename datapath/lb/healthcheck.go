package lb

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// HealthCheck is one Service's spec.healthCheckNodePort (externalTrafficPolicy Local, type
// LoadBalancer) as this node must answer it, the way kube-proxy does: LocalEndpoints counts the
// ready endpoints on this node (a terminating one is not ready, so only-terminating answers 503).
type HealthCheck struct {
	Namespace, Name string
	Port            uint16
	LocalEndpoints  int
}

// HealthChecks returns the health check ports of the Services the table programs, sorted by port.
// A port claimed by two Services goes to the older one (the API server does not let that happen).
func (t *Table) HealthChecks() []HealthCheck {
	byPort := map[uint16]HealthCheck{}
	owner := map[uint16]*corev1.Service{}
	for k, svc := range t.services {
		if svc.Spec.HealthCheckNodePort == 0 || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || Skipped(svc) {
			continue
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeNodePort {
			continue
		}
		port := uint16(svc.Spec.HealthCheckNodePort)
		if o := owner[port]; o != nil && !o.CreationTimestamp.After(svc.CreationTimestamp.Time) {
			continue
		}
		owner[port] = svc
		byPort[port] = HealthCheck{Namespace: svc.Namespace, Name: svc.Name, Port: port, LocalEndpoints: t.localReady(k, svc)}
	}
	out := make([]HealthCheck, 0, len(byPort))
	for _, h := range byPort {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// localReady counts the distinct ready endpoint addresses of Service k on this node.
func (t *Table) localReady(k string, svc *corev1.Service) int {
	seen := map[netip.Addr]bool{}
	for _, sl := range t.slices[k] {
		if sl == nil || sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != t.nodeName {
				continue
			}
			st := stateOf(svc, ep.Conditions)
			if !st.ready || st.terminating {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() {
					seen[ip] = true
				}
			}
		}
	}
	return len(seen)
}
