// Package flow is Starlab's flow model: the Hubble-like Flow record the agents emit and the observer
// merges, the filters users query it with (Hubble semantics), NDJSON encoding, a bounded ring store with
// follow subscriptions, a time-ordered merge of several streams, and the streaming HTTP handler.
package flow

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// Verdict is what the datapath did with the packet.
type Verdict string

// Verdicts (Hubble names).
const (
	VerdictForwarded  Verdict = "FORWARDED"
	VerdictDropped    Verdict = "DROPPED"
	VerdictError      Verdict = "ERROR"
	VerdictAudit      Verdict = "AUDIT"
	VerdictRedirected Verdict = "REDIRECTED"
	VerdictTraced     Verdict = "TRACED"
	VerdictTranslated Verdict = "TRANSLATED"
)

// Verdicts lists every valid verdict.
var verdicts = []string{
	string(VerdictForwarded), string(VerdictDropped), string(VerdictError), string(VerdictAudit),
	string(VerdictRedirected), string(VerdictTraced), string(VerdictTranslated),
}

// EventType is the kind of datapath event that produced the flow.
type EventType string

// Event types (ARCHITECTURE.md "Flow events").
const (
	EventNew   EventType = "NEW"
	EventDrop  EventType = "DROP"
	EventClose EventType = "CLOSE"
)

var eventTypes = []string{string(EventNew), string(EventDrop), string(EventClose)}

// TrafficDirection is the direction relative to the endpoint whose policy applies.
type TrafficDirection string

// Traffic directions (Hubble names).
const (
	DirectionIngress TrafficDirection = "INGRESS"
	DirectionEgress  TrafficDirection = "EGRESS"
	DirectionUnknown TrafficDirection = "TRAFFIC_DIRECTION_UNKNOWN"
)

var directions = []string{string(DirectionIngress), string(DirectionEgress), string(DirectionUnknown)}

// Observation points (trace_observation_point).
const (
	ObsFromEndpoint = "FROM_ENDPOINT"
	ObsToEndpoint   = "TO_ENDPOINT"
	ObsFromNetwork  = "FROM_NETWORK"
	ObsToNetwork    = "TO_NETWORK"
)

// Drop reasons (drop_reason_desc), ARCHITECTURE.md "Flow events": the names of enum sl_drop_reason
// (bpf/lib/sl_types.h) as datapath/flowevent spells them.
const (
	DropPolicyDenied           = flowevent.DropNamePolicyDenied
	DropServiceBackendNotFound = flowevent.DropNameServiceBackendNotFound
	DropInvalidSourceIP        = flowevent.DropNameInvalidSourceIP
	DropCTMapInsertionFailed   = flowevent.DropNameCTMapInsertionFailed
	DropPolicyUnrepresentable  = flowevent.DropNamePolicyUnrepresentable
	DropUnknownEndpoint        = flowevent.DropNameUnknownEndpoint
	DropInvalidPacket          = flowevent.DropNameInvalidPacket
	DropFIBLookupFailed        = flowevent.DropNameFIBLookupFailed
	DropPolicyWriteFailed      = flowevent.DropNamePolicyWriteFailed
	DropCTTupleInUse           = flowevent.DropNameCTTupleInUse
	DropFragNotFound           = flowevent.DropNameFragNotFound
	DropEndpointGone           = flowevent.DropNameEndpointGone
	DropLBSourceRange          = flowevent.DropNameLBSourceRange
)

// dropReasons is every drop reason the datapath reports (filter validation).
var dropReasons = flowevent.DropReasonNames()

// Protocols (l4.protocol).
const (
	ProtoTCP    = "TCP"
	ProtoUDP    = "UDP"
	ProtoICMPv4 = "ICMPv4"
	ProtoSCTP   = "SCTP"
)

var protocols = []string{ProtoTCP, ProtoUDP, ProtoICMPv4, ProtoSCTP}

// ProtocolName is the l4.protocol name of an IP protocol number (enum sl_proto), the number itself
// for a protocol without a name.
func ProtocolName(proto uint8) string {
	switch maps.Proto(proto) {
	case maps.ProtoTCP:
		return ProtoTCP
	case maps.ProtoUDP:
		return ProtoUDP
	case maps.ProtoICMP:
		return ProtoICMPv4
	case maps.ProtoSCTP:
		return ProtoSCTP
	}
	return strconv.Itoa(int(proto))
}

// Policy kinds in allowed_by / denied_by.
const (
	PolicyKindNetworkPolicy = "NetworkPolicy"
	// PolicyKindClusterNetworkPolicy: a ClusterNetworkPolicy (policy.networking.k8s.io) rule of
	// the Admin or Baseline tier.
	PolicyKindClusterNetworkPolicy = "ClusterNetworkPolicy"
	PolicyKindDefaultDeny          = "DefaultDeny"
)

// Flow is one observed network event.
type Flow struct {
	Time                  time.Time        `json:"time"`
	UUID                  string           `json:"uuid"`
	Verdict               Verdict          `json:"verdict"`
	DropReasonDesc        string           `json:"drop_reason_desc,omitempty"`
	EventType             EventType        `json:"event_type"`
	IP                    IP               `json:"ip"`
	L4                    L4               `json:"l4"`
	Source                Endpoint         `json:"source"`
	Destination           Endpoint         `json:"destination"`
	NodeName              string           `json:"node_name"`
	SourceService         *Service         `json:"source_service,omitempty"`
	DestinationService    *Service         `json:"destination_service,omitempty"`
	TrafficDirection      TrafficDirection `json:"traffic_direction"`
	IsReply               bool             `json:"is_reply"`
	TraceObservationPoint string           `json:"trace_observation_point,omitempty"`
	AllowedBy             []Policy         `json:"allowed_by,omitempty"`
	DeniedBy              []Policy         `json:"denied_by,omitempty"`
	Packets               uint64           `json:"packets,omitempty"`
	Bytes                 uint64           `json:"bytes,omitempty"`
}

// IP is the layer-3 part of a flow. OrigDestination is the address dialled before service translation.
type IP struct {
	Source          string `json:"source"`
	Destination     string `json:"destination"`
	OrigDestination string `json:"orig_destination,omitempty"`
}

// L4 is the layer-4 part of a flow.
type L4 struct {
	Protocol            string    `json:"protocol"`
	SourcePort          uint16    `json:"source_port,omitempty"`
	DestinationPort     uint16    `json:"destination_port,omitempty"`
	OrigDestinationPort uint16    `json:"orig_destination_port,omitempty"`
	Flags               *TCPFlags `json:"flags,omitempty"`
}

// TCPFlags are the TCP flags seen on the packet (Hubble spelling).
type TCPFlags struct {
	FIN bool `json:"FIN,omitempty"`
	SYN bool `json:"SYN,omitempty"`
	RST bool `json:"RST,omitempty"`
	PSH bool `json:"PSH,omitempty"`
	ACK bool `json:"ACK,omitempty"`
	URG bool `json:"URG,omitempty"`
	ECE bool `json:"ECE,omitempty"`
	CWR bool `json:"CWR,omitempty"`
}

// String renders the set flags as "SYN, ACK".
func (f *TCPFlags) String() string {
	if f == nil {
		return ""
	}
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{f.SYN, "SYN"}, {f.FIN, "FIN"}, {f.RST, "RST"}, {f.PSH, "PSH"}, {f.ACK, "ACK"}, {f.URG, "URG"}, {f.ECE, "ECE"}, {f.CWR, "CWR"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ", ")
}

// Endpoint is one side of a flow.
type Endpoint struct {
	Identity  uint32    `json:"identity"`
	Namespace string    `json:"namespace,omitempty"`
	PodName   string    `json:"pod_name,omitempty"`
	Labels    []string  `json:"labels,omitempty"`
	Workload  *Workload `json:"workload,omitempty"`
	IP        string    `json:"ip,omitempty"`
}

// Workload is the controller owning a pod (Deployment, StatefulSet, DaemonSet, ...).
type Workload struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Service names a Kubernetes Service.
type Service struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// Policy names the rule that decided a flow. Tier is the evaluation tier (TierAdmin,
// TierNetworkPolicy, TierBaseline); Rule the rule's name, or its index in the direction's list;
// Action what the rule did (ActionAccept, ActionDeny, ActionPass; a NetworkPolicy rule allows).
// An Admin Pass is listed before the rule that then decided.
type Policy struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Tier      string `json:"tier,omitempty"`
	Rule      string `json:"rule,omitempty"`
	Action    string `json:"action,omitempty"`
}

// SamePolicy reports whether o names the same policy as p (kind, namespace, name), whatever the
// tier, rule and action each carries.
func (p Policy) SamePolicy(o Policy) bool {
	return p.Kind == o.Kind && p.Namespace == o.Namespace && p.Name == o.Name
}

// Policy tiers (Policy.Tier).
const (
	TierAdmin         = "Admin"
	TierNetworkPolicy = "NetworkPolicy"
	TierBaseline      = "Baseline"
)

// Rule actions (Policy.Action).
const (
	ActionAccept = "Accept"
	ActionDeny   = "Deny"
	ActionPass   = "Pass"
	ActionAllow  = "Allow"
)

// String renders a policy as kind/namespace/name; a ClusterNetworkPolicy as kind/name with its
// rule and action: "ClusterNetworkPolicy/deny-all[rule 0 Deny]".
func (p Policy) String() string {
	if p.Name == "" {
		return p.Kind
	}
	if p.Kind != PolicyKindClusterNetworkPolicy {
		return p.Kind + "/" + p.Namespace + "/" + p.Name
	}
	s := p.Kind + "/" + p.Name
	if p.Rule != "" || p.Action != "" {
		s += "[rule " + p.Rule
		if p.Action != "" {
			s += " " + p.Action
		}
		s += "]"
	}
	return s
}

// String renders an endpoint as namespace/pod, or its IP when it is not a pod.
func (e Endpoint) String() string {
	if e.PodName != "" {
		return e.Namespace + "/" + e.PodName
	}
	if e.IP != "" {
		return e.IP
	}
	return fmt.Sprintf("identity:%d", e.Identity)
}

// Reserved identities (enum sl_identity, ARCHITECTURE.md "Maps").
const (
	IdentityHost       = maps.IdentityHost
	IdentityWorld      = maps.IdentityWorld
	IdentityUnmanaged  = maps.IdentityUnmanaged
	IdentityRemoteNode = maps.IdentityRemoteNode
)

// ReservedIdentityName names a reserved identity ("host", "world", ...) or returns "".
func ReservedIdentityName(id uint32) string {
	switch id {
	case IdentityHost:
		return "host"
	case IdentityWorld:
		return "world"
	case IdentityUnmanaged:
		return "unmanaged"
	case IdentityRemoteNode:
		return "remote-node"
	}
	return ""
}
