// Package hubbleapi serves Starlab's flows through Hubble's own gRPC API (observer.Observer from
// github.com/cilium/cilium/api/v1/observer), so that the real `hubble` CLI and Hubble clients work
// against the Starlab observer. It converts Starlab flows (internal/flow) into Hubble's Flow message
// and Hubble's FlowFilters into Starlab filters; the protos are Cilium's, never copied.
package hubbleapi

import (
	"net/netip"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Cilium's monitor message types (MessageTypeDrop, MessageTypeTrace, MessageTypePolicyVerdict of
// github.com/cilium/cilium/pkg/monitor/api, whose package pulls in Cilium's Kubernetes client, which
// does not build against this module's client-go), as Hubble reports them in Flow.event_type: a
// Starlab NEW event is a policy verdict on a new connection, DROP a drop notification, CLOSE a trace
// of the connection's end.
const (
	messageTypeDrop          = 1
	messageTypeTrace         = 4
	messageTypePolicyVerdict = 5
)

// EmitterName names Starlab in Flow.emitter.
const EmitterName = "Starlab"

// ToProto is f as Hubble's Flow message. What Hubble's fields cannot hold (the address and port
// dialled before service translation, a CLOSE event's packet and byte counts, a drop reason Hubble has
// no number for, an endpoint address other than the flow's) travels in Flow.extensions as a
// google.protobuf.Struct (a well-known type, so `hubble observe -o json` prints it), only when there is
// one: FromProto reads it back, so FromProto(ToProto(f)) is f.
func ToProto(f *flow.Flow, version string) *flowpb.Flow {
	out := &flowpb.Flow{
		Time:                  timestamppb.New(f.Time),
		Uuid:                  f.UUID,
		Emitter:               &flowpb.Emitter{Name: EmitterName, Version: version},
		Verdict:               verdictProto(f.Verdict),
		Type:                  flowpb.FlowType_L3_L4,
		NodeName:              f.NodeName,
		Source:                endpointProto(&f.Source),
		Destination:           endpointProto(&f.Destination),
		SourceService:         serviceProto(f.SourceService),
		DestinationService:    serviceProto(f.DestinationService),
		TrafficDirection:      directionProto(f.TrafficDirection),
		IsReply:               wrapperspb.Bool(f.IsReply),
		Reply:                 f.IsReply,
		TraceObservationPoint: flowpb.TraceObservationPoint(flowpb.TraceObservationPoint_value[f.TraceObservationPoint]),
		IP:                    &flowpb.IP{Source: f.IP.Source, Destination: f.IP.Destination, IpVersion: ipVersion(f.IP.Source)},
		L4:                    l4Proto(&f.L4),
	}
	switch {
	case f.EventType == flow.EventDrop && f.DropReasonDesc == flow.DropPolicyDenied:
		// A connection denied by policy is Cilium's policy-verdict event with verdict DROPPED: hubble
		// prints it as "DENIED", with --print-policy-names "DENIED BY <policy> (<kind>)".
		out.EventType = &flowpb.CiliumEventType{Type: messageTypePolicyVerdict}
	case f.EventType == flow.EventDrop:
		out.EventType = &flowpb.CiliumEventType{Type: messageTypeDrop}
	case f.EventType == flow.EventClose:
		out.EventType = &flowpb.CiliumEventType{Type: messageTypeTrace}
	default:
		out.EventType = &flowpb.CiliumEventType{Type: messageTypePolicyVerdict}
	}
	if f.Verdict == flow.VerdictDropped {
		reason := flowpb.DropReason(flowpb.DropReason_value[f.DropReasonDesc])
		out.DropReasonDesc = reason
		out.DropReason = uint32(reason)
		if out.EventType.Type == messageTypeDrop {
			out.EventType.SubType = int32(reason) // a drop notification's subtype is its reason
		}
		if reason == flowpb.DropReason_DROP_REASON_UNKNOWN && f.DropReasonDesc != "" {
			out.Summary = "drop reason " + f.DropReasonDesc // Starlab's own reasons have no Hubble number
		}
	}
	allowed, denied := policiesProto(f.AllowedBy), policiesProto(f.DeniedBy)
	if f.TrafficDirection == flow.DirectionEgress {
		out.EgressAllowedBy, out.EgressDeniedBy = allowed, denied
	} else {
		out.IngressAllowedBy, out.IngressDeniedBy = allowed, denied
	}
	if ext := extensions(f, out); ext != nil {
		out.Extensions = ext
	}
	return out
}

func verdictProto(v flow.Verdict) flowpb.Verdict {
	return flowpb.Verdict(flowpb.Verdict_value[string(v)])
}

func directionProto(d flow.TrafficDirection) flowpb.TrafficDirection {
	return flowpb.TrafficDirection(flowpb.TrafficDirection_value[string(d)])
}

func ipVersion(addr string) flowpb.IPVersion {
	a, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		return flowpb.IPVersion_IP_NOT_USED
	case a.Is4():
		return flowpb.IPVersion_IPv4
	}
	return flowpb.IPVersion_IPv6
}

func endpointProto(e *flow.Endpoint) *flowpb.Endpoint {
	out := &flowpb.Endpoint{Identity: e.Identity, Namespace: e.Namespace, PodName: e.PodName, Labels: e.Labels}
	if e.Workload != nil {
		out.Workloads = []*flowpb.Workload{{Name: e.Workload.Name, Kind: e.Workload.Kind}}
	}
	return out
}

func serviceProto(s *flow.Service) *flowpb.Service {
	if s == nil {
		return nil
	}
	return &flowpb.Service{Name: s.Name, Namespace: s.Namespace}
}

// policiesProto maps the deciding rules to Hubble's Policy: Kind is NetworkPolicy,
// ClusterNetworkPolicy or DefaultDeny; Hubble has no tier or rule fields, so they travel as
// labels "tier=Admin", "rule=<name or index>", "action=Deny" (as Cilium puts its rule labels there).
func policiesProto(ps []flow.Policy) []*flowpb.Policy {
	var out []*flowpb.Policy
	for _, p := range ps {
		pp := &flowpb.Policy{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
		for _, l := range [...]struct{ k, v string }{{"tier", p.Tier}, {"rule", p.Rule}, {"action", p.Action}} {
			if l.v != "" {
				pp.Labels = append(pp.Labels, l.k+"="+l.v)
			}
		}
		out = append(out, pp)
	}
	return out
}

func l4Proto(l *flow.L4) *flowpb.Layer4 {
	switch l.Protocol {
	case flow.ProtoTCP:
		t := &flowpb.TCP{SourcePort: uint32(l.SourcePort), DestinationPort: uint32(l.DestinationPort)}
		if l.Flags != nil {
			t.Flags = &flowpb.TCPFlags{FIN: l.Flags.FIN, SYN: l.Flags.SYN, RST: l.Flags.RST, PSH: l.Flags.PSH,
				ACK: l.Flags.ACK, URG: l.Flags.URG, ECE: l.Flags.ECE, CWR: l.Flags.CWR}
		}
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: t}}
	case flow.ProtoUDP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: uint32(l.SourcePort), DestinationPort: uint32(l.DestinationPort)}}}
	case flow.ProtoSCTP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_SCTP{SCTP: &flowpb.SCTP{SourcePort: uint32(l.SourcePort), DestinationPort: uint32(l.DestinationPort)}}}
	case flow.ProtoICMPv4:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{}}}
	}
	return nil
}
