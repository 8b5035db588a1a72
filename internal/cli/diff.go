package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// diffView is what `starlab diff -o json` prints.
type diffView struct {
	Base    []string        `json:"base"`
	Head    []string        `json:"head"`
	Changes []oracle.Change `json:"changes"`
	// Observed (with --observed): the changes that flows the lab's observer saw would meet.
	Observed []observedChange `json:"observed,omitempty"`
}

// observedChange is a change of verdict that real traffic would meet: the flows the observer saw on it.
type observedChange struct {
	oracle.Change
	Flows    int       `json:"flows"`
	LastSeen time.Time `json:"lastSeen"`
}

// matchObserved finds, for every change, the observed connections it would decide differently: new
// connections (not replies) from the change's source to its destination on its port, the pods named
// as the oracle names them (namespace/workload for a Deployment's pods, else namespace/pod).
func matchObserved(changes []oracle.Change, flows []*flow.Flow) []observedChange {
	type key struct{ from, to, port string }
	byKey := map[key]*observedChange{}
	var order []key
	for _, c := range changes {
		k := key{c.From, c.To, c.Port.String()}
		if byKey[k] == nil {
			byKey[k] = &observedChange{Change: c}
			order = append(order, k)
		}
	}
	name := func(e flow.Endpoint) string {
		if e.Workload != nil && e.Workload.Name != "" {
			return e.Namespace + "/" + e.Workload.Name
		}
		return e.Namespace + "/" + e.PodName
	}
	for _, f := range flows {
		if f.IsReply || f.Source.Namespace == "" || f.Destination.Namespace == "" {
			continue
		}
		port := oracle.PortProto{Port: int32(f.L4.DestinationPort), Protocol: corev1.Protocol(strings.ToUpper(f.L4.Protocol))}
		oc := byKey[key{name(f.Source), name(f.Destination), port.String()}]
		if oc == nil {
			continue
		}
		oc.Flows++
		if f.Time.After(oc.LastSeen) {
			oc.LastSeen = f.Time
		}
	}
	var out []observedChange
	for _, k := range order {
		if oc := byKey[k]; oc.Flows > 0 {
			out = append(out, *oc)
		}
	}
	return out
}

// newDiffCommand returns `starlab diff`.
func newDiffCommand(g *globalOptions) *cobra.Command {
	var (
		files    []string
		ports    []int
		protocol string
		output   string
		observed time.Duration
		oo       observerOptions
	)
	cmd := &cobra.Command{
		Use:   "diff BASE HEAD [-f WORKLOADS]",
		Short: "Print the connectivity delta between two NetworkPolicy sets: the pairs that change, and why",
		Long: `diff builds the expected truth table (see predict) of BASE and of HEAD, each a manifest file or
directory (read recursively), over the pods both define, and prints every connection whose verdict
changes with the reason it has in HEAD. -f adds shared manifests (workloads) to both sides.
--observed 10m also asks the lab's observer for the flows of the last 10 minutes and lists the changes
that real traffic would meet (how many flows, last seen).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output, "text", "json", "markdown"); err != nil {
				return err
			}
			cols, err := portFlags(ports, protocol)
			if err != nil {
				return err
			}
			basePaths := append(append([]string(nil), files...), args[0])
			headPaths := append(append([]string(nil), files...), args[1])
			base, err := manifestOracle(basePaths...)
			if err != nil {
				return fmt.Errorf("BASE: %w", err)
			}
			head, err := manifestOracle(headPaths...)
			if err != nil {
				return fmt.Errorf("HEAD: %w", err)
			}
			changes, err := oracle.Diff(base, head, cols)
			if err != nil {
				return err
			}
			view := diffView{Base: basePaths, Head: headPaths, Changes: changes}
			if observed < 0 {
				return fmt.Errorf("--observed %s: use a positive duration, e.g. 10m", observed)
			}
			if observed > 0 {
				flows, err := observedFlows(cmd.Context(), g, &oo, observed)
				if err != nil {
					return err
				}
				view.Observed = matchObserved(changes, flows)
			}
			out := stdout(cmd)
			switch output {
			case "json":
				return writeJSON(out, view)
			case "markdown":
				return printChangesMarkdown(out, changes)
			}
			if err := printChanges(out, changes); err != nil || observed == 0 {
				return err
			}
			return printObserved(out, view.Observed, observed)
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifests both sides share, e.g. the workloads (repeatable)")
	cmd.Flags().IntSliceVar(&ports, "port", nil, "destination ports (repeatable); default: every declared container port")
	cmd.Flags().StringVar(&protocol, "protocol", "TCP", "protocol of --port: TCP, UDP or SCTP")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	cmd.Flags().DurationVar(&observed, "observed", 0, "with a running lab: also list the changes the flows of the last DURATION would meet (e.g. 10m)")
	oo.register(cmd)
	return cmd
}

// observedFlows reads the lab observer's flows of the last window.
func observedFlows(ctx context.Context, g *globalOptions, oo *observerOptions, window time.Duration) ([]*flow.Flow, error) {
	base, closeFn, _, err := oo.connect(ctx, g, 0)
	if err != nil {
		return nil, fmt.Errorf("--observed needs the lab's observer: %w", err)
	}
	defer closeFn()
	var out []*flow.Flow
	err = (&observer.Client{Base: base}).Flows(ctx, flow.Query{Since: time.Now().Add(-window)}, func(f *flow.Flow) error {
		out = append(out, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the observer's flows of the last %s: %w", window, err)
	}
	return out, nil
}

func printObserved(w io.Writer, obs []observedChange, window time.Duration) error {
	if len(obs) == 0 {
		_, err := fmt.Fprintf(w, "\nno flow of the last %s meets a change\n", window)
		return err
	}
	fmt.Fprintf(w, "\nflows of the last %s that would change verdict:\n", window)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tPORT\tNOW\tTHEN\tFLOWS\tLAST SEEN")
	for _, o := range obs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", o.From, o.To, o.Port, verdictWord(o.Before.Allowed), verdictWord(o.After.Allowed), o.Flows, o.LastSeen.Format(time.RFC3339))
	}
	return tw.Flush()
}

// why is the reason a change has in HEAD: the deciding direction of the new verdict.
func why(c oracle.Change) string {
	v := c.After
	if len(v.Backends) == 0 {
		switch {
		case v.Allowed && v.Ingress.Enforced:
			return v.Ingress.Reason
		case v.Allowed:
			return v.Egress.Reason
		case !v.Egress.Allowed:
			return "egress " + v.Egress.Reason
		case !v.Ingress.Allowed:
			return "ingress " + v.Ingress.Reason
		}
	}
	return v.Reason
}

func printChanges(w io.Writer, changes []oracle.Change) error {
	if len(changes) == 0 {
		_, err := fmt.Fprintln(w, "no connectivity changes")
		return err
	}
	fmt.Fprintf(w, "%s changed:\n", connections(len(changes)))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tPORT\tBEFORE\tAFTER\tWHY")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.From, c.To, c.Port, verdictWord(c.Before.Allowed), verdictWord(c.After.Allowed), why(c))
	}
	return tw.Flush()
}

func printChangesMarkdown(w io.Writer, changes []oracle.Change) error {
	if len(changes) == 0 {
		_, err := fmt.Fprintln(w, "No connectivity changes.")
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s changed:\n\n| from | to | port | before | after | why |\n|---|---|---|---|---|---|\n", connections(len(changes)))
	for _, c := range changes {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", c.From, c.To, c.Port, verdictWord(c.Before.Allowed), verdictWord(c.After.Allowed), mdEscape(why(c)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func connections(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return fmt.Sprintf("%d connections", n)
}
