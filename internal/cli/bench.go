package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/bench"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/nodeimage"
	"github.com/starlab-dev/starlab/internal/progress"
	"github.com/starlab-dev/starlab/internal/reflab"
)

// newBenchCommand returns `starlab bench` and its subcommands.
func newBenchCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Starlab's eBPF datapath against kube-proxy, side by side in two labs of this machine",
	}
	cmd.AddCommand(newBenchServicesCommand(g), newBenchPodsCommand(g))
	return cmd
}

// benchLabFlags are the labs a benchmark uses.
type benchLabFlags struct {
	reference, binDir, cacheDir, outDir, output string
	modes                                       []string
	workers                                     int
}

func (f *benchLabFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.reference, "reference", "bench-kp", "the kube-proxy reference lab (created when absent, same node image)")
	fl.StringSliceVar(&f.modes, "modes", []string{reflab.ModeIPTables, reflab.ModeNFTables}, "kube-proxy modes measured in the reference lab (none: Starlab alone)")
	fl.IntVar(&f.workers, "workers", 1, "worker nodes of a lab the benchmark creates")
	fl.StringVar(&f.binDir, "bin-dir", "", "directory holding starlab-cni and starlab-demo (default: next to this executable)")
	fl.StringVar(&f.cacheDir, "cache-dir", os.Getenv("STARLAB_CACHE"), "build cache directory (default $STARLAB_CACHE or /var/cache/starlab)")
	fl.StringVar(&f.outDir, "out-dir", "", "where the JSON and the SVG chart go (default out/bench/<time>)")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: text or json")
}

// setup opens the labs and returns the datapaths to measure.
func (f *benchLabFlags) setup(ctx context.Context, g *globalOptions, p *progress.Reporter) ([]bench.Datapath, error) {
	if len(f.modes) == 1 && f.modes[0] == "none" {
		f.modes = nil
	}
	binDir := f.binDir
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the starlab executable (pass --bin-dir): %w", err)
		}
		binDir = filepath.Dir(exe)
	}
	sl, err := lab.Open(g.clusterName)
	if err != nil {
		return nil, err
	}
	o := bench.SetupOptions{Starlab: sl, Modes: f.modes, BinDir: binDir,
		UpStarlab: func(ctx context.Context) error {
			opts := starlabUpOptions(f.workers, nodeimage.DefaultVersion, binDir, f.cacheDir, p)
			opts.Manifests = nil // no demo apps: the benchmark's own pods only
			_, err := sl.Up(ctx, opts)
			return err
		}}
	if len(f.modes) > 0 {
		if f.reference == g.clusterName {
			return nil, fmt.Errorf("--reference %q is the Starlab lab (--name): give the kube-proxy lab another name", f.reference)
		}
		ref, err := lab.Open(f.reference)
		if err != nil {
			return nil, err
		}
		kp, err := nodeimage.BuildKubeProxy(ctx, nodeimage.Options{CacheDir: f.cacheDir, Progress: p, Logger: slog.Default()})
		if err != nil {
			return nil, err
		}
		o.Reference, o.KubeProxyBinary = ref, kp.Binary
		o.UpReference = func(ctx context.Context) error {
			opts := starlabUpOptions(f.workers, nodeimage.DefaultVersion, binDir, f.cacheDir, p)
			opts.ClusterOnly = true
			_, err := ref.Up(ctx, opts)
			return err
		}
	}
	var dps []bench.Datapath
	err = p.Run("labs "+g.clusterName+" and "+f.reference, func() error {
		var err error
		dps, err = bench.Setup(ctx, o)
		return err
	})
	return dps, err
}

func (f *benchLabFlags) outPath(name string) (string, error) {
	dir := f.outDir
	if dir == "" {
		dir = filepath.Join("out", "bench", time.Now().UTC().Format("20060102-150405"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create output directory %s (pass --out-dir): %w", dir, err)
	}
	return filepath.Join(dir, name), nil
}

func newBenchServicesCommand(g *globalOptions) *cobra.Command {
	var (
		f      benchLabFlags
		counts []int
		quick  bool
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "ClusterIP connect latency, connections/s, create -> first connection, CPU and memory, against the number of Services",
		Long: "Creates N selectorless Services with one EndpointSlice each (two echo server pods) in the Starlab lab\n" +
			"(--name) and in the kube-proxy reference lab (--reference, iptables then nftables mode), growing N\n" +
			"through --counts, and at each N measures from a client pod: connect latency (p50, p99) to ClusterIPs\n" +
			"spread over all N, short-lived connections per second, the time from creating one more Service to its\n" +
			"first connection, and the CPU and memory of starlab-agent and kube-proxy. Prints a table with the\n" +
			"ratios, writes services.json and services.svg (latency against N). Bounded: every wait has a timeout.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(f.output, "text", "json"); err != nil {
				return err
			}
			opts := bench.FullServicesOptions(counts)
			if quick {
				opts = bench.QuickServicesOptions(counts)
			}
			opts.Log = slog.Default()
			p := progress.New(progressOut(cmd, f.output))
			dps, err := f.setup(cmd.Context(), g, p)
			if err != nil {
				return err
			}
			var rep *bench.ServicesReport
			runErr := p.Run("bench services", func() error {
				var err error
				rep, err = bench.RunServices(cmd.Context(), dps, opts)
				return err
			})
			if rep == nil {
				return runErr
			}
			jsonPath, err := f.outPath("services.json")
			if err != nil {
				return err
			}
			if err := writeJSONFile(jsonPath, rep); err != nil {
				return err
			}
			svgPath := filepath.Join(filepath.Dir(jsonPath), "services.svg")
			if len(rep.Points) > 0 {
				if err := writeSVGFile(svgPath, rep); err != nil {
					return err
				}
			}
			if runErr != nil {
				return fmt.Errorf("%w (partial results in %s)", runErr, jsonPath)
			}
			out := stdout(cmd)
			if f.output == "json" {
				return writeJSON(out, rep)
			}
			if err := bench.WriteTable(out, rep); err != nil {
				return err
			}
			fmt.Fprintf(out, "results: %s, chart: %s\n", jsonPath, svgPath)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().IntSliceVar(&counts, "counts", []int{10, 1000, 10000}, "numbers of Services measured, increasing (30000 where memory allows)")
	cmd.Flags().BoolVar(&quick, "quick", false, "short loads (2 s per measurement, 16 ClusterIPs): a check, not a measurement")
	return cmd
}

func writeJSONFile(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := writeJSON(f, v); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func writeSVGFile(path string, rep *bench.ServicesReport) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := bench.WriteSVG(f, rep); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

func newBenchPodsCommand(g *globalOptions) *cobra.Command {
	var (
		f        benchLabFlags
		policies []int
		duration time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pods",
		Short: "Pod-to-pod TCP_RR and TCP_STREAM across nodes, with 0, 10 and 1000 NetworkPolicies, against the reference lab",
		Long: "From the client pod to a server pod on another node (pod IPs, no Service): one connection doing\n" +
			"1-byte request/response transactions (TCP_RR), and one connection streaming 64 KiB writes through\n" +
			"the server's echo (TCP_STREAM). On Starlab with each number of policies selecting the server (each\n" +
			"allows the client, waited for on every node's policy revision); on the reference lab with none.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(f.output, "text", "json"); err != nil {
				return err
			}
			p := progress.New(progressOut(cmd, f.output))
			if len(f.modes) > 1 {
				f.modes = f.modes[:1] // one reference lab: the pod path does not depend on kube-proxy's mode
			}
			dps, err := f.setup(cmd.Context(), g, p)
			if err != nil {
				return err
			}
			var rep *bench.PodsReport
			runErr := p.Run("bench pods", func() error {
				var err error
				rep, err = bench.RunPods(cmd.Context(), dps, bench.PodsOptions{Policies: policies, Duration: duration, Workers: 16, Timeout: 5 * time.Minute,
					Quiet: bench.FullQuietOptions(), Log: slog.Default()})
				return err
			})
			if rep == nil {
				return runErr
			}
			jsonPath, err := f.outPath("pods.json")
			if err != nil {
				return err
			}
			if err := writeJSONFile(jsonPath, rep); err != nil {
				return err
			}
			if runErr != nil {
				return fmt.Errorf("%w (partial results in %s)", runErr, jsonPath)
			}
			if f.output == "json" {
				return writeJSON(stdout(cmd), rep)
			}
			if err := bench.WritePodsTable(stdout(cmd), rep); err != nil {
				return err
			}
			fmt.Fprintf(stdout(cmd), "results: %s\n", jsonPath)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().IntSliceVar(&policies, "policies", []int{0, 10, 1000}, "numbers of NetworkPolicies selecting the server pod (Starlab)")
	cmd.Flags().DurationVar(&duration, "duration", 10*time.Second, "length of each TCP_RR and TCP_STREAM load")
	return cmd
}
