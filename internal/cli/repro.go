package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/repro"
)

// newReproCommand returns `starlab repro BUNDLE`.
func newReproCommand(_ *globalOptions) *cobra.Command {
	var (
		opts   repro.Options
		output string
	)
	cmd := &cobra.Command{
		Use:   "repro BUNDLE",
		Short: "Reproduce a failure bundle on a fresh lab: same Kubernetes version and chart values, same objects, same check",
		Long: `Reads a bundle written by a failing "starlab test" or "starlab conformance", checks that this Starlab
can replay it (its build, and the node image for the bundle's Kubernetes version in the cache: the lab
is made offline, nothing is built), creates a fresh lab with the bundle's Kubernetes version, workers
and chart values, applies the recorded objects in order, reruns the failing scenario (or conformance
case) and says whether the failure reproduced: the same wrong cells, different ones, or none.
The lab is deleted afterwards unless --keep. Exit status 0 only when the failure reproduced.`,
		Example: `  starlab repro out/test/20261202-063000/bundles/policy-by-policy-063112.412.tar.gz
  starlab repro bundle.tar.gz --keep --name repro-1 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output, "text", "json"); err != nil {
				return err
			}
			opts.Bundle, opts.Log = args[0], slog.Default()
			opts.Out = progressOut(cmd, output)
			out := stdout(cmd)
			res, err := repro.Run(cmd.Context(), opts)
			if output == "json" && res != nil {
				if encErr := writeJSON(out, res); encErr != nil {
					return encErr
				}
			} else if res != nil {
				printRepro(out, res)
			}
			if err != nil {
				return err
			}
			if res.Outcome != repro.Reproduced {
				return fmt.Errorf("the failure of %s did not reproduce (%s)", res.Test, res.Outcome)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "lab", "", "name of the fresh lab (default repro-<random>)")
	f.BoolVar(&opts.Keep, "keep", false, "leave the lab after the rerun")
	f.StringVar(&opts.BinDir, "bin-dir", "", "directory of the Starlab binaries (default: next to this executable)")
	f.StringVar(&opts.CacheDir, "cache-dir", os.Getenv("STARLAB_CACHE"), "node image cache (default $STARLAB_CACHE or /var/cache/starlab)")
	f.StringVar(&opts.ReportDir, "report-dir", "", "reports of the rerun (default out/repro/<time>)")
	f.StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func printRepro(w io.Writer, r *repro.Result) {
	fmt.Fprintf(w, "bundle:  %s\ntest:    %s\nstep:    %s\n", r.Bundle, r.Test, r.Step)
	for _, d := range r.Differences {
		fmt.Fprintf(w, "differs: %s\n", d)
	}
	if r.Outcome == "" {
		return
	}
	fmt.Fprintf(w, "lab:     %s (made in %s)\n", r.Lab, r.LabDuration.Round(1e9))
	switch r.Outcome {
	case repro.Reproduced:
		fmt.Fprintf(w, "REPRODUCED: the same %d failure(s) (wrong cells, or the failing step)\n", len(r.Same))
	case repro.Different:
		fmt.Fprintf(w, "DIFFERENT: %d failure(s) recorded, %d in the rerun, %d the same\n", len(r.Recorded), len(r.Rerun), len(r.Same))
	default:
		fmt.Fprintf(w, "NOT REPRODUCED: the rerun passed (%d failure(s) recorded)\n", len(r.Recorded))
	}
	for _, l := range []struct {
		title string
		cells []string
	}{{"same", r.Same}, {"only recorded", r.Gone}, {"only in the rerun", r.New}} {
		if len(l.cells) > 0 {
			fmt.Fprintf(w, "  %s:\n    %s\n", l.title, strings.Join(l.cells, "\n    "))
		}
	}
	if r.RerunBundle != "" {
		fmt.Fprintf(w, "rerun bundle: %s\n", r.RerunBundle)
	}
}
