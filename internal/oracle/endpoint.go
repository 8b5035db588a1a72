package oracle

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Kind says what an Endpoint names.
type Kind string

// Endpoint kinds.
const (
	KindPod     Kind = "pod"
	KindService Kind = "service"
	KindIP      Kind = "ip"
)

// Endpoint is one side of a connection: a pod, a Service (destination only) or an IP address.
type Endpoint struct {
	Kind      Kind       `json:"kind"`
	Namespace string     `json:"namespace,omitempty"`
	Name      string     `json:"name,omitempty"`
	IP        netip.Addr `json:"ip,omitzero"`
}

// PodEndpoint names the pod namespace/name.
func PodEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: KindPod, Namespace: namespace, Name: name}
}

// ServiceEndpoint names the Service namespace/name.
func ServiceEndpoint(namespace, name string) Endpoint {
	return Endpoint{Kind: KindService, Namespace: namespace, Name: name}
}

// IPEndpoint names an address (a pod's, a Service's ClusterIP or one outside the cluster).
func IPEndpoint(ip netip.Addr) Endpoint { return Endpoint{Kind: KindIP, IP: ip} }

func (e Endpoint) String() string {
	if e.Kind == KindIP {
		return "ip " + e.IP.String()
	}
	return string(e.Kind) + " " + e.Namespace + "/" + e.Name
}

// ParseEndpoint reads NS/NAME (a pod, or else a Service of that name), pod/NS/NAME, svc/NS/NAME
// (service/NS/NAME) or an IP address. Errors say which part is unknown and what exists.
func (o *Oracle) ParseEndpoint(s string) (Endpoint, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return IPEndpoint(ip), nil
	}
	parts := strings.Split(s, "/")
	kind := Kind("")
	switch {
	case len(parts) == 3 && parts[0] == "pod":
		kind, parts = KindPod, parts[1:]
	case len(parts) == 3 && (parts[0] == "svc" || parts[0] == "service"):
		kind, parts = KindService, parts[1:]
	case len(parts) != 2:
		return Endpoint{}, fmt.Errorf("%q: want NAMESPACE/NAME, pod/NAMESPACE/NAME, svc/NAMESPACE/NAME or an IP address", s)
	}
	ns, name := parts[0], parts[1]
	if ns == "" || name == "" {
		return Endpoint{}, fmt.Errorf("%q: want NAMESPACE/NAME with both parts set", s)
	}
	if !o.HasNamespace(ns) {
		return Endpoint{}, fmt.Errorf("%q: namespace %q is not defined (namespaces: %s)", s, ns, strings.Join(o.namespaceNames(), ", "))
	}
	ref := ns + "/" + name
	if (kind == "" || kind == KindPod) && o.pods[ref] != nil {
		return PodEndpoint(ns, name), nil
	}
	if (kind == "" || kind == KindService) && o.services[ref] != nil {
		return ServiceEndpoint(ns, name), nil
	}
	what := "pod or service"
	if kind != "" {
		what = string(kind)
	}
	return Endpoint{}, fmt.Errorf("%q: no %s %s (pods in %s: %s; services: %s)", s, what, ref, ns,
		orNone(o.names(ns, false)), orNone(o.names(ns, true)))
}

func (o *Oracle) namespaceNames() []string {
	out := make([]string, 0, len(o.namespaces))
	for n := range o.namespaces {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (o *Oracle) names(ns string, services bool) []string {
	var out []string
	if services {
		for _, s := range o.cluster.Services {
			if s.Namespace == ns {
				out = append(out, s.Name)
			}
		}
	} else {
		for _, p := range o.cluster.Pods {
			if p.Namespace == ns {
				out = append(out, p.Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
