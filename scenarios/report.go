package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/starlab-dev/starlab/internal/flow"
)

var slugRe = regexp.MustCompile(`[^a-zA-Z0-9]+`)

func slug(s string) string {
	s = strings.Trim(slugRe.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// AppendFlows appends flows to <ReportDir>/flows.ndjson (every flow the scenarios looked at).
func (e *Env) AppendFlows(flows []*flow.Flow) error {
	if err := os.MkdirAll(e.ReportDir, 0o755); err != nil {
		return fmt.Errorf("create report dir %s: %w", e.ReportDir, err)
	}
	path := filepath.Join(e.ReportDir, "flows.ndjson")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	enc := flow.NewEncoder(f)
	for _, fl := range flows {
		if err := enc.Encode(fl); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// DumpState writes a kubectl-style snapshot of the lab (pods, nodes with their programmed revision,
// NetworkPolicies, observer status) plus extra named files to <ReportDir>/dumps/<name>/ and returns
// that directory.
func (e *Env) DumpState(ctx context.Context, name string, extra map[string][]byte) (string, error) {
	dir := filepath.Join(e.ReportDir, "dumps", slug(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create dump dir %s: %w", dir, err)
	}
	files := map[string][]byte{}
	for k, v := range extra {
		files[k] = v
	}
	if pods, err := e.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tPHASE\tIP\tNODE\tLABELS")
		for _, p := range pods.Items {
			var ls []string
			for k, v := range p.Labels {
				ls = append(ls, k+"="+v)
			}
			sort.Strings(ls)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.Status.Phase, p.Status.PodIP, p.Spec.NodeName, strings.Join(ls, ","))
		}
		_ = tw.Flush()
		files["pods.txt"] = []byte(b.String())
	} else {
		files["pods.txt"] = []byte("list pods: " + err.Error() + "\n")
	}
	if nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tINTERNAL-IP\tPOD-CIDR\t"+PolicyRevisionAnnotation)
		for _, n := range nodes.Items {
			ip := ""
			for _, a := range n.Status.Addresses {
				if a.Type == "InternalIP" {
					ip = a.Address
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, ip, n.Spec.PodCIDR, n.Annotations[PolicyRevisionAnnotation])
		}
		_ = tw.Flush()
		files["nodes.txt"] = []byte(b.String())
	}
	if nps, err := e.Client.NetworkingV1().NetworkPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
		for i := range nps.Items {
			nps.Items[i].ManagedFields = nil
		}
		if y, err := yaml.Marshal(nps.Items); err == nil {
			files["networkpolicies.yaml"] = y
		}
	}
	if st, err := e.ObserverStatus(ctx); err == nil {
		if j, err := json.MarshalIndent(st, "", "  "); err == nil {
			files["observer-status.json"] = j
		}
	} else {
		files["observer-status.json"] = []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return dir, fmt.Errorf("write dump %s: %w", name, err)
		}
	}
	return dir, nil
}
