package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// diffView is what `starlab diff -o json` prints.
type diffView struct {
	Base    []string        `json:"base"`
	Head    []string        `json:"head"`
	Changes []oracle.Change `json:"changes"`
}

// newDiffCommand returns `starlab diff`.
func newDiffCommand(_ *globalOptions) *cobra.Command {
	var (
		files    []string
		ports    []int
		protocol string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "diff BASE HEAD [-f WORKLOADS]",
		Short: "Print the connectivity delta between two NetworkPolicy sets: the pairs that change, and why",
		Long: `diff builds the expected truth table (see predict) of BASE and of HEAD, each a manifest file or
directory (read recursively), over the pods both define, and prints every connection whose verdict
changes with the reason it has in HEAD. -f adds shared manifests (workloads) to both sides.`,
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
			out := stdout(cmd)
			switch output {
			case "json":
				return writeJSON(out, diffView{Base: basePaths, Head: headPaths, Changes: changes})
			case "markdown":
				return printChangesMarkdown(out, changes)
			}
			return printChanges(out, changes)
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifests both sides share, e.g. the workloads (repeatable)")
	cmd.Flags().IntSliceVar(&ports, "port", nil, "destination ports (repeatable); default: every declared container port")
	cmd.Flags().StringVar(&protocol, "protocol", "TCP", "protocol of --port: TCP, UDP or SCTP")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	return cmd
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
