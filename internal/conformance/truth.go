package conformance

import (
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/starlab-dev/starlab/internal/bundle"
)

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

// StateObjects are the objects of state st as ApplyState applies them, in its order: the namespaces'
// labels, the pods' labels, then the policies by name (server-set fields absent).
func StateObjects(u *Universe, st State) ([]bundle.AppliedObject, error) {
	var out []bundle.AppliedObject
	for _, ns := range u.Namespaces {
		out = append(out, bundle.AppliedObject{Op: "apply", Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns, "labels": anyMap(st.NamespaceLabels[ns])},
		}})
	}
	for _, ref := range u.Pods() {
		ns, pod := splitRef(ref)
		out = append(out, bundle.AppliedObject{Op: "apply", Object: map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": pod, "namespace": ns, "labels": anyMap(st.PodLabels[ref])},
		}})
	}
	names := slices.Sorted(maps.Keys(st.Policies))
	for _, name := range names {
		np := st.Policies[name].DeepCopy()
		np.APIVersion, np.Kind = "networking.k8s.io/v1", "NetworkPolicy"
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(np)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		unstructured.RemoveNestedField(obj, "metadata", "creationTimestamp")
		delete(obj, "status")
		out = append(out, bundle.AppliedObject{Op: "apply", Object: obj})
	}
	return out, nil
}

func anyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
