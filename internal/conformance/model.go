package conformance

import (
	"maps"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Case is one generated test: a sequence of desired states, each applied, programmed and probed.
type Case struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags"`
	Steps []Step   `json:"steps"`
}

// Step is one desired state of the universe. Policies is the complete set: policies of the previous
// state that are missing here are deleted. Label maps replace the base labels of the pods and
// namespaces they name (nil: base labels).
type Step struct {
	Name     string                        `json:"name"`
	Policies []*networkingv1.NetworkPolicy `json:"policies,omitempty"`
	// ClusterPolicies is the complete set of ClusterNetworkPolicies, like Policies.
	ClusterPolicies []*policyv1beta1.ClusterNetworkPolicy `json:"clusterPolicies,omitempty"`
	PodLabels       map[string]map[string]string          `json:"podLabels,omitempty"`       // ns/pod -> labels
	NamespaceLabels map[string]map[string]string          `json:"namespaceLabels,omitempty"` // ns -> labels
}

// HasTag reports whether c carries tag.
func (c *Case) HasTag(tag string) bool { return slices.Contains(c.Tags, tag) }

// State is what the cluster holds for one step: every pod's and namespace's labels, the policies by
// namespace/name and the cluster policies by name.
type State struct {
	PodLabels       map[string]map[string]string
	NamespaceLabels map[string]map[string]string
	Policies        map[string]*networkingv1.NetworkPolicy
	ClusterPolicies map[string]*policyv1beta1.ClusterNetworkPolicy
}

// StateOf is the full state of step s over the base universe.
func (u *Universe) StateOf(s Step) State {
	st := State{PodLabels: map[string]map[string]string{}, NamespaceLabels: map[string]map[string]string{}, Policies: map[string]*networkingv1.NetworkPolicy{},
		ClusterPolicies: map[string]*policyv1beta1.ClusterNetworkPolicy{}}
	for _, ns := range u.Namespaces {
		st.NamespaceLabels[ns] = u.NamespaceBaseLabels(ns)
		if l, ok := s.NamespaceLabels[ns]; ok {
			st.NamespaceLabels[ns] = maps.Clone(l)
		}
	}
	for _, p := range u.Pods() {
		st.PodLabels[p] = u.PodBaseLabels(p)
		if l, ok := s.PodLabels[p]; ok {
			st.PodLabels[p] = maps.Clone(l)
		}
		_, name, _ := strings.Cut(p, "/")
		st.PodLabels[p][PodIDLabel] = name
	}
	for _, np := range s.Policies {
		st.Policies[np.Namespace+"/"+np.Name] = np
	}
	for _, cnp := range s.ClusterPolicies {
		st.ClusterPolicies[cnp.Name] = cnp
	}
	return st
}

// PolicyNames returns the namespace/name of every policy of the state, sorted, then cnp/NAME of every
// cluster policy, sorted.
func (s State) PolicyNames() []string {
	out := slices.Collect(maps.Keys(s.Policies))
	sort.Strings(out)
	for _, name := range s.ClusterPolicyNames() {
		out = append(out, "cnp/"+name)
	}
	return out
}

// ClusterPolicyNames returns the names of the state's cluster policies, sorted.
func (s State) ClusterPolicyNames() []string {
	out := slices.Collect(maps.Keys(s.ClusterPolicies))
	sort.Strings(out)
	return out
}
