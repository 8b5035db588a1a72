package observer

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Metrics are the observer's Prometheus series (Hubble's, renamed starlab_*), on their own registry.
type Metrics struct {
	Registry       *prometheus.Registry
	flows          *prometheus.CounterVec
	drops          *prometheus.CounterVec
	policyVerdicts *prometheus.CounterVec
	lost           *prometheus.CounterVec
	lostByStage    *prometheus.CounterVec
	late           *prometheus.CounterVec
}

// Policy verdict match values (starlab_policy_verdicts_total{match}).
const (
	MatchNetworkPolicy   = "network-policy" // a NetworkPolicy rule allowed it
	MatchDefaultDeny     = "default-deny"   // no rule allowed a policed endpoint
	MatchUnrepresentable = "policy-error"   // the policy could not be compiled or written: fail closed
)

// NewMetrics registers the observer's series on a fresh registry.
func NewMetrics() (*Metrics, error) {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_flows_processed_total", Help: "Flows the observer processed, by verdict and node.",
		}, []string{"verdict", "node"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_drop_total", Help: "Dropped flows by drop reason and node.",
		}, []string{"reason", "node"}),
		policyVerdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_policy_verdicts_total", Help: "Flows a network policy decided, by action (forwarded/dropped), match, direction and node.",
		}, []string{"action", "match", "direction", "node"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_lost_events_total", Help: "Flow events lost (agent ring buffer, agent or observer slow readers), by node.",
		}, []string{"node"}),
		lostByStage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_lost_events_by_stage_total",
			Help: "Flow events lost, by node and stage: ringbuf (the datapath's ring buffer was full), agent_queue (malformed, or before the agent synced), agent_subscriber (an agent's follow stream, the observer's merge among them, fell further behind than the agent's flow ring), observer_subscriber (a follower of the observer fell further behind than the observer's ring; node \"observer\").",
		}, []string{"node", "stage"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "starlab_late_flows_total", Help: "Flows that reached the observer's merge later than its window (delivered out of time order), by node.",
		}, []string{"node"}),
	}
	for _, c := range []prometheus.Collector{m.flows, m.drops, m.policyVerdicts, m.lost, m.lostByStage, m.late,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := m.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register observer metric: %w", err)
		}
	}
	return m, nil
}

// Observe counts one flow.
func (m *Metrics) Observe(f *flow.Flow) {
	node := f.NodeName
	m.flows.WithLabelValues(string(f.Verdict), node).Inc()
	if f.Verdict == flow.VerdictDropped {
		m.drops.WithLabelValues(f.DropReasonDesc, node).Inc()
	}
	if match := policyMatch(f); match != "" {
		m.policyVerdicts.WithLabelValues(strings.ToLower(string(f.Verdict)), match,
			strings.ToLower(string(f.TrafficDirection)), node).Inc()
	}
}

// Loss stages (starlab_lost_events_by_stage_total{stage}, Status.LostByStage).
const (
	StageRingbuf            = "ringbuf"
	StageAgentQueue         = "agent_queue"
	StageAgentSubscriber    = "agent_subscriber"
	StageObserverSubscriber = "observer_subscriber"
)

// AddLost counts n events lost on a node at a stage.
func (m *Metrics) AddLost(node, stage string, n uint64) {
	if n > 0 {
		m.lost.WithLabelValues(node).Add(float64(n))
		m.lostByStage.WithLabelValues(node, stage).Add(float64(n))
	}
}

// AddLate counts one late flow of a node.
func (m *Metrics) AddLate(node string) { m.late.WithLabelValues(node).Inc() }

// policyMatch says how a policy decided the flow, or "" when no policy was involved.
func policyMatch(f *flow.Flow) string {
	if f.IsReply {
		return ""
	}
	if f.DropReasonDesc == flow.DropPolicyUnrepresentable || f.DropReasonDesc == flow.DropPolicyWriteFailed {
		return MatchUnrepresentable
	}
	if f.Verdict == flow.VerdictDropped && f.DropReasonDesc == flow.DropPolicyDenied {
		return MatchDefaultDeny
	}
	if f.Verdict == flow.VerdictForwarded && len(f.AllowedBy) > 0 {
		return MatchNetworkPolicy
	}
	for _, p := range f.DeniedBy {
		if p.Kind == flow.PolicyKindDefaultDeny {
			return MatchDefaultDeny
		}
	}
	return ""
}
