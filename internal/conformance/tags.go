package conformance

// Tags name the policy features a case uses; --include and --exclude select cases by them.
const (
	TagIngress           = "ingress"
	TagEgress            = "egress"
	TagPodSelector       = "pod-selector"
	TagNamespaceSelector = "namespace-selector"
	TagNsAndPod          = "ns-and-pod-selector"
	TagMatchExpressions  = "match-expressions"
	TagIPBlock           = "ipblock"
	TagIPBlockExcept     = "ipblock-except"
	TagMultiPeer         = "multi-peer"
	TagAllPorts          = "all-ports"
	TagPort              = "port"
	TagNamedPort         = "named-port"
	TagEndPort           = "end-port"
	TagProtocolOnly      = "protocol-only"
	TagTCP               = "tcp"
	TagUDP               = "udp"
	TagSCTP              = "sctp"
	TagPolicyTypes       = "policy-types"
	TagMultiplePolicies  = "multiple-policies"
	TagDenyAll           = "deny-all"
	TagAllowAll          = "allow-all"
	TagUpdate            = "update"
	TagUpdatePolicy      = "update-policy"
	TagUpdatePodLabel    = "update-pod-label"
	TagUpdateNsLabel     = "update-namespace-label"
	TagDeletePolicy      = "delete-policy"
	// TagClusterNetworkPolicy: the case has ClusterNetworkPolicies (Admin and Baseline tiers).
	TagClusterNetworkPolicy = "cluster-network-policy"
)

// AllTags lists every tag a generator may use, for --help and input checks.
func AllTags() []string {
	return []string{TagIngress, TagEgress, TagPodSelector, TagNamespaceSelector, TagNsAndPod, TagMatchExpressions,
		TagIPBlock, TagIPBlockExcept, TagMultiPeer, TagAllPorts, TagPort, TagNamedPort, TagEndPort, TagProtocolOnly,
		TagTCP, TagUDP, TagSCTP, TagPolicyTypes, TagMultiplePolicies, TagDenyAll, TagAllowAll, TagUpdate,
		TagUpdatePolicy, TagUpdatePodLabel, TagUpdateNsLabel, TagDeletePolicy, TagClusterNetworkPolicy}
}
