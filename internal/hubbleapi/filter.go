package hubbleapi

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"github.com/starlab-dev/starlab/internal/flow"
)

// FilterFromProto is Hubble's FlowFilter as a Starlab filter. Hubble's fields that Starlab's flows
// cannot answer (L7, DNS, FQDN, cluster names, interfaces, trace IDs, encryption, node labels) are
// refused with an error naming the field, never ignored: a filter that silently matched more than
// asked would show flows the user excluded.
func FilterFromProto(pf *flowpb.FlowFilter) (flow.Filter, error) {
	var f flow.Filter
	if pf == nil {
		return f, nil
	}
	for name, set := range map[string]bool{
		"uuid": len(pf.GetUuid()) > 0, "source_ip_xlated": len(pf.GetSourceIpXlated()) > 0,
		"source_fqdn": len(pf.GetSourceFqdn()) > 0, "destination_fqdn": len(pf.GetDestinationFqdn()) > 0,
		"source_cluster_name": len(pf.GetSourceClusterName()) > 0, "destination_cluster_name": len(pf.GetDestinationClusterName()) > 0,
		"interface": len(pf.GetInterface()) > 0, "http_status_code": len(pf.GetHttpStatusCode()) > 0,
		"dns_query": len(pf.GetDnsQuery()) > 0, "http_method": len(pf.GetHttpMethod()) > 0,
		"http_path": len(pf.GetHttpPath()) > 0, "http_url": len(pf.GetHttpUrl()) > 0,
		"http_header": len(pf.GetHttpHeader()) > 0, "node_labels": len(pf.GetNodeLabels()) > 0,
		"trace_id": len(pf.GetTraceId()) > 0, "ip_trace_id": len(pf.GetIpTraceId()) > 0,
		"encrypted": len(pf.GetEncrypted()) > 0, "experimental": pf.GetExperimental() != nil,
	} {
		if set {
			return f, fmt.Errorf("filter field %s: Starlab's flows carry no such data (L3/L4 only); leave it out", name)
		}
	}
	var err error
	f.SourceIP, f.DestinationIP = pf.GetSourceIp(), pf.GetDestinationIp()
	f.SourceLabel, f.DestinationLabel = labelSelectors(pf.GetSourceLabel()), labelSelectors(pf.GetDestinationLabel())
	f.SourceService, f.DestinationService = pf.GetSourceService(), pf.GetDestinationService()
	f.SourceIdentity, f.DestinationIdentity = pf.GetSourceIdentity(), pf.GetDestinationIdentity()
	f.NodeName = pf.GetNodeName()
	// Hubble's pod references: "ns/prefix", "prefix", or "ns/" for a whole namespace (what
	// `hubble observe --namespace` sends); Starlab's pod filter reads them alike.
	f.SourcePod, f.DestinationPod = pf.GetSourcePod(), pf.GetDestinationPod()
	f.SourceWorkload = workloadNames(pf.GetSourceWorkload())
	f.DestinationWorkload = workloadNames(pf.GetDestinationWorkload())
	if f.SourcePort, err = ports("source_port", pf.GetSourcePort()); err != nil {
		return f, err
	}
	if f.DestinationPort, err = ports("destination_port", pf.GetDestinationPort()); err != nil {
		return f, err
	}
	for _, p := range pf.GetProtocol() {
		f.Protocol = append(f.Protocol, protocolName(p))
	}
	for _, v := range pf.GetVerdict() {
		f.Verdict = append(f.Verdict, flow.Verdict(v.String()))
	}
	for _, r := range pf.GetDropReasonDesc() {
		f.DropReason = append(f.DropReason, r.String())
	}
	for _, d := range pf.GetTrafficDirection() {
		f.TrafficDirection = append(f.TrafficDirection, flow.TrafficDirection(d.String()))
	}
	for _, et := range pf.GetEventType() {
		t, err := eventType(et)
		if err != nil {
			return f, err
		}
		f.EventType = append(f.EventType, t)
	}
	for _, tf := range pf.GetTcpFlags() {
		f.TCPFlags = append(f.TCPFlags, tcpFlags(tf))
	}
	f.Reply = pf.GetReply()
	if v := pf.GetIpVersion(); len(v) > 0 && !slices.Contains(v, flowpb.IPVersion_IPv4) {
		return f, fmt.Errorf("filter field ip_version %v: Starlab's datapath is IPv4 only, so no flow would match; leave it out or ask for IPv4", v)
	}
	return f, nil
}

// labelSource is Hubble's label source prefix on a selector's key ("k8s:app=x", "any:app"): Starlab's
// endpoint labels are Kubernetes labels, matched with or without "k8s:".
var labelSource = regexp.MustCompile(`(^|[\s,(!])(?:k8s|any):`)

func labelSelectors(sels []string) []string {
	var out []string
	for _, sel := range sels {
		out = append(out, labelSource.ReplaceAllString(sel, "$1"))
	}
	return out
}

func workloadNames(ws []*flowpb.Workload) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.GetName())
	}
	return out
}

func ports(field string, vals []string) ([]uint16, error) {
	var out []uint16
	for _, v := range vals {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("filter field %s: %q is not a port number 0-65535", field, v)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func protocolName(p string) string {
	switch strings.ToLower(p) {
	case "tcp":
		return flow.ProtoTCP
	case "udp":
		return flow.ProtoUDP
	case "sctp":
		return flow.ProtoSCTP
	case "icmp", "icmpv4":
		return flow.ProtoICMPv4
	}
	return p // flow's filter names what it does not know
}

func eventType(et *flowpb.EventTypeFilter) (flow.EventType, error) {
	switch et.GetType() {
	case messageTypeDrop:
		return flow.EventDrop, nil
	case messageTypePolicyVerdict:
		return flow.EventNew, nil
	case messageTypeTrace:
		return flow.EventClose, nil
	}
	return "", fmt.Errorf("filter field event_type: type %d: Starlab records drop (1), trace (4, a connection's end) and policy-verdict (5, a new connection) events", et.GetType())
}

func tcpFlags(tf *flowpb.TCPFlags) string {
	var names []string
	for _, x := range []struct {
		on   bool
		name string
	}{{tf.GetSYN(), "SYN"}, {tf.GetACK(), "ACK"}, {tf.GetFIN(), "FIN"}, {tf.GetRST(), "RST"}, {tf.GetPSH(), "PSH"},
		{tf.GetURG(), "URG"}, {tf.GetECE(), "ECE"}, {tf.GetCWR(), "CWR"}} {
		if x.on {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ",")
}
