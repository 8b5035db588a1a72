package conformance

import "github.com/starlab-dev/starlab/internal/bundle"

// TruthCells are cells as a failure bundle records them: expected (the oracle), probed (the real
// connection) and observed (the flows' verdict), each yes, no, ? (no evidence) or ignored.
func TruthCells(cells []Cell) []bundle.TruthCell {
	out := make([]bundle.TruthCell, 0, len(cells))
	for _, c := range cells {
		tc := bundle.TruthCell{
			Mode: c.Mode, From: c.From, To: c.To, Port: c.Port, Protocol: string(c.Protocol),
			Expected: yesNo(c.Expected), Probed: bundle.CellUnknown, Observed: bundle.CellUnknown,
			Wrong: c.Wrong, Why: c.Why,
		}
		if c.Probe != nil {
			tc.Probed = yesNo(c.Probe.Reachable)
		}
		if c.Observed != nil {
			switch c.Observed.Verdict {
			case ObservedAllowed:
				tc.Observed = bundle.CellYes
			case ObservedDenied:
				tc.Observed = bundle.CellNo
			}
		}
		if c.Ignored {
			tc.Expected, tc.Probed, tc.Observed = bundle.CellIgnored, bundle.CellIgnored, bundle.CellIgnored
		}
		out = append(out, tc)
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return bundle.CellYes
	}
	return bundle.CellNo
}
