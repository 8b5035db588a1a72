package oracle

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// MetadataNameLabel is the label the API server puts on every namespace (its name).
const MetadataNameLabel = "kubernetes.io/metadata.name"

// Namespace is a namespace and its labels. MetadataNameLabel is added when missing.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ContainerPort is a port a pod's container declares; Name makes it usable as a named port.
type ContainerPort struct {
	Name     string          `json:"name,omitempty"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"` // empty means TCP
}

// Pod is what policy evaluation needs to know about a pod.
type Pod struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	IP          netip.Addr        `json:"ip,omitzero"`
	HostNetwork bool              `json:"hostNetwork,omitempty"`
	Ports       []ContainerPort   `json:"ports,omitempty"`
	// IPAssigned marks an IP the loader made up (offline manifests carry none).
	IPAssigned bool `json:"ipAssigned,omitempty"`
}

// Ref returns namespace/name.
func (p *Pod) Ref() string { return p.Namespace + "/" + p.Name }

// ServicePort is one port of a Service. An empty TargetPort means Port.
type ServicePort struct {
	Name       string             `json:"name,omitempty"`
	Port       int32              `json:"port"`
	Protocol   corev1.Protocol    `json:"protocol"` // empty means TCP
	TargetPort intstr.IntOrString `json:"targetPort"`
}

// Service is a Service with a selector; its backends are the pods of its namespace the selector
// matches. A Service without selector has no backends here.
type Service struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Selector  map[string]string `json:"selector,omitempty"`
	ClusterIP netip.Addr        `json:"clusterIP,omitzero"`
	Ports     []ServicePort     `json:"ports,omitempty"`
}

// Ref returns namespace/name.
func (s *Service) Ref() string { return s.Namespace + "/" + s.Name }

// External is an address outside the cluster's pods (a host, the internet, a node), optionally named.
type External struct {
	Name string     `json:"name,omitempty"`
	IP   netip.Addr `json:"ip"`
}

// Node is a cluster node: its labels and addresses, for the nodes peer of ClusterNetworkPolicy egress
// rules (hostNetwork pods have their node's IP).
type Node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	IPs    []netip.Addr      `json:"ips,omitempty"`
}

// Cluster is the whole input of the oracle. Slices may be in any order.
type Cluster struct {
	Namespaces []Namespace                   `json:"namespaces"`
	Pods       []Pod                         `json:"pods"`
	Services   []Service                     `json:"services,omitempty"`
	Externals  []External                    `json:"externals,omitempty"`
	Nodes      []Node                        `json:"nodes,omitempty"`
	Policies   []*networkingv1.NetworkPolicy `json:"policies,omitempty"`
	// ClusterPolicies are ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1): the Admin tier before
	// NetworkPolicy, the Baseline tier after it.
	ClusterPolicies []*policyv1beta1.ClusterNetworkPolicy `json:"clusterPolicies,omitempty"`
}
