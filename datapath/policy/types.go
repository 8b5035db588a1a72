package policy

import (
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/starlab-dev/starlab/datapath/maps"
)

// The values below are the datapath's (bpf/lib/sl_types.h through datapath/maps), under the names the
// compiler uses.

// Directions (key field dir of sl_policy and sl_cidr_policy).
const (
	DirIngress = maps.Ingress
	DirEgress  = maps.Egress
)

// Actions (sl_policy_val.action).
const (
	ActionAllow  = maps.ActionAllow
	ActionExcept = maps.ActionExcept // sl_cidr_policy only: this prefix is excepted, no allow from this map
)

// IP protocol numbers used in map keys. ProtoAny (0) is the wildcard.
const (
	ProtoAny  = maps.ProtoAny
	ProtoTCP  = maps.ProtoTCP
	ProtoUDP  = maps.ProtoUDP
	ProtoSCTP = maps.ProtoSCTP
)

// Reserved identities (sl_ipcache values, sl_policy peer_id).
const (
	IdentityAny        = maps.IdentityAny   // wildcard peer in policy keys
	IdentityHost       = maps.IdentityHost  // the local node
	IdentityWorld      = maps.IdentityWorld // anything not in the ipcache
	IdentityUnmanaged  = maps.IdentityUnmanaged
	IdentityRemoteNode = maps.IdentityRemoteNode
	// FirstPodIdentity is the lowest identity handed out for a namespace + pod label set.
	FirstPodIdentity = maps.IdentityFirstPod
)

// Endpoint flags (sl_endpoint.flags).
const (
	EndpointIngressEnforced = maps.EndpointIngressEnforced
	EndpointEgressEnforced  = maps.EndpointEgressEnforced
	EndpointPolicyError     = maps.EndpointPolicyError
	// EndpointPolicyWriteFailed marks a deny-all (EndpointPolicyError) endpoint whose policy could
	// not be written (FitCapacity, DenyAll): the datapath drops with POLICY_WRITE_FAILED.
	EndpointPolicyWriteFailed = maps.EndpointPolicyWriteFailed
)

// PodRef names a pod.
type PodRef struct {
	Namespace string
	Name      string
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// PolicyRef names a NetworkPolicy and carries its numeric id (>= 1).
type PolicyRef struct {
	ID        uint32
	Namespace string
	Name      string
}

func (r PolicyRef) String() string { return r.Namespace + "/" + r.Name }

// ContainerPort is a port a pod's container declares (for named ports).
type ContainerPort struct {
	Name     string
	Port     uint16
	Protocol maps.Proto // ProtoTCP, ProtoUDP or ProtoSCTP
}

// Pod is what the compiler needs to know about a pod. Use PodFromK8s to
// build it from a corev1.Pod.
type Pod struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	IP          netip.Addr // invalid when the pod has no IP (yet, or any more)
	Node        string
	HostNetwork bool // host-network pods get no identity and no ipcache entry
	// Terminating: the pod is being deleted (deletionTimestamp set). It keeps its IP and identity;
	// a pod that is not terminating wins an address both claim (the address was released and reused).
	Terminating bool
	Ports       []ContainerPort
}

// Ref returns the pod's namespace/name.
func (p *Pod) Ref() PodRef { return PodRef{Namespace: p.Namespace, Name: p.Name} }

// Namespace is a namespace and its labels. The label
// kubernetes.io/metadata.name is added by the compiler when missing (the API
// server always sets it).
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Node is a cluster node and its addresses. The local node's addresses map to
// IdentityHost, every other node's to IdentityRemoteNode.
type Node struct {
	Name string
	IPs  []netip.Addr
}

// Input is everything Compile needs. Slices may be in any order; the result
// does not depend on it.
type Input struct {
	Pods       []Pod
	Namespaces []Namespace
	Nodes      []Node
	Policies   []*networkingv1.NetworkPolicy
	// LocalNode is the name of the node the agent runs on.
	LocalNode string
	// LocalEndpoints maps each pod on this node that has a datapath endpoint
	// to its ep_id (the host veth ifindex).
	LocalEndpoints map[PodRef]uint32
	// Alloc keeps identities and policy ids stable across compilations. Nil
	// means a fresh allocator: numbering is then a pure function of the input.
	Alloc *Allocator
}

// Identity describes a pod identity: one namespace plus one pod label set.
type Identity struct {
	ID        uint32
	Namespace string
	Labels    map[string]string
}

// Endpoint is the compiled state of one local endpoint.
type Endpoint struct {
	EpID     uint32
	Pod      PodRef
	Identity uint32             // for sl_endpoints.identity
	Flags    maps.EndpointFlags // EndpointIngressEnforced | EndpointEgressEnforced | EndpointPolicyError
	// Policy holds the sl_policy entries, sorted by key.
	Policy []maps.PolicyEntry
	// CIDR holds the sl_cidr_policy entries, sorted by key.
	CIDR []maps.CIDRPolicyEntry
	// IngressPolicies and EgressPolicies list the policies selecting the
	// endpoint per direction (sorted by namespace/name), for "denied_by".
	IngressPolicies []PolicyRef
	EgressPolicies  []PolicyRef
}

// Problem is something the compiler could not represent. When Policy is set,
// every local endpoint the policy selects has EndpointPolicyError. When only
// Endpoint is set, the problem concerns that endpoint alone.
type Problem struct {
	Policy   *PolicyRef
	Endpoint *PodRef
	Message  string
}

func (p Problem) String() string {
	switch {
	case p.Policy != nil:
		return "networkpolicy " + p.Policy.String() + ": " + p.Message
	case p.Endpoint != nil:
		return "endpoint " + p.Endpoint.String() + ": " + p.Message
	}
	return p.Message
}

// Result is the compiled form of an Input.
type Result struct {
	// IPCache holds one /32 per pod IP (pod identity) and per node IP (host
	// or remote-node), sorted by prefix. ipBlock CIDRs need no entries.
	IPCache []maps.IPCacheEntry
	// Endpoints is keyed by ep_id.
	Endpoints map[uint32]*Endpoint
	// Policies is the policy table: id (>= 1) -> namespace/name.
	Policies map[uint32]PolicyRef
	// Identities describes every pod identity in use.
	Identities map[uint32]Identity
	// Problems lists what could not be represented (fail closed).
	Problems []Problem
}
