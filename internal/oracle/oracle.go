package oracle

import (
	"fmt"
	"net/netip"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
)

// Oracle answers policy questions about one Cluster. Build it with New; it is read-only afterwards and
// safe for concurrent use.
type Oracle struct {
	cluster    Cluster
	namespaces map[string]labels.Set
	pods       map[string]*Pod // namespace/name
	podByIP    map[netip.Addr]*Pod
	services   map[string]*Service
	svcByIP    map[netip.Addr]*Service
	externals  map[netip.Addr]string
	policies   []*policy // sorted by namespace/name
	// clusterPolicies are the ClusterNetworkPolicies, Admin tier first, each tier by priority then name.
	clusterPolicies []*clusterPolicy
	warnings        []string
}

// New checks the cluster and parses its policies. Errors name the object and what to fix: a pod or
// policy in a namespace the cluster does not list, a duplicate pod, a policy that does not parse.
func New(c Cluster) (*Oracle, error) {
	o := &Oracle{
		cluster:    c,
		namespaces: map[string]labels.Set{},
		pods:       map[string]*Pod{},
		podByIP:    map[netip.Addr]*Pod{},
		services:   map[string]*Service{},
		svcByIP:    map[netip.Addr]*Service{},
		externals:  map[netip.Addr]string{},
	}
	for _, ns := range c.Namespaces {
		if _, dup := o.namespaces[ns.Name]; dup {
			return nil, fmt.Errorf("namespace %s is listed twice", ns.Name)
		}
		set := labels.Set{}
		for k, v := range ns.Labels {
			set[k] = v
		}
		if _, ok := set[MetadataNameLabel]; !ok {
			set[MetadataNameLabel] = ns.Name
		}
		o.namespaces[ns.Name] = set
	}
	for i := range c.Pods {
		p := &c.Pods[i]
		if _, ok := o.namespaces[p.Namespace]; !ok {
			return nil, fmt.Errorf("pod %s: namespace %q is not defined: add a Namespace object for it", p.Ref(), p.Namespace)
		}
		if _, dup := o.pods[p.Ref()]; dup {
			return nil, fmt.Errorf("pod %s is defined twice", p.Ref())
		}
		o.pods[p.Ref()] = p
		if p.IP.IsValid() && !p.HostNetwork {
			if other, dup := o.podByIP[p.IP]; dup {
				return nil, fmt.Errorf("pods %s and %s both have IP %s", other.Ref(), p.Ref(), p.IP)
			}
			o.podByIP[p.IP] = p
		}
	}
	for i := range c.Services {
		s := &c.Services[i]
		if _, ok := o.namespaces[s.Namespace]; !ok {
			return nil, fmt.Errorf("service %s: namespace %q is not defined: add a Namespace object for it", s.Ref(), s.Namespace)
		}
		o.services[s.Ref()] = s
		if s.ClusterIP.IsValid() {
			o.svcByIP[s.ClusterIP] = s
		}
	}
	for _, e := range c.Externals {
		o.externals[e.IP] = e.Name
	}
	for _, np := range c.Policies {
		if _, ok := o.namespaces[np.Namespace]; !ok {
			return nil, fmt.Errorf("networkpolicy %s/%s: namespace %q is not defined: add a Namespace object for it", np.Namespace, np.Name, np.Namespace)
		}
		p, w, err := parsePolicy(np)
		if err != nil {
			return nil, err
		}
		o.policies = append(o.policies, p)
		o.warnings = append(o.warnings, w...)
	}
	sort.Slice(o.policies, func(i, j int) bool { return o.policies[i].ref < o.policies[j].ref })
	seen := map[string]bool{}
	for _, cnp := range c.ClusterPolicies {
		if seen[cnp.Name] {
			return nil, fmt.Errorf("clusternetworkpolicy %s is defined twice", cnp.Name)
		}
		seen[cnp.Name] = true
		p, err := parseClusterPolicy(cnp)
		if err != nil {
			return nil, err
		}
		o.clusterPolicies = append(o.clusterPolicies, p)
	}
	sortClusterPolicies(o.clusterPolicies)
	return o, nil
}

// Warnings lists input the API server would reject but that the oracle still evaluated literally.
func (o *Oracle) Warnings() []string { return o.warnings }

// Cluster returns the input the oracle was built from.
func (o *Oracle) Cluster() Cluster { return o.cluster }

// Pod returns the pod namespace/name, or nil.
func (o *Oracle) Pod(ref string) *Pod { return o.pods[ref] }

// Service returns the service namespace/name, or nil.
func (o *Oracle) Service(ref string) *Service { return o.services[ref] }

// HasNamespace reports whether the namespace is defined.
func (o *Oracle) HasNamespace(name string) bool {
	_, ok := o.namespaces[name]
	return ok
}

func (o *Oracle) nsLabels(name string) labels.Set {
	if set, ok := o.namespaces[name]; ok {
		return set
	}
	return labels.Set{MetadataNameLabel: name}
}

// Backends returns the pods a Service selects, sorted by name. A Service without selector has none.
func (o *Oracle) Backends(s *Service) []*Pod {
	if len(s.Selector) == 0 {
		return nil
	}
	sel := labels.SelectorFromSet(s.Selector)
	var out []*Pod
	for i := range o.cluster.Pods {
		p := &o.cluster.Pods[i]
		if p.Namespace == s.Namespace && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
