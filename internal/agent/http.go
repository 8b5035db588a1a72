package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/flow"
)

type metrics struct {
	reg                  *prometheus.Registry
	flows                *prometheus.CounterVec
	drops                *prometheus.CounterVec
	policyCompileSeconds prometheus.Histogram
}

func newMetrics(a *Agent) *metrics {
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
	m.reg.MustRegister(m.flows, m.drops, m.policyCompileSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_flow_events_lost_total", Help: "Flow events lost (ring buffer full, malformed, or store overflow)."},
			func() float64 { return float64(a.lostEvents()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_endpoints", Help: "Local endpoints."},
			func() float64 { a.mu.Lock(); defer a.mu.Unlock(); return float64(len(a.endpoints)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_policy_revision", Help: "Programmed policy revision."},
			func() float64 { return float64(a.programmedRevision.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_services", Help: "Programmed service frontends."},
			func() float64 { a.svcMu.Lock(); defer a.svcMu.Unlock(); return float64(a.lbTable.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "starlab_datapath_drops_total", Help: "Packets dropped by the datapath (all reasons, from sl_counters)."},
			func() float64 {
				c, err := a.dp.Maps.ReadCounters()
				if err != nil {
					return 0
				}
				var s uint64
				for _, v := range c.Drops {
					s += v
				}
				return float64(s)
			}),
	)
	return m
}

// status is the agent's answer to GET /v1/status.
func (a *Agent) status() agentapi.Status {
	s := agentapi.Status{
		Node: a.cfg.NodeName, Ready: a.ready.Load(), NodeDevice: a.netdevName,
		PolicyRevision: a.programmedRevision.Load(), SeenRevision: a.seenRevision.Load(),
		FlowsSeen: a.store.Total(), FlowsStored: a.store.Len(), LostEvents: a.lostEvents(),
		Uptime: time.Since(a.started).Round(time.Second).String(),
	}
	a.mu.Lock()
	if a.podCIDR.IsValid() {
		s.PodCIDR = a.podCIDR.String()
	}
	for _, ep := range a.endpoints {
		st := a.endpointStateLocked(ep)
		s.Endpoints = append(s.Endpoints, agentapi.EndpointStatus{ContainerID: ep.ContainerID, Pod: ep.PodNamespace + "/" + ep.PodName,
			IP: ep.IP, HostIfName: ep.HostIfName, Ifindex: ep.Ifindex, Identity: st.Identity, Flags: uint32(st.Flags)})
	}
	if res := a.pol.result; res != nil {
		for _, p := range res.Problems {
			s.PolicyProblems = append(s.PolicyProblems, p.String())
		}
	}
	a.mu.Unlock()
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Pod < s.Endpoints[j].Pod })
	a.svcMu.Lock()
	s.Services = a.lbTable.Len()
	a.svcMu.Unlock()
	if a.dp == nil {
		return s
	}
	if c, err := a.dp.Maps.ReadCounters(); err == nil {
		drops := map[string]uint64{}
		for r, v := range c.Drops {
			drops[dropReasonName(r)] = v
		}
		s.DatapathCounters = map[string]any{"packets": c.Packets, "forwarded": c.Forwarded, "ringbuf_reserve_failed": c.RingbufReserveFailed,
			"ct_new": c.CTNew, "fib_failed": c.FIBFailed, "drops": drops}
	}
	return s
}

func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+agentapi.PathFlows, flow.Handler(a.store, a.log))
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
