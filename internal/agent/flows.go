package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
)

// The enricher reads the rest of the agent through these getters only (the model is Hubble's
// pkg/hubble/parser/getters).

// PodGetter names the pod owning an address.
type PodGetter interface {
	PodByIP(ip netip.Addr) *corev1.Pod
}

// ServiceGetter names the Service behind a frontend address.
type ServiceGetter interface {
	ServiceByAddr(ip netip.Addr, port uint16, proto uint8) (namespace, name string, ok bool)
}

// PolicyGetter gives the policy compilation the maps hold (nil before the first).
type PolicyGetter interface {
	PolicyResult() *policy.Result
}

// enricher is the flow part's enrichment: a datapath event -> a Flow with pods, services and
// policies named.
type enricher struct {
	node     string
	pods     PodGetter
	services ServiceGetter
	policies PolicyGetter
}

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

// localPods names the local pod of an address (the endpoint part).
type localPods interface {
	PodByIP(ip netip.Addr) (namespace, name string, ok bool)
}

// podLookup is the PodGetter over the local endpoints and the pod informer: local endpoints first
// (the CNI knows IPs before the kubelet reports them), then the informer's IP index.
type podLookup struct {
	local  localPods
	lister corev1listers.PodLister
	index  cache.Indexer // with podIPIndex
}

func (l podLookup) PodByIP(ip netip.Addr) *corev1.Pod {
	if ns, name, ok := l.local.PodByIP(ip); ok {
		if p, err := l.lister.Pods(ns).Get(name); err == nil {
			return p
		}
	}
	objs, err := l.index.ByIndex(podIPIndex, ip.String())
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
func (e *enricher) endpointFor(ip netip.Addr, identity uint32) flow.Endpoint {
	fe := flow.Endpoint{Identity: identity, IP: ip.String()}
	if p := e.pods.PodByIP(ip); p != nil {
		fe.Namespace, fe.PodName, fe.Labels, fe.Workload = p.Namespace, p.Name, podLabels(p), workloadOf(p)
		return fe
	}
	if name := flow.ReservedIdentityName(identity); name != "" {
		fe.Labels = []string{"reserved:" + name}
	}
	return fe
}

// enrich turns a datapath event into a Flow.
func (e *enricher) enrich(ev *flowevent.Event, clock flowevent.Clock) *flow.Flow {
	f := &flow.Flow{
		Time:      clock.Wall(ev.TsNs),
		UUID:      uuid.NewString(),
		NodeName:  e.node,
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
	case flowevent.ObsToNetdev:
		f.TraceObservationPoint = flow.ObsToNetwork
	}
	f.L4.Protocol = flow.ProtocolName(uint8(ev.Proto))
	if maps.Proto(ev.Proto) == maps.ProtoTCP {
		fl := tcpFlags(ev.TCPFlags)
		f.L4.Flags = &fl
	}
	if ev.OrigDst.IsValid() && !ev.OrigDst.IsUnspecified() && (ev.OrigDst != ev.Dst || ev.OrigDstPort != ev.DstPort) {
		f.IP.OrigDestination = ev.OrigDst.String()
		f.L4.OrigDestinationPort = ev.OrigDstPort
		if ns, name, ok := e.services.ServiceByAddr(ev.OrigDst, ev.OrigDstPort, uint8(ev.Proto)); ok {
			f.DestinationService = &flow.Service{Namespace: ns, Name: name}
		}
	} else if ns, name, ok := e.services.ServiceByAddr(ev.Dst, ev.DstPort, uint8(ev.Proto)); ok {
		f.DestinationService = &flow.Service{Namespace: ns, Name: name}
	}
	f.Source = e.endpointFor(ev.Src, ev.SrcIdentity)
	f.Destination = e.endpointFor(ev.Dst, ev.DstIdentity)

	if res := e.policies.PolicyResult(); res != nil {
		if ev.PolicyID != 0 {
			if ref, ok := res.Policies[ev.PolicyID]; ok {
				f.AllowedBy = []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: ref.Namespace, Name: ref.Name}}
			}
		}
		if ev.Verdict == flowevent.VerdictDropped && (ev.DropReason == flowevent.DropPolicyDenied || ev.DropReason == flowevent.DropPolicyUnrepresentable || ev.DropReason == flowevent.DropPolicyWriteFailed) {
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

// flows is the flow part: the ring-buffer reader -> enrichment -> the flow store and metrics.
type flows struct {
	enricher
	log     *slog.Logger
	store   *flow.Store
	metrics *metrics
	synced  *atomic.Bool // informers synced: events can be named
	reader  atomic.Pointer[flowevent.Reader]
	// early counts events dropped because they arrived before the informers synced.
	early atomic.Uint64
}

// lost is the number of flow events lost: malformed, ring-buffer reserve failures, events before
// the informers synced, and slow flow subscribers.
func (f *flows) lost() uint64 {
	var n uint64
	if rd := f.reader.Load(); rd != nil {
		st := rd.Stats()
		n += st.Malformed + st.ReserveFailed
	}
	return n + f.store.Lost() + f.early.Load()
}

// start reads flow events from the ring buffer until ctx is done.
func (f *flows) start(ctx context.Context, wg *sync.WaitGroup, events, counters *ebpf.Map) error {
	clock, err := flowevent.NewClock()
	if err != nil {
		return fmt.Errorf("flow clock: %w", err)
	}
	rd, err := flowevent.NewReader(events, flowevent.ReaderOptions{Counters: counters})
	if err != nil {
		return fmt.Errorf("flow event reader: %w", err)
	}
	f.reader.Store(rd)
	wg.Add(1)
	go func() {
		defer wg.Done()
		go func() { <-ctx.Done(); _ = rd.Close() }()
		err := rd.Run(ctx, func(ev *flowevent.Event) {
			if !f.synced.Load() {
				f.early.Add(1)
				return
			}
			fl := f.enrich(ev, clock)
			f.store.Add(fl)
			f.metrics.flows.WithLabelValues(string(fl.Verdict)).Inc()
			if fl.Verdict == flow.VerdictDropped {
				f.metrics.drops.WithLabelValues(fl.DropReasonDesc).Inc()
			}
		})
		if err != nil {
			f.log.Error("flow event reader stopped", "err", err)
		}
	}()
	return nil
}
