package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// newExplainCommand returns `starlab explain`.
func newExplainCommand(g *globalOptions) *cobra.Command {
	var (
		from, to, protocol, output string
		port                       int
		files                      []string
	)
	cmd := &cobra.Command{
		Use:   "explain --from NS/POD --to NS/POD|NS/SVC|IP --port N [--protocol TCP] [-f DIR]",
		Short: "Explain whether NetworkPolicy and ClusterNetworkPolicy allow a connection, and why (live lab, or offline from manifests with -f)",
		Long: `explain evaluates NetworkPolicy v1 and ClusterNetworkPolicy from the specification (internal/oracle)
for one connection and prints the verdict per direction: the policies selecting each side, the rule
that allowed it, or the default deny; with ClusterNetworkPolicies, the tier walk ("Admin: pass by
cnp/allow-monitoring ingress rule 0 → NetworkPolicy: no policy selects → Baseline: deny by
cnp/baseline-deny ingress rule 0"). --to accepts NS/POD, NS/SVC (a pod of that name wins; force with pod/NS/NAME or
svc/NS/NAME) or an IP. Without -f it reads the running lab; -f reads manifest files or directories
(recursively; Deployments become their pods, named after the Deployment).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json", "markdown"); err != nil {
				return err
			}
			if from == "" || to == "" || port == 0 {
				return fmt.Errorf("explain needs --from, --to and --port, e.g. --from client/client --to stars/frontend --port 80")
			}
			proto, err := protocolFlag(protocol)
			if err != nil {
				return err
			}
			var o *oracle.Oracle
			if len(files) > 0 {
				o, err = manifestOracle(files...)
			} else {
				o, err = liveOracle(cmd.Context(), g)
			}
			if err != nil {
				return err
			}
			src, err := o.ParseEndpoint(from)
			if err != nil {
				return fmt.Errorf("--from %w", err)
			}
			dst, err := o.ParseEndpoint(to)
			if err != nil {
				return fmt.Errorf("--to %w", err)
			}
			if port < 1 || port > 65535 {
				return fmt.Errorf("invalid --port %d: use 1-65535", port)
			}
			v, err := o.Evaluate(src, dst, int32(port), proto)
			if err != nil {
				return err
			}
			out := stdout(cmd)
			switch output {
			case "json":
				return writeJSON(out, v)
			case "markdown":
				return printVerdictMarkdown(out, v)
			}
			return printVerdict(out, v)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source: NS/POD or an IP")
	cmd.Flags().StringVar(&to, "to", "", "destination: NS/POD, NS/SVC, pod/NS/NAME, svc/NS/NAME or an IP")
	cmd.Flags().IntVar(&port, "port", 0, "destination port (of the Service when --to is a Service)")
	cmd.Flags().StringVar(&protocol, "protocol", "TCP", "TCP, UDP or SCTP")
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest files or directories to explain offline (repeatable); default: the live lab")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	return cmd
}

// printVerdict writes the verdict and its chain as text.
func printVerdict(w io.Writer, v oracle.Verdict) error {
	fmt.Fprintf(w, "%s -> %s %s/%d: %s\n", v.From, v.To, v.Protocol, v.Port, strings.ToUpper(verdictWord(v.Allowed)))
	if len(v.Backends) == 0 {
		writeDirections(w, "  ", v)
		if v.Egress.Direction == "" { // a Service without port or backends
			fmt.Fprintf(w, "  %s\n", v.Reason)
		}
		return nil
	}
	for _, b := range v.Backends {
		fmt.Fprintf(w, "  backend %s %s/%d: %s\n", b.To, b.Protocol, b.Port, verdictWord(b.Allowed))
		if b.Egress.Direction == "" {
			fmt.Fprintf(w, "    %s\n", b.Reason)
			continue
		}
		writeDirections(w, "    ", b)
	}
	return nil
}

func writeDirections(w io.Writer, indent string, v oracle.Verdict) {
	for _, d := range []oracle.DirVerdict{v.Egress, v.Ingress} {
		if d.Direction == "" {
			continue
		}
		fmt.Fprintf(w, "%s%-7s %s: %s\n", indent, d.Direction, verdictWord(d.Allowed), d.Reason)
		if len(d.SelectedBy) > 0 {
			fmt.Fprintf(w, "%s        selected by: %s\n", indent, strings.Join(d.SelectedBy, ", "))
		}
		for _, a := range d.Ambiguous {
			fmt.Fprintf(w, "%s        ambiguous: %s\n", indent, a)
		}
		if len(d.AllowedBy) > 1 {
			refs := make([]string, len(d.AllowedBy))
			for i, r := range d.AllowedBy {
				refs[i] = r.String()
			}
			fmt.Fprintf(w, "%s        also allowed by: %s\n", indent, strings.Join(refs[1:], ", "))
		}
	}
}

// printVerdictMarkdown writes the verdict as a Markdown table, one row per direction (and backend).
func printVerdictMarkdown(w io.Writer, v oracle.Verdict) error {
	fmt.Fprintf(w, "**%s → %s %s/%d: %s**\n\n", mdEscape(v.From), mdEscape(v.To), v.Protocol, v.Port, verdictWord(v.Allowed))
	fmt.Fprintln(w, "| to | direction | pod | verdict | selected by | reason |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	rows := []oracle.Verdict{v}
	if len(v.Backends) > 0 {
		rows = v.Backends
	}
	for _, r := range rows {
		if r.Egress.Direction == "" {
			fmt.Fprintf(w, "| %s | | | %s | | %s |\n", mdEscape(r.To), verdictWord(r.Allowed), mdEscape(r.Reason))
			continue
		}
		for _, d := range []oracle.DirVerdict{r.Egress, r.Ingress} {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", mdEscape(r.To), d.Direction, d.Pod, verdictWord(d.Allowed),
				strings.Join(d.SelectedBy, ", "), mdEscape(d.Reason))
		}
	}
	return nil
}
