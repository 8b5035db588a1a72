package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// predictView is what `starlab predict -o json` prints.
type predictView struct {
	Pods   []string       `json:"pods"`
	Tables []oracle.Table `json:"tables"`
}

// newPredictCommand returns `starlab predict`.
func newPredictCommand(_ *globalOptions) *cobra.Command {
	var (
		files    []string
		ports    []int
		protocol string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "predict -f DIR [--port N ...] [--protocol TCP]",
		Short: "Print the expected truth table (pod x pod per port) of a set of workloads and NetworkPolicies",
		Long: `predict evaluates NetworkPolicy v1 from the specification (internal/oracle) for every pod
against every pod, on each --port (default: every port a pod declares), and prints one table per
port: rows are sources, columns destinations, "." allowed, "X" denied (-o markdown: ✓ and X).
-f reads manifest files or directories, recursively.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output, "text", "json", "markdown"); err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("predict needs -f with the manifests (workloads and policies), e.g. -f manifests/stars")
			}
			cols, err := portFlags(ports, protocol)
			if err != nil {
				return err
			}
			o, err := manifestOracle(files...)
			if err != nil {
				return err
			}
			if cols == nil {
				cols = o.ServedPorts()
			}
			if len(cols) == 0 {
				return fmt.Errorf("the pods in %v declare no container ports: pass --port N", files)
			}
			tables, err := o.TruthTable(nil, cols)
			if err != nil {
				return err
			}
			out := stdout(cmd)
			switch output {
			case "json":
				view := predictView{Tables: tables}
				if len(tables) > 0 {
					view.Pods = tables[0].Pods
				}
				return writeJSON(out, view)
			case "markdown":
				for _, t := range tables {
					fmt.Fprintf(out, "%s\n", t.Markdown())
				}
				return nil
			}
			return printTables(out, tables)
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest files or directories (repeatable)")
	cmd.Flags().IntSliceVar(&ports, "port", nil, "destination ports (repeatable); default: every declared container port")
	cmd.Flags().StringVar(&protocol, "protocol", "TCP", "protocol of --port: TCP, UDP or SCTP")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	return cmd
}

func printTables(w io.Writer, tables []oracle.Table) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprint(tw, t.Text())
	}
	return tw.Flush()
}
