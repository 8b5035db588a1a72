package workshop

import (
	"strconv"
	"strings"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Phase is where a step is.
type Phase string

// Phases of a step, in order; a step ends done or failed.
const (
	PhaseApplying    Phase = "applying"
	PhaseProgramming Phase = "programming"
	PhaseProbing     Phase = "probing"
	PhaseDone        Phase = "done"
	PhaseFailed      Phase = "failed"
)

// StepResult is what the page shows of the current step.
type StepResult struct {
	Part         int         `json:"part"`
	Step         int         `json:"step"`
	PartName     string      `json:"partName"`
	StepName     string      `json:"stepName"`
	Action       string      `json:"action"` // start, next, back, reset
	Phase        Phase       `json:"phase"`
	Started      time.Time   `json:"started"`
	PhaseStarted time.Time   `json:"phaseStarted"`
	ProgrammedMs float64     `json:"programmedMs"` // apply or undo until programmed on every node
	ProbedMs     float64     `json:"probedMs"`
	TotalMs      float64     `json:"totalMs"` // key press to verdicts
	Expected     *Matrix     `json:"expected,omitempty"`
	Probed       *Matrix     `json:"probed,omitempty"`
	Diffs        []string    `json:"diffs,omitempty"`
	Checks       []CheckLine `json:"checks,omitempty"`
	Flows        []FlowView  `json:"flows,omitempty"`
	Error        string      `json:"error,omitempty"`
}

// OK reports whether the step ended with everything as expected.
func (r *StepResult) OK() bool { return r.Phase == PhaseDone }

// FlowView is one flow as the flows panel shows it.
type FlowView struct {
	Time       time.Time `json:"time"`
	Verdict    string    `json:"verdict"`
	DropReason string    `json:"dropReason,omitempty"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Port       string    `json:"port"`
	Direction  string    `json:"direction"`
	Policy     string    `json:"policy,omitempty"` // the deciding policies
	Node       string    `json:"node"`
}

// maxFlows bounds the flows a step keeps (the newest).
const maxFlows = 200

// ViewFlows turns observer flows into FlowViews, newest last, at most maxFlows; replies are left out.
func ViewFlows(flows []*flow.Flow) []FlowView {
	var out []FlowView
	for _, f := range flows {
		if f.IsReply {
			continue
		}
		pols := f.DeniedBy
		if f.Verdict == flow.VerdictForwarded {
			pols = f.AllowedBy
		}
		var names []string
		for _, p := range pols {
			if p.Name == "" {
				names = append(names, p.Kind) // e.g. the default deny of an isolated pod
				continue
			}
			names = append(names, p.Namespace+"/"+p.Name)
		}
		out = append(out, FlowView{
			Time: f.Time, Verdict: string(f.Verdict), DropReason: f.DropReasonDesc,
			From: endpointName(f.Source), To: endpointName(f.Destination),
			Port:      f.L4.Protocol + "/" + strconv.Itoa(int(f.L4.DestinationPort)),
			Direction: string(f.TrafficDirection), Policy: strings.Join(names, ", "), Node: f.NodeName,
		})
	}
	if len(out) > maxFlows {
		out = out[len(out)-maxFlows:]
	}
	return out
}

func endpointName(e flow.Endpoint) string {
	switch {
	case e.Workload != nil && e.Workload.Name != "":
		return e.Namespace + "/" + e.Workload.Name
	case e.PodName != "":
		return e.Namespace + "/" + e.PodName
	case len(e.Labels) > 0:
		return strings.Join(e.Labels, ",")
	}
	return e.IP
}
