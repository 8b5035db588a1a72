package cli

import (
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/repro"
)

// newReplayCommand returns `starlab replay BUNDLE`.
func newReplayCommand(_ *globalOptions) *cobra.Command {
	var (
		opts   repro.ReplayOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "replay BUNDLE",
		Short: "Serve a failure bundle's flows and service graph in the observer UI and API, no cluster needed",
		Long: `Prints the failing step's truth tables (expected, probed, observed), then serves the step's flows
through an observer without agents: the UI at /, /api/v1/flows, /api/v1/graph, at the recorded speed
(--speed 1), faster (--speed 10) or all at once (--speed 0), until interrupted.
"starlab observe --input-file BUNDLE" prints the same flows with the usual filters.`,
		Example: `  starlab replay bundle.tar.gz
  starlab replay bundle.tar.gz --speed 0 --listen 127.0.0.1:4300`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			_, rec, err := repro.Open(args[0])
			if err != nil {
				return err
			}
			out := stdout(cmd)
			if output == "json" {
				if err := writeJSON(out, rec); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "test: %s\nstep: %s\n%s\n", rec.Test(), rec.Step.Text, rec.Tables)
				for _, c := range rec.WrongCells() {
					fmt.Fprintf(out, "WRONG %s\n", c)
				}
			}
			prog := progressOut(cmd, output)
			opts.Ready = func(url string) {
				fmt.Fprintf(prog, "serving %d flows of %q on %s (UI %s/, API %s/api/v1/flows); Ctrl-C ends\n", len(rec.Flows), rec.Step.Text, url, url, url)
			}
			opts.Done = func(n int) { fmt.Fprintf(prog, "replayed %d flows\n", n) }
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return repro.Replay(ctx, rec.Flows, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:4246", "address of the replayed observer (port 0: any free port)")
	f.Float64Var(&opts.Speed, "speed", 1, "1 = recorded speed, N = N times faster, 0 = every flow at once")
	f.StringVarP(&output, "output", "o", "text", "how to print the truth tables: text or json")
	return cmd
}
