package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
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
	"github.com/starlab-dev/starlab/internal/agentapi"
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

	// mu guards the caches below (the reader goroutine is their one user; the lock is uncontended).
	mu sync.Mutex
	// meta caches each pod object's flow labels and workload: informer objects are replaced, never
	// modified, so the pointer is the key; forgotten whole past podMetaLimit entries (pod churn).
	meta map[*corev1.Pod]podMeta
	// ids is crypto/rand behind a buffer: one read per 256 flow UUIDs, not one per flow.
	ids io.Reader
}

// podMeta is what every flow of one pod object repeats.
type podMeta struct {
	labels   []string
	workload *flow.Workload
}

const podMetaLimit = 8192

// podMetaOf returns the cached labels and workload of p (caller holds mu).
func (e *enricher) podMetaOf(p *corev1.Pod) podMeta {
	if m, ok := e.meta[p]; ok {
		return m
	}
	if e.meta == nil || len(e.meta) >= podMetaLimit {
		e.meta = map[*corev1.Pod]podMeta{}
	}
	m := podMeta{labels: podLabels(p), workload: workloadOf(p)}
	e.meta[p] = m
	return m
}

// newUUID is a random (version 4) flow UUID (caller holds mu).
func (e *enricher) newUUID() string {
	if e.ids == nil {
		e.ids = bufio.NewReaderSize(rand.Reader, 16*256)
	}
	u, err := uuid.NewRandomFromReader(e.ids)
	if err != nil { // crypto/rand does not fail on Linux; keep a flow identifiable anyway
		return uuid.NewString()
	}
	return u.String()
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
		m := e.podMetaOf(p) // shared by the pod's flows: flows are read-only once made
		fe.Namespace, fe.PodName, fe.Labels, fe.Workload = p.Namespace, p.Name, m.labels, m.workload
		return fe
	}
	if name := flow.ReservedIdentityName(identity); name != "" {
		fe.Labels = []string{"reserved:" + name}
	}
	return fe
}

// enrich turns a datapath event into a Flow.
func (e *enricher) enrich(ev *flowevent.Event, clock flowevent.Clock) *flow.Flow {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := &flow.Flow{
		Time:      clock.Wall(ev.TsNs),
		UUID:      e.newUUID(),
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
		f.AllowedBy, f.DeniedBy = attribute(res, ev)
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

// stages counts the flow events at each stage: the ring buffer, the agent's own reading (malformed
// events, events before the informers synced), the store and its follow streams.
func (f *flows) stages() agentapi.FlowStages {
	st := agentapi.FlowStages{QueueLost: f.early.Load(), Stored: f.store.Total(), SubscriberLost: f.store.Lost()}
	if rd := f.reader.Load(); rd != nil {
		rs := rd.Stats()
		st.RingbufRead, st.RingbufLost = rs.Read+rs.Malformed, rs.ReserveFailed
		st.QueueLost += rs.Malformed
	}
	return st
}

// lost is the number of flow events lost at any stage.
func (f *flows) lost() uint64 { return f.stages().Lost() }

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
			f.metrics.countVerdict(fl)
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
