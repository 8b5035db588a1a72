package oracle

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// PortProto is one column group of a truth table: a destination port and protocol.
type PortProto struct {
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"`
}

func (p PortProto) String() string { return fmt.Sprintf("%s/%d", protoOrTCP(p.Protocol), p.Port) }

// Table is the expected connectivity between pods on one port/protocol: Verdicts[i][j] is Pods[i]
// connecting to Pods[j].
type Table struct {
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol"`
	Pods     []string        `json:"pods"`
	Verdicts [][]Verdict     `json:"verdicts"`
}

// TruthTable evaluates every pod against every pod for each port/protocol. pods are namespace/name
// references; nil means every pod of the cluster, sorted.
func (o *Oracle) TruthTable(pods []string, cases []PortProto) ([]Table, error) {
	if pods == nil {
		for ref := range o.pods {
			pods = append(pods, ref)
		}
		sort.Strings(pods)
	}
	eps := make([]Endpoint, len(pods))
	for i, ref := range pods {
		p := o.pods[ref]
		if p == nil {
			return nil, fmt.Errorf("truth table: no pod %s", ref)
		}
		eps[i] = PodEndpoint(p.Namespace, p.Name)
	}
	var out []Table
	for _, c := range cases {
		t := Table{Port: c.Port, Protocol: protoOrTCP(c.Protocol), Pods: pods, Verdicts: make([][]Verdict, len(pods))}
		for i := range eps {
			t.Verdicts[i] = make([]Verdict, len(eps))
			for j := range eps {
				v, err := o.Evaluate(eps[i], eps[j], c.Port, c.Protocol)
				if err != nil {
					return nil, fmt.Errorf("truth table %s: %w", c, err)
				}
				t.Verdicts[i][j] = v
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// Allowed returns the cell from -> to, and whether both pods are in the table.
func (t *Table) Allowed(from, to string) (allowed, ok bool) {
	i, j := indexOf(t.Pods, from), indexOf(t.Pods, to)
	if i < 0 || j < 0 {
		return false, false
	}
	return t.Verdicts[i][j].Allowed, true
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// Text renders the table the way the upstream e2e suite prints it: rows are sources, columns
// destinations, "." allowed, "X" denied.
func (t *Table) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d\t%s\n", t.Protocol, t.Port, strings.Join(t.Pods, "\t"))
	for i, from := range t.Pods {
		b.WriteString(from)
		for j := range t.Pods {
			b.WriteString("\t" + mark(t.Verdicts[i][j].Allowed, "."))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Markdown renders the table as a GitHub-flavoured Markdown table (for CI job summaries).
func (t *Table) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s/%d from \\ to | %s |\n|---|%s\n", t.Protocol, t.Port, strings.Join(t.Pods, " | "), strings.Repeat("---|", len(t.Pods)))
	for i, from := range t.Pods {
		b.WriteString("| " + from + " |")
		for j := range t.Pods {
			b.WriteString(" " + mark(t.Verdicts[i][j].Allowed, "✓") + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func mark(allowed bool, yes string) string {
	if allowed {
		return yes
	}
	return "X"
}
