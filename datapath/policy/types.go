package policy

import (
	"net/netip"
	"strconv"

	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

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
	// EndpointIngressTiers and EndpointEgressTiers: ClusterNetworkPolicy rules apply to the
	// direction; the datapath walks the tiers (Decide models it).
	EndpointIngressTiers = maps.EndpointIngressTiers
	EndpointEgressTiers  = maps.EndpointEgressTiers
)

// ClusterNetworkPolicy actions (sl_tier_hit.action).
const (
	CNPAccept = maps.CNPAccept
	CNPDeny   = maps.CNPDeny
	CNPPass   = maps.CNPPass
)

// PolicyKind is the kind of object a policy id names.
type PolicyKind string

// Policy kinds.
const (
	KindNetworkPolicy        PolicyKind = "NetworkPolicy"
	KindClusterNetworkPolicy PolicyKind = "ClusterNetworkPolicy"
)

// Tier is where in the evaluation order a policy sits.
type Tier uint8

// Tiers, in evaluation order. TierNone: nothing decided (not enforced: default allow).
const (
	TierNone Tier = iota
	TierAdmin
	TierNetworkPolicy
	TierBaseline
)

var tierNames = [...]string{TierNone: "", TierAdmin: "Admin", TierNetworkPolicy: "NetworkPolicy", TierBaseline: "Baseline"}

func (t Tier) String() string {
	if int(t) < len(tierNames) {
		return tierNames[t]
	}
	return "tier(" + strconv.Itoa(int(t)) + ")"
}

// PodRef names a pod.
type PodRef struct {
	Namespace string
	Name      string
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// PolicyRef names a NetworkPolicy or a ClusterNetworkPolicy and carries its numeric id (>= 1).
// A zero Kind is a NetworkPolicy. ClusterNetworkPolicies have no Namespace; their Tier is
// TierAdmin or TierBaseline, a NetworkPolicy's TierNetworkPolicy (or zero).
type PolicyRef struct {
	ID        uint32
	Namespace string
	Name      string
	Kind      PolicyKind
	Tier      Tier
}

// IsCluster reports whether the ref names a ClusterNetworkPolicy.
func (r PolicyRef) IsCluster() bool { return r.Kind == KindClusterNetworkPolicy }

func (r PolicyRef) String() string {
	if r.IsCluster() {
		return "cnp/" + r.Name
	}
	return r.Namespace + "/" + r.Name
}

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
	Name   string
	IPs    []netip.Addr
	Labels map[string]string // for the ClusterNetworkPolicy nodes peer
}

// Input is everything Compile needs. Slices may be in any order; the result
// does not depend on it.
type Input struct {
	Pods       []Pod
	Namespaces []Namespace
	Nodes      []Node
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies (Admin and Baseline tiers).
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
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
//
// ClusterNetworkPolicy problems (Policy.Kind KindClusterNetworkPolicy) fail closed per rule as the
// API defines instead: an Accept rule that cannot be represented matches nothing, a Deny or Pass
// rule that cannot be represented denies all traffic at its precedence. Reason is a short,
// bounded name for metrics (ProblemReason*).
type Problem struct {
	Policy   *PolicyRef
	Endpoint *PodRef
	Message  string
	Reason   string
}

// Problem reasons of ClusterNetworkPolicies (bounded: metric label values).
const (
	ProblemReasonPriority        = "priority-out-of-range"
	ProblemReasonTier            = "unknown-tier"
	ProblemReasonAction          = "unknown-action"
	ProblemReasonCIDR            = "bad-cidr"
	ProblemReasonNamedPort       = "named-port-missing"
	ProblemReasonSelector        = "bad-selector"
	ProblemReasonUnrepresentable = "unrepresentable"
)

func (p Problem) String() string {
	switch {
	case p.Policy != nil && p.Policy.IsCluster():
		return "clusternetworkpolicy " + p.Policy.Name + ": " + p.Message
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
	// ClusterRules names the rules of each ClusterNetworkPolicy per direction (by policy id;
	// index = rule index; "" when the rule has no name), for attribution.
	ClusterRules map[uint32][3][]string
	// Overlaps lists pairs of ClusterNetworkPolicies of the same tier and priority whose
	// subjects share a pod: allowed but ambiguous (this compiler orders them by name).
	Overlaps []Overlap
}

// Overlap is two ClusterNetworkPolicies with the same tier and priority selecting a common pod.
type Overlap struct {
	Tier     Tier
	Priority int32
	A, B     PolicyRef // A.Name < B.Name; A takes precedence
	Pod      PodRef    // one pod both select
}
