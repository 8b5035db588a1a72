package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
)

type metrics struct {
	reg                  *prometheus.Registry
	flows                *prometheus.CounterVec
	drops                *prometheus.CounterVec
	policyCompileSeconds prometheus.Histogram
	policyApplyFailures  *prometheus.CounterVec
	// clusterPolicyProblems: ClusterNetworkPolicy rules that failed closed, by reason (the
	// policy.ProblemReason* set).
	clusterPolicyProblems *prometheus.CounterVec
	// verdicts: flow verdicts per deciding policy and rule (bounded, see verdictLabels).
	verdicts      *prometheus.CounterVec
	verdictLabels *boundedLabels
}

func newMetrics(a *Agent) *metrics {
	// stageGauge is one stage of the flow pipeline (agentapi.FlowStages) as
	// starlab_flow_events_stage{stage}: a cumulative count (passed on, or lost).
	stageGauge := func(stage string, get func(agentapi.FlowStages) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_flow_events_stage",
			Help:        "Flow events at each stage of the agent since it started (agentapi.FlowStages): read, stored, or lost and where.",
			ConstLabels: prometheus.Labels{"stage": stage}},
			func() float64 { return float64(get(a.flows.stages())) })
	}
	// counterGauge reads one value of the datapath's sl_counters (0 when they cannot be read).
	counterGauge := func(name, help string, get func(maps.Counters) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			c, err := a.dp.Maps.ReadCounters()
			if err != nil {
				return 0
			}
			return float64(get(c))
		})
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_flows_total", Help: "Flow events processed, by verdict.",
		}, []string{"verdict"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_drops_total", Help: "Dropped-packet flow events, by drop reason.",
		}, []string{"reason"}),
		policyCompileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "starlab_policy_compile_seconds", Help: "Policy compile+apply duration.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	m.policyApplyFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "starlab_policy_apply_failures_total",
		Help: "Endpoints set deny-all because their policy could not be written (reason: capacity = the policy maps are full, write = a map write failed).",
	}, []string{"reason"})
	m.clusterPolicyProblems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "starlab_cluster_policy_problems_total",
		Help: "ClusterNetworkPolicy rules that failed closed (an Accept matches nothing, a Deny or Pass denies all), by reason.",
	}, []string{"reason"})
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "starlab_policy_verdicts_total",
		Help: "New-flow verdicts by the deciding policy rule: kind, tier, policy (namespace/name or name), rule, verdict. At most " + fmt.Sprint(maxVerdictSeries) + " policy/rule pairs; the rest count as policy=\"other\".",
	}, []string{"kind", "tier", "policy", "rule", "verdict"})
	m.verdictLabels = newBoundedLabels(maxVerdictSeries)
	m.reg.MustRegister(m.flows, m.drops, m.policyCompileSeconds, m.policyApplyFailures, m.clusterPolicyProblems, m.verdicts,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_flow_events_lost_total", Help: "Flow events lost (ring buffer full, malformed, or store overflow)."},
			func() float64 { return float64(a.flows.lost()) }),
		stageGauge("ringbuf_lost", func(s agentapi.FlowStages) uint64 { return s.RingbufLost }),
		stageGauge("queue_lost", func(s agentapi.FlowStages) uint64 { return s.QueueLost }),
		stageGauge("subscriber_lost", func(s agentapi.FlowStages) uint64 { return s.SubscriberLost }),
		stageGauge("ringbuf_read", func(s agentapi.FlowStages) uint64 { return s.RingbufRead }),
		stageGauge("stored", func(s agentapi.FlowStages) uint64 { return s.Stored }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_endpoints", Help: "Local endpoints."},
			func() float64 { return float64(a.endpoints.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_policy_revision", Help: "Programmed policy revision."},
			func() float64 { return float64(a.policy.programmedRevision.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_services", Help: "Programmed service frontends."},
			func() float64 { return float64(a.services.len()) }),
		counterGauge("starlab_datapath_drop_events_suppressed_total", "DROP flow events the node-wide limit suppressed (--drop-events-per-second; the drops are in starlab_datapath_drops_total).",
			func(c maps.Counters) uint64 { return c.DropEventsSuppressed }),
		counterGauge("starlab_datapath_ct_port_clash_total", "New pod flows the datapath moved to another source port: the reply tuple was another live flow's (nf_nat's clash resolution).",
			func(c maps.Counters) uint64 { return c.CTPortClash }),
		counterGauge("starlab_datapath_drops_total", "Packets dropped by the datapath (all reasons, from sl_counters).",
			func(c maps.Counters) uint64 {
				var s uint64
				for _, v := range c.Drops {
					s += v
				}
				return s
			}),
	)
	return m
}

// status is the agent's answer to GET /v1/status.
func (a *Agent) status() agentapi.Status {
	s := agentapi.Status{
		Node: a.cfg.NodeName, Ready: a.ready.Load(), NodeDevice: a.nodes.dev.Name,
		PolicyRevision: a.policy.programmedRevision.Load(), SeenRevision: a.policy.seenRevision.Load(),
		FlowsSeen: a.flows.store.Total(), FlowsStored: a.flows.store.Len(), LostEvents: a.flows.lost(), FlowStages: a.flows.stages(),
		Uptime: time.Since(a.started).Round(time.Second).String(),
	}
	if a.endpoints.podCIDR.IsValid() {
		s.PodCIDR = a.endpoints.podCIDR.String()
	}
	for _, ep := range a.endpoints.list() {
		st := a.policy.endpointState(uint32(ep.Ifindex), ep.base())
		s.Endpoints = append(s.Endpoints, agentapi.EndpointStatus{ContainerID: ep.ContainerID, Pod: ep.PodNamespace + "/" + ep.PodName,
			IP: ep.IP, HostIfName: ep.HostIfName, Ifindex: ep.Ifindex, Identity: st.Identity, Flags: uint32(st.Flags)})
	}
	if res := a.policy.PolicyResult(); res != nil {
		for _, p := range res.Problems {
			s.PolicyProblems = append(s.PolicyProblems, p.String())
		}
	}
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Pod < s.Endpoints[j].Pod })
	s.Services = a.services.len()
	if a.dp == nil {
		return s
	}
	if c, err := a.dp.Maps.ReadCounters(); err == nil {
		drops := map[string]uint64{}
		for r, v := range c.Drops {
			drops[flowevent.DropReason(r).String()] = v
		}
		s.DatapathCounters = map[string]any{"packets": c.Packets, "forwarded": c.Forwarded, "ringbuf_reserve_failed": c.RingbufReserveFailed,
			"ct_new": c.CTNew, "fib_failed": c.FIBFailed, "drops": drops,
			"drop_events_suppressed": c.DropEventsSuppressed, "ct_port_clash": c.CTPortClash}
	}
	return s
}

// apiListenAddrs are the addresses the API on the host network binds: listen as given, except that
// a missing host means the node's address and loopback (not every address of the host, so the API
// is not served on the host's other interfaces). The kubelet probes /healthz at the pod IP, which
// for this hostNetwork pod is the node address, and the observer dials the same address; a
// port-forward to the agent pod (starlab bundle, the scenarios) dials loopback in the node's
// network namespace, which no pod can reach.
func apiListenAddrs(listen string, node netip.Addr) ([]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	if host != "" {
		return []string{listen}, nil
	}
	if !node.IsValid() {
		return nil, fmt.Errorf("listen address %q has no host and the node has no address to bind (set --listen=<ip>:%s)", listen, port)
	}
	return []string{net.JoinHostPort(node.String(), port), net.JoinHostPort("127.0.0.1", port)}, nil
}

// apiServer is the API server (Run serves it on every address of apiListenAddrs): plain HTTP, or with mutual TLS when the config names
// certificates (every path but /healthz then needs a client certificate of the configured CA).
func (a *Agent) apiServer() (*http.Server, error) {
	srv := &http.Server{Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	if !a.cfg.TLS() {
		return srv, nil
	}
	tc, err := agentapi.ServerTLSConfig(a.cfg.TLSCert, a.cfg.TLSKey, a.cfg.TLSClientCA)
	if err != nil {
		return nil, err
	}
	srv.TLSConfig = tc
	srv.Handler = agentapi.RequireClientCert(srv.Handler, agentapi.PathHealth)
	return srv, nil
}

func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+agentapi.PathFlows, flow.Handler(a.flows.store, a.log))
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.status())
	})
	mux.Handle("GET "+agentapi.PathMetrics, promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+agentapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// serveHubble serves Hubble's gRPC API (observer.Observer) over this node's flow store on the
// addresses of apiListenAddrs(HubbleListen), with the HTTP API's mutual TLS when it has one, until ctx
// ends; serving errors go to errc.
func (a *Agent) serveHubble(ctx context.Context, nodeIP netip.Addr, tc *tls.Config, errc chan<- error) error {
	if a.cfg.HubbleListen == "" {
		return nil
	}
	addrs, err := apiListenAddrs(a.cfg.HubbleListen, nodeIP)
	if err != nil {
		return fmt.Errorf("--hubble-listen: %w", err)
	}
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc.Clone())))
	}
	self := func() []hubbleapi.Node {
		return []hubbleapi.Node{{Name: a.cfg.NodeName, Address: nodeIP.String(), Connected: true, Flows: a.flows.store.Total()}}
	}
	srv := hubbleapi.NewServer(a.flows.store, self, nil, hubbleapi.BinaryVersion())
	for _, addr := range addrs {
		go func() {
			if err := srv.Serve(ctx, addr, opts...); err != nil {
				errc <- err
			}
		}()
	}
	a.log.Info("Hubble API serving", "addresses", addrs)
	return nil
}
