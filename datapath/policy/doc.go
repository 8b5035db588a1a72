// Package policy compiles Kubernetes NetworkPolicies (networking/v1) into the
// map entries the Starlab datapath enforces, and diffs them against what the
// maps hold. It is pure Go: no kernel calls, no API server. Entries are the
// datapath/maps types (maps.PolicyEntry, maps.CIDRPolicyEntry,
// maps.IPCacheEntry, maps.EndpointFlags), the one Go form of each map entry.
//
// A policy's path through the package reads top to bottom:
//
//	objects (Input) -> identities (Allocator) -> rules (per local endpoint
//	and direction) -> map entries (Result) -> the maps' content (Desired)
//	-> the writes from what is programmed (Diff) -> Changes.Apply(Writer).
//
// The agent gathers pods, namespaces, nodes and policies, calls Compile, and
// applies Diff(programmed, Desired(result, endpoints)) through a Writer
// (*maps.Maps). Changes.Apply orders the writes so that no state in between
// allows what neither the old nor the new state allows.
//
// Semantics follow networking/v1 exactly: default deny per direction once a
// policy selects a pod for it, union of all selecting policies, peers ORed,
// podSelector and namespaceSelector inside one peer ANDed, named ports
// resolved on the destination pod (egress: per peer identity in sl_policy,
// or per pod IP as /32 sl_cidr_policy entries when the pods of one identity
// name the port differently or the peer is an ipBlock), endPort ranges as aligned port prefixes,
// ipBlock with except matched against raw IPs (pod IPs included).
//
// The compiler fails closed: a policy it cannot represent exactly is reported
// in Result.Problems and every local endpoint it selects gets
// EndpointPolicyError (the datapath then drops everything for that endpoint
// with reason POLICY_UNREPRESENTABLE). It never emits an entry that would
// allow traffic the NetworkPolicy objects deny.
//
// Result.Decide evaluates the compiled entries the way the BPF programs do,
// so tests can check semantics end-to-end on the compiled form.
package policy
