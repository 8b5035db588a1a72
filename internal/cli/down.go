package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/lab"
)

// newDownCommand returns `starlab down`.
func newDownCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Delete the lab: its node containers, their volumes and its kubeconfig file (nothing else)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Open(g.clusterName)
			if err != nil {
				return err
			}
			ex, err := l.Inspect(cmd.Context())
			if err != nil {
				return err
			}
			if err := l.Delete(cmd.Context()); err != nil {
				return err
			}
			if ex.State == lab.StateAbsent {
				fmt.Fprintf(stdout(cmd), "lab %q does not exist; removed its kubeconfig if any\n", l.Name())
				return nil
			}
			fmt.Fprintf(stdout(cmd), "lab %q deleted (%d nodes)\n", l.Name(), ex.Nodes)
			return nil
		},
	}
}
