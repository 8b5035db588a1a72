// Package oracle evaluates Kubernetes NetworkPolicy (networking/v1) straight from the specification:
// given namespaces, pods (labels, IPs, named container ports), Services and policies, it answers for a
// source, a destination (pod, Service or IP), a port and a protocol whether the connection is allowed,
// per direction, and why (the policies selecting each side, the rule that allowed it, or the default
// deny).
//
// It is written independently of the datapath's compiler (datapath/policy) and must not import it: the
// two implementations check each other (datapath/policy/oracle_test.go), and the upstream e2e netpol
// suite's truth tables are ported as the oracle's own tests.
//
// Semantics, in the order the specification states them:
//   - A pod is isolated for ingress (egress) once any policy in its namespace selects it (podSelector)
//     with that policy type. policyTypes defaults to Ingress, plus Egress when the policy has egress rules.
//   - Isolated traffic is allowed when any rule of any selecting policy allows it (union, no order).
//   - A rule with no from/to allows all peers; with no ports, all ports and protocols.
//   - Peers are ORed; inside one peer namespaceSelector and podSelector are ANDed; a missing
//     namespaceSelector means the policy's namespace; a missing podSelector means every pod.
//   - ipBlock matches addresses (pod IPs included), minus its except prefixes.
//   - A port without protocol is TCP; a named port resolves on the destination pod's container ports
//     (for egress: the pod the traffic goes to); endPort makes a range.
//   - hostNetwork pods are not subject to policy and are matched as peers only by ipBlock (their IP is
//     the node's).
//   - Traffic to a Service is evaluated against each backend pod on its targetPort (policy sees traffic
//     after DNAT).
package oracle
