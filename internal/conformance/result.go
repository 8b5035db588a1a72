package conformance

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Observed verdicts read from flows.
const (
	ObservedAllowed = "allowed"
	ObservedDenied  = "denied"
	ObservedUnknown = "unknown" // no conclusive flow (none, or a forward and a drop)
)

// Probe is one real connection of a matrix.
type Probe struct {
	Mode      string          `json:"mode"`
	From      string          `json:"from"`
	To        string          `json:"to"`
	Port      int32           `json:"port"`
	Protocol  corev1.Protocol `json:"protocol"`
	Reachable bool            `json:"reachable"`
	Error     string          `json:"error,omitempty"`
	ElapsedMs float64         `json:"elapsedMs"`
	// Target is the name:port dialled in service-name mode (empty: Dst is dialled).
	Target string `json:"target,omitempty"`
	// Dst is the address dialled (service-name: what the name resolves to), Backend the
	// destination pod's ip:port (the same in pod-ip mode).
	Dst     string `json:"dst,omitempty"`
	Backend string `json:"backend,omitempty"`
	// LocalAddr and SrcIP identify the connection in flows.
	LocalAddr string `json:"localAddr,omitempty"`
	SrcIP     string `json:"srcIP,omitempty"`
	// Reconfirmed: the first try failed and this is the second (confirming) try.
	Reconfirmed bool `json:"reconfirmed,omitempty"`
	// backends are the ip:port of every backend pod when the Service dialled has several (Backend
	// is then empty): flows at the destination match any of them.
	backends []string
}

// Observation is what the observer's flows of one connection say.
type Observation struct {
	Verdict string `json:"verdict"`
	// Direction of the drop (EGRESS or INGRESS) when denied.
	Direction string   `json:"direction,omitempty"`
	AllowedBy []string `json:"allowedBy,omitempty"`
	DeniedBy  []string `json:"deniedBy,omitempty"`
	Flows     []string `json:"flows,omitempty"` // one line each
}

// Cell is one connection of a truth table with the three verdicts.
type Cell struct {
	Mode     string          `json:"mode"`
	From     string          `json:"from"`
	To       string          `json:"to"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"`
	// Ignored: a pod to itself (traffic over loopback never meets the datapath; like cyclonus'
	// --ignore-loopback).
	Ignored  bool         `json:"ignored,omitempty"`
	Expected bool         `json:"expected"`
	Reason   string       `json:"reason"` // the oracle's why
	Probe    *Probe       `json:"probe,omitempty"`
	Observed *Observation `json:"observed,omitempty"`
	Wrong    bool         `json:"wrong,omitempty"`
	Why      []string     `json:"why,omitempty"`
}

// StepResult is one applied state, probed.
type StepResult struct {
	Name     string   `json:"name"`
	Policies []string `json:"policies"`
	// Started and Ended bound the step (its flows lie between them).
	Started     time.Time     `json:"started"`
	Ended       time.Time     `json:"ended"`
	ProgramWait time.Duration `json:"programWaitNs"`
	// Convergence is how long the probed matrix took to settle (clusters without the Starlab
	// revision annotation).
	Convergence time.Duration `json:"convergenceNs,omitempty"`
	ProbeTime   time.Duration `json:"probeTimeNs"`
	Probes      int           `json:"probes"`
	Cells       []Cell        `json:"cells"`
	Wrong       int           `json:"wrong"`
	Error       string        `json:"error,omitempty"`
}

// CaseResult is one case run.
type CaseResult struct {
	Name     string        `json:"name"`
	Tags     []string      `json:"tags"`
	Steps    []StepResult  `json:"steps"`
	Passed   bool          `json:"passed"`
	Duration time.Duration `json:"durationNs"`
	Error    string        `json:"error,omitempty"`
}

// Report is a whole run.
type Report struct {
	Target    string        `json:"target"`
	Flows     string        `json:"flows"`
	Profile   string        `json:"profile"`
	Started   time.Time     `json:"started"`
	Duration  time.Duration `json:"durationNs"`
	Cases     []CaseResult  `json:"cases"`
	Passed    int           `json:"passed"`
	Failed    int           `json:"failed"`
	Setup     time.Duration `json:"setupNs"`
	MaxProbe  time.Duration `json:"maxProbeMatrixNs"`
	MeanProbe time.Duration `json:"meanProbeMatrixNs"`
}

// Tally fills Passed, Failed and the probe-time statistics from Cases.
func (r *Report) Tally() {
	r.Passed, r.Failed = 0, 0
	var sum time.Duration
	n := 0
	r.MaxProbe = 0
	for _, c := range r.Cases {
		if c.Passed {
			r.Passed++
		} else {
			r.Failed++
		}
		for _, s := range c.Steps {
			if s.ProbeTime > 0 {
				sum += s.ProbeTime
				n++
				r.MaxProbe = max(r.MaxProbe, s.ProbeTime)
			}
		}
	}
	if n > 0 {
		r.MeanProbe = sum / time.Duration(n)
	}
}
