package hubbleapi

import (
	"fmt"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Request is q as Hubble's GetFlowsRequest: filters as whitelist and blacklist FlowFilters, the
// window as since/until, Last as number, Follow as follow (no number and no since: only new flows,
// as `hubble observe --follow`). exact is false when a filter Hubble's FlowFilter cannot express was
// left out of the request (--policy, --tier, a drop reason Hubble has no number for, two values
// that must both hold on one Hubble field, e.g. --from-pod with --from-namespace): the request then
// asks for more than q, an inexact deny filter is left out whole, number asks for every flow in the
// window, and the caller matches what arrives with q itself (Client.Flows does).
func Request(q flow.Query) (req *observerpb.GetFlowsRequest, exact bool, err error) {
	if err := q.Validate(); err != nil {
		return nil, false, err
	}
	req = &observerpb.GetFlowsRequest{Follow: q.Follow}
	exact = true
	for _, f := range q.Allow {
		pfs, ok := FilterToProto(f)
		exact = exact && ok
		req.Whitelist = append(req.Whitelist, pfs...)
	}
	for _, f := range q.Deny {
		pfs, ok := FilterToProto(f)
		if !ok {
			exact = false // denying its relaxed form would deny flows q keeps
			continue
		}
		req.Blacklist = append(req.Blacklist, pfs...)
	}
	if q.NoHistory {
		return req, exact, nil // follow, number 0, no since: only new flows
	}
	if !q.Since.IsZero() {
		req.Since = timestamppb.New(q.Since)
	}
	if !q.Until.IsZero() {
		req.Until = timestamppb.New(q.Until)
	}
	if exact {
		req.Number = uint64(q.Last)
	}
	return req, exact, nil
}

// eitherSide is one of a Starlab filter's "either side" fields: it matches when its values match the
// source or the destination.
type eitherSide struct {
	apply func(pf *flowpb.FlowFilter, source bool) bool
}

// FilterToProto is f as Hubble FlowFilters (ORed): Starlab's either-side fields (--pod, --namespace,
// --label, --service, --ip, --port, --identity, --workload) become one FlowFilter per choice of
// sides, as hubble itself sends --pod as a source and a destination filter. Namespaces are pod
// references "namespace/" (what `hubble observe --namespace` sends; Starlab endpoints carry a
// namespace only for pods). exact is false when part of f could not be expressed and was left out, so
// the filters match more than f (see Request).
func FilterToProto(f flow.Filter) (pfs []*flowpb.FlowFilter, exact bool) {
	var either []eitherSide
	add := func(present bool, apply func(pf *flowpb.FlowFilter, source bool) bool) {
		if present {
			either = append(either, eitherSide{apply})
		}
	}
	add(len(f.Pod) > 0, func(pf *flowpb.FlowFilter, src bool) bool { return setStrings(podField(pf, src), f.Pod) })
	add(len(f.Namespace) > 0, func(pf *flowpb.FlowFilter, src bool) bool {
		return setStrings(podField(pf, src), namespaceRefs(f.Namespace))
	})
	add(len(f.Label) > 0, func(pf *flowpb.FlowFilter, src bool) bool { return setStrings(labelField(pf, src), f.Label) })
	add(len(f.Service) > 0, func(pf *flowpb.FlowFilter, src bool) bool { return setStrings(serviceField(pf, src), f.Service) })
	add(len(f.IP) > 0, func(pf *flowpb.FlowFilter, src bool) bool { return setStrings(ipField(pf, src), f.IP) })
	add(len(f.Port) > 0, func(pf *flowpb.FlowFilter, src bool) bool { return setStrings(portField(pf, src), portStrings(f.Port)) })
	add(len(f.Identity) > 0, func(pf *flowpb.FlowFilter, src bool) bool {
		return setSlice(identityField(pf, src), f.Identity)
	})
	add(len(f.Workload) > 0, func(pf *flowpb.FlowFilter, src bool) bool {
		return setSlice(workloadField(pf, src), workloads(f.Workload))
	})
	exact = true
	for combo := range 1 << len(either) {
		pf, ok := sidedFilter(f)
		for i, e := range either {
			ok = e.apply(pf, combo&(1<<i) == 0) && ok
		}
		exact = exact && ok
		pfs = append(pfs, pf)
	}
	return pfs, exact
}

// sidedFilter is the part of f with a fixed side (or none), and whether all of it was expressed.
func sidedFilter(f flow.Filter) (*flowpb.FlowFilter, bool) {
	pf := &flowpb.FlowFilter{
		SourcePod: f.SourcePod, DestinationPod: f.DestinationPod,
		SourceLabel: f.SourceLabel, DestinationLabel: f.DestinationLabel,
		SourceService: f.SourceService, DestinationService: f.DestinationService,
		SourceIp: f.SourceIP, DestinationIp: f.DestinationIP,
		SourcePort: portStrings(f.SourcePort), DestinationPort: portStrings(f.DestinationPort),
		SourceIdentity: f.SourceIdentity, DestinationIdentity: f.DestinationIdentity,
		SourceWorkload: workloads(f.SourceWorkload), DestinationWorkload: workloads(f.DestinationWorkload),
		NodeName: f.NodeName, Reply: f.Reply,
	}
	ok := setStrings(&pf.SourcePod, namespaceRefs(f.SourceNamespace))
	ok = setStrings(&pf.DestinationPod, namespaceRefs(f.DestinationNamespace)) && ok
	for _, p := range f.Protocol {
		pf.Protocol = append(pf.Protocol, strings.ToLower(p))
	}
	for _, v := range f.Verdict {
		pf.Verdict = append(pf.Verdict, verdictProto(v))
	}
	reasons := make([]flowpb.DropReason, 0, len(f.DropReason))
	for _, r := range f.DropReason {
		n, known := flowpb.DropReason_value[r]
		if !known {
			ok = false // a Starlab reason: no Hubble number to ask for
			reasons = nil
			break
		}
		reasons = append(reasons, flowpb.DropReason(n))
	}
	if len(reasons) > 0 {
		pf.DropReasonDesc = reasons
	}
	for _, d := range f.TrafficDirection {
		pf.TrafficDirection = append(pf.TrafficDirection, directionProto(d))
	}
	for _, t := range f.EventType {
		pf.EventType = append(pf.EventType, &flowpb.EventTypeFilter{Type: eventTypeNumber(t)})
	}
	for _, s := range f.TCPFlags {
		fl, err := flow.ParseTCPFlags(s)
		if err != nil {
			ok = false // Validate refused it before; leave it to the matcher
			continue
		}
		pf.TcpFlags = append(pf.TcpFlags, &flowpb.TCPFlags{FIN: fl.FIN, SYN: fl.SYN, RST: fl.RST, PSH: fl.PSH,
			ACK: fl.ACK, URG: fl.URG, ECE: fl.ECE, CWR: fl.CWR})
	}
	if len(f.Policy) > 0 || len(f.Tier) > 0 {
		ok = false // Hubble's FlowFilter has no policy fields
	}
	return pf, ok
}

// eventTypeNumber is the Cilium monitor type FilterFromProto reads back as t.
func eventTypeNumber(t flow.EventType) int32 {
	switch t {
	case flow.EventDrop:
		return messageTypeDrop
	case flow.EventClose:
		return messageTypeTrace
	}
	return messageTypePolicyVerdict
}

// setStrings sets *dst to vals when it is empty; when it already holds values (which must hold
// together with vals, and one Hubble field ORs its values) it keeps them and reports false.
func setStrings(dst *[]string, vals []string) bool { return setSlice(dst, vals) }

func setSlice[T any](dst *[]T, vals []T) bool {
	if len(vals) == 0 {
		return true
	}
	if len(*dst) > 0 {
		return false
	}
	*dst = vals
	return true
}

func podField(pf *flowpb.FlowFilter, src bool) *[]string {
	if src {
		return &pf.SourcePod
	}
	return &pf.DestinationPod
}

func labelField(pf *flowpb.FlowFilter, src bool) *[]string {
	if src {
		return &pf.SourceLabel
	}
	return &pf.DestinationLabel
}

func serviceField(pf *flowpb.FlowFilter, src bool) *[]string {
	if src {
		return &pf.SourceService
	}
	return &pf.DestinationService
}

func ipField(pf *flowpb.FlowFilter, src bool) *[]string {
	if src {
		return &pf.SourceIp
	}
	return &pf.DestinationIp
}

func portField(pf *flowpb.FlowFilter, src bool) *[]string {
	if src {
		return &pf.SourcePort
	}
	return &pf.DestinationPort
}

func identityField(pf *flowpb.FlowFilter, src bool) *[]uint32 {
	if src {
		return &pf.SourceIdentity
	}
	return &pf.DestinationIdentity
}

func workloadField(pf *flowpb.FlowFilter, src bool) *[]*flowpb.Workload {
	if src {
		return &pf.SourceWorkload
	}
	return &pf.DestinationWorkload
}

// namespaceRefs are namespaces as Hubble pod references, "namespace/".
func namespaceRefs(nss []string) []string {
	out := make([]string, 0, len(nss))
	for _, ns := range nss {
		out = append(out, ns+"/")
	}
	return out
}

func portStrings(ps []uint16) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, strconv.Itoa(int(p)))
	}
	return out
}

// workloads are Starlab workload references, [namespace/]name, as Hubble Workloads: the reference
// goes whole into the name, which Starlab's server (FilterFromProto) reads as [namespace/]name.
func workloads(refs []string) []*flowpb.Workload {
	if len(refs) == 0 {
		return nil
	}
	out := make([]*flowpb.Workload, 0, len(refs))
	for _, r := range refs {
		out = append(out, &flowpb.Workload{Name: r})
	}
	return out
}

// describeRequest renders a request for error messages.
func describeRequest(req *observerpb.GetFlowsRequest) string {
	return fmt.Sprintf("%d whitelist and %d blacklist filters, number %d, follow %v", len(req.GetWhitelist()), len(req.GetBlacklist()), req.GetNumber(), req.GetFollow())
}
