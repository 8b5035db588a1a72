package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/features"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/scenarios"
)

// newTestCommand returns `starlab test`: the Gherkin features against the current lab (or a fresh one).
func newTestCommand(g *globalOptions) *cobra.Command {
	var (
		fresh, keep           bool
		junit, cucumber, tags string
		reportDir, binDir     string
		workers               int
		stopOnFailure         bool
	)
	cmd := &cobra.Command{
		Use:   "test [FEATURE_FILE_OR_DIR...]",
		Short: "Run the Gherkin scenarios (default: the built-in features) against the lab",
		Long: "Runs the features in-process with the same steps as `go test -tags e2e ./scenarios`.\n" +
			"Without arguments it runs ./features when present, else the features built into starlab.\n" +
			"By default it uses the running lab (--name); --fresh creates starlab-e2e-<random>, runs, and deletes it.\n" +
			"Writes JUnit XML, cucumber JSON, flows NDJSON and failure dumps into the report directory.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out := stdout(cmd)
			log := slog.Default()
			if reportDir == "" {
				reportDir = filepath.Join("out", "test", time.Now().UTC().Format("20060102-150405"))
			}
			var (
				name, kubeconfig string
				provider         *scenarios.LabProvider
			)
			if fresh {
				provider = scenarios.NewLabProvider(log, cmd.ErrOrStderr()).WithWorkers(workers)
				provider.WithPath(binDir)
				provider.SetDefaults()
				name = provider.Name()
				fmt.Fprintf(out, "creating fresh lab %q\n", name)
				defer func() {
					if keep {
						fmt.Fprintf(out, "keeping lab %q (--keep): delete it with `starlab down --name %s`\n", name, name)
						return
					}
					if err := provider.Destroy(ctx); err != nil {
						log.Error("delete fresh lab", "name", name, "err", err)
					}
				}()
				var err error
				if kubeconfig, err = provider.Create(ctx); err != nil {
					return err
				}
			} else {
				name = g.clusterName
				l, err := lab.Open(name)
				if err != nil {
					return err
				}
				if kubeconfig, err = l.WriteKubeconfig(ctx); err != nil {
					return fmt.Errorf("lab %q is not running (start it with `starlab up --name %s`, or pass --fresh): %w", name, name, err)
				}
			}
			env, err := scenarios.NewEnv(name, kubeconfig, reportDir, log)
			if err != nil {
				return err
			}
			defer env.Close()
			opts := scenarios.SuiteOptions{Tags: tags, JUnitFile: junit, CucumberFile: cucumber, Output: out, StopOnFailure: stopOnFailure}
			switch {
			case len(args) > 0:
				opts.Paths = args
			case dirExists("features"):
				opts.Paths = []string{"features"}
			default:
				opts.FS, opts.Paths = features.FS, []string{"."}
				if _, err := fs.Stat(features.FS, "."); err != nil {
					return fmt.Errorf("built-in features: %w", err)
				}
			}
			what := fmt.Sprint(opts.Paths)
			if opts.FS != nil {
				what = "the built-in features"
			}
			fmt.Fprintf(out, "running %s against lab %q; reports in %s\n", what, name, reportDir)
			status, err := scenarios.RunSuite(ctx, env, opts)
			if err != nil {
				return err
			}
			if lat := env.ProgramLatencies(); len(lat) > 0 {
				fmt.Fprintln(out, scenarios.SummarizeLatencies(lat))
			}
			if status != 0 {
				msg := fmt.Sprintf("scenarios failed (godog status %d): see %s", status, reportDir)
				for _, b := range env.Bundles() {
					msg += "\nfailure bundle: " + b + " (`starlab repro " + b + "` reproduces it, `starlab replay " + b + "` replays its flows)"
				}
				return errors.New(msg)
			}
			fmt.Fprintf(out, "all scenarios passed; reports in %s\n", reportDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&fresh, "fresh", false, "create a new lab starlab-e2e-<random> for the run and delete it afterwards")
	f.BoolVar(&keep, "keep", false, "with --fresh: keep the lab after the run")
	f.IntVar(&workers, "workers", lab.DefaultWorkers, "with --fresh: number of worker nodes")
	f.StringVar(&binDir, "bin-dir", "", "with --fresh: directory of the Starlab binaries (default: next to this executable)")
	f.StringVar(&junit, "junit", "", "JUnit XML report file (default <report-dir>/junit.xml)")
	f.StringVar(&cucumber, "cucumber", "", "cucumber JSON report file (default <report-dir>/cucumber.json)")
	f.StringVar(&tags, "tags", "", `godog tag expression, e.g. "@stars"`)
	f.StringVar(&reportDir, "report-dir", "", "report bundle directory (default out/test/<time>)")
	f.BoolVar(&stopOnFailure, "stop-on-failure", false, "stop at the first failing scenario")
	return cmd
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
