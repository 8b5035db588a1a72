package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/starlab-dev/starlab/internal/bundle"
)

// MatrixCheck is the outcome of CheckMatrix: the report (matrices side by side; on failure the
// problems, the flows involved and where the state dump went), whether everything matched, and the
// truth cells (expected, probed, observed) a failure bundle records.
type MatrixCheck struct {
	Report string
	OK     bool
	Cells  []bundle.TruthCell
}

// CheckMatrix probes every non-ignored cell from inside the source pod (TCP connect to the target's
// Service), matches each connection's flows at the observer, and says whether everything matched.
// lookup resolves the table's row and column names.
func (e *Env) CheckMatrix(ctx context.Context, expected *Matrix, lookup func(string) (Workload, error)) (*MatrixCheck, error) {
	report, ok, cells, err := e.checkMatrix(ctx, expected, lookup)
	if err != nil {
		return nil, err
	}
	return &MatrixCheck{Report: report, OK: ok, Cells: cells}, nil
}

func (e *Env) checkMatrix(ctx context.Context, expected *Matrix, lookup func(string) (Workload, error)) (string, bool, []bundle.TruthCell, error) {
	for _, n := range append(slices.Clone(expected.Rows), expected.Cols...) {
		if _, err := lookup(n); err != nil {
			return "", false, nil, err
		}
	}
	var conns []Connection
	for _, r := range expected.Rows {
		for _, c := range expected.Cols {
			if cell := expected.Get(r, c); cell != Ignored {
				conns = append(conns, Connection{From: r, To: c, Expected: cell})
			}
		}
	}
	// Resolve the destination pods and the policies that select them.
	for i := range conns {
		to, _ := lookup(conns[i].To)
		pod, err := e.Pod(ctx, to.Ref)
		if err != nil {
			return "", false, nil, err
		}
		conns[i].DstPod = pod.Namespace + "/" + pod.Name
		from, _ := lookup(conns[i].From)
		src, err := e.Pod(ctx, from.Ref)
		if err != nil {
			return "", false, nil, err
		}
		conns[i].SrcIP = src.Status.PodIP
		nps, err := e.Client.NetworkingV1().NetworkPolicies(pod.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", false, nil, fmt.Errorf("list NetworkPolicies in %s: %w", pod.Namespace, err)
		}
		for _, np := range nps.Items {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				return "", false, nil, fmt.Errorf("NetworkPolicy %s/%s podSelector: %w", np.Namespace, np.Name, err)
			}
			ingress := len(np.Spec.PolicyTypes) == 0
			for _, pt := range np.Spec.PolicyTypes {
				ingress = ingress || pt == "Ingress"
			}
			if ingress && sel.Matches(labels.Set(pod.Labels)) {
				conns[i].DeniedBy = append(conns[i].DeniedBy, np.Namespace+"/"+np.Name)
			}
		}
	}
	// Probe every pair at once: a denied TCP connect costs the whole timeout.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(conns))
	for i := range conns {
		wg.Go(func() {
			from, _ := lookup(conns[i].From)
			to, _ := lookup(conns[i].To)
			conns[i].Result, errs[i] = e.Probe(ctx, from.Ref, to.Target, "tcp")
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return "", false, nil, err
		}
	}
	probes := ignoredLike(expected)
	for _, c := range conns {
		probes.Set(c.From, c.To, map[bool]Cell{true: Yes, false: No}[c.Result.Reachable])
	}
	cells, problems, flows, err := e.FlowVerdicts(ctx, conns, start, 20*time.Second)
	if err != nil {
		return "", false, nil, err
	}
	if err := e.AppendFlows(flows); err != nil {
		return "", false, nil, err
	}
	byFlows := ignoredLike(expected)
	for i, c := range conns {
		byFlows.Set(c.From, c.To, cells[i])
	}
	mism := append(Mismatches(expected, probes), Mismatches(expected, byFlows)...)
	ok := len(mism) == 0 && len(problems) == 0
	why := map[[2]string][]string{}
	for i, c := range conns {
		why[[2]string{c.From, c.To}] = problems[i]
	}
	truth := matrixTruthCells(expected, probes, byFlows, why)
	var b strings.Builder
	b.WriteString("reachability (connections = real TCP connects from inside the pods; flows = the observer's verdicts)\n")
	b.WriteString(SideBySide(expected, map[string]*Matrix{"connections": probes, "flows": byFlows}))
	if ok {
		return b.String(), true, truth, nil
	}
	b.WriteString("\nproblems:\n")
	for i, c := range conns {
		res := c.Result
		line := fmt.Sprintf("  %s -> %s (%s): expected %s; connection reachable=%v %s from %s in %.0fms", c.From, c.To, c.DstPod, c.Expected, res.Reachable, res.Error, res.LocalAddr, res.ElapsedMs)
		if p := problems[i]; len(p) > 0 || probes.Get(c.From, c.To) != c.Expected {
			b.WriteString(line + "\n")
			for _, s := range p {
				b.WriteString("      flows: " + s + "\n")
			}
			for _, f := range c.flowsOf(flows) {
				b.WriteString("      " + FormatFlow(f) + "\n")
			}
		}
	}
	dir, derr := e.DumpState(ctx, "matrix-"+time.Now().UTC().Format("150405.000"), map[string][]byte{"matrix.txt": []byte(b.String())})
	if derr != nil {
		fmt.Fprintf(&b, "\n(writing the state dump failed: %v)\n", derr)
	}
	fmt.Fprintf(&b, "\nreport bundle: %s (junit.xml, cucumber.json, flows.ndjson) and state dump %s\n", e.ReportDir, dir)
	return b.String(), false, truth, nil
}
