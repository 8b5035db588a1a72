package hubbleapi

import (
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// The keys of the Starlab fields in Flow.extensions (a google.protobuf.Struct), each present only when
// Hubble's own fields do not already say it.
const (
	extOrigDestination     = "orig_destination"
	extOrigDestinationPort = "orig_destination_port"
	extPackets             = "packets"
	extBytes               = "bytes"
	extDropReasonDesc      = "drop_reason_desc"
	extEventType           = "event_type"
	extVerdict             = "verdict"
	extTrafficDirection    = "traffic_direction"
	extObservationPoint    = "trace_observation_point"
	extProtocol            = "protocol"
	extSourcePort          = "source_port"
	extDestinationPort     = "destination_port"
	extTCPFlags            = "tcp_flags"
	extSourceIP            = "source_ip"
	extDestinationIP       = "destination_ip"
)

// structTypeURL is the type URL of a google.protobuf.Struct in an Any.
const structTypeURL = "type.googleapis.com/google.protobuf.Struct"

// extensions is what of f the Hubble fields of out do not carry, as a Struct in an Any; nil when
// they carry all of it (most flows). Each check compares f with what FromProto reads from out.
func extensions(f *flow.Flow, out *flowpb.Flow) *anypb.Any {
	var fields map[string]*structpb.Value
	set := func(k string, v *structpb.Value) {
		if fields == nil {
			fields = map[string]*structpb.Value{}
		}
		fields[k] = v
	}
	str := func(k, v string) { set(k, structpb.NewStringValue(v)) }
	num := func(k string, v uint64) { set(k, structpb.NewNumberValue(float64(v))) }
	if f.IP.OrigDestination != "" {
		str(extOrigDestination, f.IP.OrigDestination)
	}
	if f.L4.OrigDestinationPort != 0 {
		num(extOrigDestinationPort, uint64(f.L4.OrigDestinationPort))
	}
	if f.Packets != 0 {
		num(extPackets, f.Packets)
	}
	if f.Bytes != 0 {
		num(extBytes, f.Bytes)
	}
	if dropReasonFromProto(out) != f.DropReasonDesc {
		str(extDropReasonDesc, f.DropReasonDesc)
	}
	if eventTypeFromProto(out) != f.EventType {
		str(extEventType, string(f.EventType))
	}
	if verdictFromProto(out.GetVerdict()) != f.Verdict {
		str(extVerdict, string(f.Verdict))
	}
	if directionFromProto(out.GetTrafficDirection()) != f.TrafficDirection {
		str(extTrafficDirection, string(f.TrafficDirection))
	}
	if observationPointFromProto(out.GetTraceObservationPoint()) != f.TraceObservationPoint {
		str(extObservationPoint, f.TraceObservationPoint)
	}
	var back flow.L4
	l4FromProto(out.GetL4(), &back)
	if back.Protocol != f.L4.Protocol {
		str(extProtocol, f.L4.Protocol)
	}
	if back.SourcePort != f.L4.SourcePort {
		num(extSourcePort, uint64(f.L4.SourcePort))
	}
	if back.DestinationPort != f.L4.DestinationPort {
		num(extDestinationPort, uint64(f.L4.DestinationPort))
	}
	if (back.Flags == nil) != (f.L4.Flags == nil) {
		str(extTCPFlags, f.L4.Flags.String())
	}
	if f.Source.IP != f.IP.Source {
		str(extSourceIP, f.Source.IP)
	}
	if f.Destination.IP != f.IP.Destination {
		str(extDestinationIP, f.Destination.IP)
	}
	if fields == nil {
		return nil
	}
	a := &anypb.Any{}
	// Deterministic: the same flow is the same bytes (a Struct is a map).
	if err := anypb.MarshalFrom(a, &structpb.Struct{Fields: fields}, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil // a Struct of strings and numbers always marshals
	}
	return a
}

// FromProto is Hubble's Flow message as a Starlab flow: the inverse of ToProto (extensions
// included), so ToProto(FromProto(x)) keeps every field a Starlab server sent. A flow from another
// Hubble server (Cilium) reads as far as Starlab's model goes: L7, DNS and cluster fields have no place.
func FromProto(pb *flowpb.Flow) *flow.Flow {
	f := &flow.Flow{
		UUID:                  pb.GetUuid(),
		Verdict:               verdictFromProto(pb.GetVerdict()),
		DropReasonDesc:        dropReasonFromProto(pb),
		EventType:             eventTypeFromProto(pb),
		IP:                    flow.IP{Source: pb.GetIP().GetSource(), Destination: pb.GetIP().GetDestination()},
		NodeName:              pb.GetNodeName(),
		SourceService:         serviceFromProto(pb.GetSourceService()),
		DestinationService:    serviceFromProto(pb.GetDestinationService()),
		TrafficDirection:      directionFromProto(pb.GetTrafficDirection()),
		IsReply:               pb.GetIsReply().GetValue(),
		TraceObservationPoint: observationPointFromProto(pb.GetTraceObservationPoint()),
		AllowedBy:             policiesFromProto(pb.GetIngressAllowedBy(), pb.GetEgressAllowedBy()),
		DeniedBy:              policiesFromProto(pb.GetIngressDeniedBy(), pb.GetEgressDeniedBy()),
	}
	if t := pb.GetTime(); t != nil {
		f.Time = t.AsTime()
	}
	if pb.GetIsReply() == nil {
		f.IsReply = pb.GetReply() // the deprecated field, from older Hubble servers
	}
	endpointFromProto(pb.GetSource(), &f.Source, f.IP.Source)
	endpointFromProto(pb.GetDestination(), &f.Destination, f.IP.Destination)
	l4FromProto(pb.GetL4(), &f.L4)
	if ext := pb.GetExtensions(); ext != nil && ext.GetTypeUrl() == structTypeURL {
		var s structpb.Struct
		if err := ext.UnmarshalTo(&s); err == nil {
			applyExtensions(f, s.GetFields())
		}
	}
	return f
}

// applyExtensions sets the Starlab fields ToProto put in Flow.extensions; a value of the wrong kind
// is left out.
func applyExtensions(f *flow.Flow, fields map[string]*structpb.Value) {
	for k, v := range fields {
		s, isStr := v.GetKind().(*structpb.Value_StringValue)
		n, isNum := v.GetKind().(*structpb.Value_NumberValue)
		switch {
		case isStr:
			switch k {
			case extOrigDestination:
				f.IP.OrigDestination = s.StringValue
			case extDropReasonDesc:
				f.DropReasonDesc = s.StringValue
			case extEventType:
				f.EventType = flow.EventType(s.StringValue)
			case extVerdict:
				f.Verdict = flow.Verdict(s.StringValue)
			case extTrafficDirection:
				f.TrafficDirection = flow.TrafficDirection(s.StringValue)
			case extObservationPoint:
				f.TraceObservationPoint = s.StringValue
			case extProtocol:
				f.L4.Protocol = s.StringValue
			case extTCPFlags: // flags on a flow that is not TCP; "" is a flag set with none set
				var fl flow.TCPFlags
				if s.StringValue != "" {
					var err error
					if fl, err = flow.ParseTCPFlags(s.StringValue); err != nil {
						continue
					}
				}
				f.L4.Flags = &fl
			case extSourceIP:
				f.Source.IP = s.StringValue
			case extDestinationIP:
				f.Destination.IP = s.StringValue
			}
		case isNum:
			switch k {
			case extOrigDestinationPort:
				f.L4.OrigDestinationPort = uint16(n.NumberValue)
			case extPackets:
				f.Packets = uint64(n.NumberValue)
			case extBytes:
				f.Bytes = uint64(n.NumberValue)
			case extSourcePort:
				f.L4.SourcePort = uint16(n.NumberValue)
			case extDestinationPort:
				f.L4.DestinationPort = uint16(n.NumberValue)
			}
		}
	}
}

func verdictFromProto(v flowpb.Verdict) flow.Verdict {
	if v == flowpb.Verdict_VERDICT_UNKNOWN {
		return ""
	}
	return flow.Verdict(v.String())
}

func directionFromProto(d flowpb.TrafficDirection) flow.TrafficDirection {
	return flow.TrafficDirection(d.String())
}

func observationPointFromProto(p flowpb.TraceObservationPoint) string {
	if p == flowpb.TraceObservationPoint_UNKNOWN_POINT {
		return ""
	}
	return p.String()
}

// dropReasonFromProto is the reason of a dropped flow by Hubble's name ("" for a reason Hubble
// numbers as unknown: Starlab's own reasons come in the extensions).
func dropReasonFromProto(pb *flowpb.Flow) string {
	if pb.GetVerdict() != flowpb.Verdict_DROPPED || pb.GetDropReasonDesc() == flowpb.DropReason_DROP_REASON_UNKNOWN {
		return ""
	}
	return pb.GetDropReasonDesc().String()
}

// eventTypeFromProto inverts ToProto's event types: a drop notification is a DROP, a trace the
// connection's CLOSE, a policy verdict a NEW connection, or a DROP when it denied.
func eventTypeFromProto(pb *flowpb.Flow) flow.EventType {
	switch pb.GetEventType().GetType() {
	case messageTypeDrop:
		return flow.EventDrop
	case messageTypeTrace:
		return flow.EventClose
	case messageTypePolicyVerdict:
		if pb.GetVerdict() == flowpb.Verdict_DROPPED {
			return flow.EventDrop
		}
		return flow.EventNew
	}
	return ""
}

func endpointFromProto(pb *flowpb.Endpoint, e *flow.Endpoint, ip string) {
	e.Identity, e.Namespace, e.PodName, e.IP = pb.GetIdentity(), pb.GetNamespace(), pb.GetPodName(), ip
	if ls := pb.GetLabels(); len(ls) > 0 {
		e.Labels = ls
	}
	if ws := pb.GetWorkloads(); len(ws) > 0 {
		e.Workload = &flow.Workload{Name: ws[0].GetName(), Kind: ws[0].GetKind()}
	}
}

func serviceFromProto(s *flowpb.Service) *flow.Service {
	if s == nil {
		return nil
	}
	return &flow.Service{Name: s.GetName(), Namespace: s.GetNamespace()}
}

// policiesFromProto reads the deciding rules of both directions (ToProto fills one), tier, rule and
// action from their labels.
func policiesFromProto(lists ...[]*flowpb.Policy) []flow.Policy {
	var out []flow.Policy
	for _, ps := range lists {
		for _, p := range ps {
			fp := flow.Policy{Kind: p.GetKind(), Namespace: p.GetNamespace(), Name: p.GetName()}
			for _, l := range p.GetLabels() {
				k, v, _ := strings.Cut(l, "=")
				switch k {
				case "tier":
					fp.Tier = v
				case "rule":
					fp.Rule = v
				case "action":
					fp.Action = v
				}
			}
			out = append(out, fp)
		}
	}
	return out
}

func l4FromProto(pb *flowpb.Layer4, l *flow.L4) {
	switch p := pb.GetProtocol().(type) {
	case *flowpb.Layer4_TCP:
		l.Protocol, l.SourcePort, l.DestinationPort = flow.ProtoTCP, uint16(p.TCP.GetSourcePort()), uint16(p.TCP.GetDestinationPort())
		if fl := p.TCP.GetFlags(); fl != nil {
			l.Flags = &flow.TCPFlags{FIN: fl.GetFIN(), SYN: fl.GetSYN(), RST: fl.GetRST(), PSH: fl.GetPSH(),
				ACK: fl.GetACK(), URG: fl.GetURG(), ECE: fl.GetECE(), CWR: fl.GetCWR()}
		}
	case *flowpb.Layer4_UDP:
		l.Protocol, l.SourcePort, l.DestinationPort = flow.ProtoUDP, uint16(p.UDP.GetSourcePort()), uint16(p.UDP.GetDestinationPort())
	case *flowpb.Layer4_SCTP:
		l.Protocol, l.SourcePort, l.DestinationPort = flow.ProtoSCTP, uint16(p.SCTP.GetSourcePort()), uint16(p.SCTP.GetDestinationPort())
	case *flowpb.Layer4_ICMPv4:
		l.Protocol = flow.ProtoICMPv4
	}
}
