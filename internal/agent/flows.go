package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

const podIPIndex = "podIP"

// podIPIndexFunc indexes pods by IP (non-host-network pods only).
func podIPIndexFunc(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.HostNetwork || p.Status.PodIP == "" {
		return nil, nil
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	return []string{p.Status.PodIP}, nil
}

// podByIP finds the pod owning ip: local endpoints first (the CNI knows IPs before the kubelet
// reports them), then the pod informer index.
func (a *Agent) podByIP(ip netip.Addr) *corev1.Pod {
	a.mu.Lock()
	var ns, name string
	for _, ep := range a.endpoints {
		if ep.ip == ip {
			ns, name = ep.PodNamespace, ep.PodName
			break
		}
	}
	a.mu.Unlock()
	if name != "" {
		if p, err := a.pods.Lister().Pods(ns).Get(name); err == nil {
			return p
		}
	}
	objs, err := a.pods.Informer().GetIndexer().ByIndex(podIPIndex, ip.String())
	if err != nil || len(objs) == 0 {
		return nil
	}
	p, _ := objs[0].(*corev1.Pod)
	return p
}

// workloadOf derives the owning workload from owner references (ReplicaSet -> Deployment by name).
func workloadOf(p *corev1.Pod) *flow.Workload {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h, ok := p.Labels["pod-template-hash"]; ok && strings.HasSuffix(o.Name, "-"+h) {
				return &flow.Workload{Kind: "Deployment", Name: strings.TrimSuffix(o.Name, "-"+h)}
			}
		}
		return &flow.Workload{Kind: o.Kind, Name: o.Name}
	}
	return nil
}

func podLabels(p *corev1.Pod) []string {
	out := make([]string, 0, len(p.Labels))
	for k, v := range p.Labels {
		if k == "pod-template-hash" || k == "controller-revision-hash" || k == "pod-template-generation" {
			continue
		}
		out = append(out, "k8s:"+k+"="+v)
	}
	out = append(out, "k8s:io.kubernetes.pod.namespace="+p.Namespace)
	sort.Strings(out)
	return out
}

// endpointFor describes one side of a flow.
func (a *Agent) endpointFor(ip netip.Addr, identity uint32) flow.Endpoint {
	e := flow.Endpoint{Identity: identity, IP: ip.String()}
	if p := a.podByIP(ip); p != nil {
		e.Namespace, e.PodName, e.Labels, e.Workload = p.Namespace, p.Name, podLabels(p), workloadOf(p)
		return e
	}
	if name := flow.ReservedIdentityName(identity); name != "" {
		e.Labels = []string{"reserved:" + name}
	}
	return e
}

// enrich turns a datapath event into a Flow.
func (a *Agent) enrich(ev *flowevent.Event, clock flowevent.Clock) *flow.Flow {
	f := &flow.Flow{
		Time:      clock.Wall(ev.TsNs),
		UUID:      uuid.NewString(),
		NodeName:  a.cfg.NodeName,
		IsReply:   ev.IsReply,
		Packets:   ev.Packets,
		Bytes:     ev.Bytes,
		IP:        flow.IP{Source: ev.Src.String(), Destination: ev.Dst.String()},
		L4:        flow.L4{SourcePort: ev.SrcPort, DestinationPort: ev.DstPort},
		EventType: flow.EventType(ev.Type.String()),
	}
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	switch ev.Verdict {
	case flowevent.VerdictDropped:
		f.Verdict = flow.VerdictDropped
		f.DropReasonDesc = ev.DropReason.String()
	default:
		f.Verdict = flow.VerdictForwarded
	}
	switch ev.Direction {
	case flowevent.DirectionIngress:
		f.TrafficDirection = flow.DirectionIngress
	case flowevent.DirectionEgress:
		f.TrafficDirection = flow.DirectionEgress
	default:
		f.TrafficDirection = flow.DirectionUnknown
	}
	switch ev.ObsPoint {
	case flowevent.ObsFromContainer:
		f.TraceObservationPoint = flow.ObsFromEndpoint
	case flowevent.ObsToContainer:
		f.TraceObservationPoint = flow.ObsToEndpoint
	case flowevent.ObsFromNetdev:
		f.TraceObservationPoint = flow.ObsFromNetwork
	}
	switch uint8(ev.Proto) {
	case 6:
		f.L4.Protocol = flow.ProtoTCP
		fl := tcpFlags(ev.TCPFlags)
		f.L4.Flags = &fl
	case 17:
		f.L4.Protocol = flow.ProtoUDP
	case 1:
		f.L4.Protocol = flow.ProtoICMPv4
	default:
		f.L4.Protocol = fmt.Sprintf("%d", uint8(ev.Proto))
	}
	if ev.OrigDst.IsValid() && !ev.OrigDst.IsUnspecified() && (ev.OrigDst != ev.Dst || ev.OrigDstPort != ev.DstPort) {
		f.IP.OrigDestination = ev.OrigDst.String()
		f.L4.OrigDestinationPort = ev.OrigDstPort
		if ns, name, ok := a.serviceFor(ev.OrigDst, ev.OrigDstPort, uint8(ev.Proto)); ok {
			f.DestinationService = &flow.Service{Namespace: ns, Name: name}
		}
	} else if ns, name, ok := a.serviceFor(ev.Dst, ev.DstPort, uint8(ev.Proto)); ok {
		f.DestinationService = &flow.Service{Namespace: ns, Name: name}
	}
	f.Source = a.endpointFor(ev.Src, ev.SrcIdentity)
	f.Destination = a.endpointFor(ev.Dst, ev.DstIdentity)

	a.mu.Lock()
	res := a.pol.result
	a.mu.Unlock()
	if res != nil {
		if ev.PolicyID != 0 {
			if ref, ok := res.Policies[ev.PolicyID]; ok {
				f.AllowedBy = []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: ref.Namespace, Name: ref.Name}}
			}
		}
		if ev.Verdict == flowevent.VerdictDropped && (ev.DropReason == flowevent.DropPolicyDenied || ev.DropReason == flowevent.DropPolicyUnrepresentable) {
			dir := policy.DirIngress
			if ev.Direction == flowevent.DirectionEgress {
				dir = policy.DirEgress
			}
			f.AllowedBy = nil
			f.DeniedBy = []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}
			for _, ref := range policiesSelecting(res, ev.Ifindex, dir) {
				f.DeniedBy = append(f.DeniedBy, flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: ref.Namespace, Name: ref.Name})
			}
		}
	}
	return f
}

func tcpFlags(f flowevent.TCPFlags) flow.TCPFlags {
	return flow.TCPFlags{
		FIN: f&flowevent.FlagFIN != 0, SYN: f&flowevent.FlagSYN != 0, RST: f&flowevent.FlagRST != 0, PSH: f&flowevent.FlagPSH != 0,
		ACK: f&flowevent.FlagACK != 0, URG: f&flowevent.FlagURG != 0, ECE: f&flowevent.FlagECE != 0, CWR: f&flowevent.FlagCWR != 0,
	}
}
