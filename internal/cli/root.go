// Package cli holds the starlab command-line interface: one file per command.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	clusterName string
	verbose     bool
}

// NewRootCommand returns the starlab command tree.
func NewRootCommand() *cobra.Command {
	opts := &globalOptions{}
	root := &cobra.Command{
		Use:           "starlab",
		Short:         "A Kubernetes network security and observability lab without a service mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelInfo
			if opts.verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().StringVar(&opts.clusterName, "name", "starlab", "name of the lab (kind cluster)")
	root.PersistentFlags().BoolVarP(&opts.verbose, "verbose", "v", false, "debug logging")
	root.AddCommand(
		// Each command file adds its constructor here, e.g. newUpCommand(opts).
		newImageCommand(opts),
		newUpCommand(opts), newDownCommand(opts), newStatusCommand(opts),
		newTestCommand(opts),
		newObserveCommand(opts), newUICommand(opts),
		newBundleCommand(opts), newReproCommand(opts), newReplayCommand(opts),
		newExplainCommand(opts), newPredictCommand(opts), newDiffCommand(opts),
		newConformanceCommand(opts),
		newDemoCommand(opts),
		newBenchCommand(opts),
	)
	return root
}

// outputFormat validates an -o value against the formats a command supports.
func outputFormat(value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return fmt.Errorf("invalid value %q for -o/--output: use one of %v", value, allowed)
}

// writeJSON prints v as indented JSON: what -o json prints.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressOut is where a command reports progress: stdout, or stderr with -o json so stdout stays
// machine-readable.
func progressOut(cmd *cobra.Command, output string) io.Writer {
	if output == "json" {
		return cmd.ErrOrStderr()
	}
	return stdout(cmd)
}

// stdout returns the writer a command prints data to.
func stdout(cmd *cobra.Command) io.Writer {
	if cmd == nil {
		return os.Stdout
	}
	return cmd.OutOrStdout()
}
