package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
)

type conformanceOptions struct {
	profile, kubeconfig, image, flows, wait, output, reportDir string
	include, exclude, modes                                    []string
	timeout, programTimeout, flowWait                          time.Duration
	list, keep, all                                            bool
}

// newConformanceCommand returns `starlab conformance`: generated NetworkPolicy cases, probed and
// observed, compared with the oracle.
func newConformanceCommand(g *globalOptions) *cobra.Command {
	o := &conformanceOptions{}
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run the generated NetworkPolicy conformance suite (expected vs probed vs observed)",
		Long: "Creates namespaces x, y, z with pods a, b, c (the demo probe serving TCP and UDP on 80 and 81),\n" +
			"then for each generated case applies its policies and labels, waits until they are programmed\n" +
			"(Starlab: every node's starlab.dev/policy-revision; other CNIs: the probed matrix is stable),\n" +
			"probes every pod pair on every port at once, confirms unexpected denials once more, and compares\n" +
			"with the oracle and (--flows=starlab) with the observer's flows of exactly those connections.\n" +
			"Target: the lab (--name) or any cluster (--kubeconfig, --image). Reports: truth tables, JUnit\n" +
			"XML, Markdown and JSON in --report-dir. SCTP is not probed (tag sctp, excluded by default).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runConformance(cmd, g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.profile, "profile", conformance.ProfileFull, "case set: full (every generated case) or quick (about ten, for CI)")
	f.StringSliceVar(&o.include, "include", nil, "run only cases with one of these tags (see --list)")
	f.StringSliceVar(&o.exclude, "exclude", conformance.DefaultExcludes(), "skip cases with any of these tags")
	f.StringSliceVar(&o.modes, "modes", conformance.AllModes(), "probe modes: pod-ip (the pod's IP), service-ip (the ClusterIP of its Service s-<pod>), service-name (s-<pod>.<ns>.svc.cluster.local through the cluster DNS; policies isolating egress then also allow DNS)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "run against this cluster instead of the lab (needs --image unless it runs the Starlab demos)")
	f.StringVar(&o.image, "image", "", "starlab-demo image the nodes can pull (default: the lab's demo image)")
	f.StringVar(&o.flows, "flows", "", "compare with flows: starlab (the Starlab observer) or none (default: starlab for the lab, none with --kubeconfig)")
	f.StringVar(&o.wait, "wait", "auto", "how to know a state is programmed: revision (Starlab annotation), stable (matrix unchanged twice), auto")
	f.DurationVar(&o.timeout, "timeout", time.Second, "timeout of one probe connection (a denied probe costs it)")
	f.DurationVar(&o.programTimeout, "program-timeout", time.Minute, "how long one state may take to be programmed")
	f.DurationVar(&o.flowWait, "flow-wait", 5*time.Second, "how long to wait for the flows of a matrix to be conclusive")
	f.StringVarP(&o.output, "output", "o", "text", "output: text, markdown or json")
	f.StringVar(&o.reportDir, "report-dir", "", "where junit.xml, summary.md and report.json go (default out/conformance/<time>)")
	f.BoolVar(&o.list, "list", false, "list the selected cases and their tags, run nothing")
	f.BoolVar(&o.keep, "keep", false, "keep namespaces x, y, z after the run")
	f.BoolVar(&o.all, "all-tables", false, "print the truth tables of passing cases too")
	return cmd
}

func runConformance(cmd *cobra.Command, g *globalOptions, o *conformanceOptions) error {
	if err := outputFormat(o.output, "text", "markdown", "json"); err != nil {
		return err
	}
	ctx := cmd.Context()
	out, prog := stdout(cmd), progressOut(cmd, o.output)
	u := conformance.NewUniverse()
	sel := conformance.Selection{Profile: o.profile, Include: o.include, Exclude: o.exclude}
	if _, err := conformance.Select(conformance.Generate(u), sel); err != nil {
		return err
	}
	if o.list {
		cases, _ := conformance.Select(conformance.Generate(u), sel)
		for _, c := range cases {
			fmt.Fprintf(out, "%-50s %s\n", c.Name, strings.Join(c.Tags, ","))
		}
		fmt.Fprintf(out, "%d cases\n", len(cases))
		return nil
	}
	modes, err := conformance.ParseModes(o.modes)
	if err != nil {
		return err
	}
	setupStart := time.Now()
	target, err := conformanceTarget(ctx, g, o)
	if err != nil {
		return err
	}
	if o.image == "" {
		if o.image, err = conformance.DiscoverDemoImage(ctx, target.Client); err != nil {
			return fmt.Errorf("%s: %w", target.Description, err)
		}
	}
	fmt.Fprintf(prog, "target %s, probe image %s: creating namespaces x, y, z with pods a, b, c and their Services\n", target.Description, o.image)
	if !o.keep {
		defer func() {
			if err := conformance.DeleteWorkloads(context.WithoutCancel(ctx), target.Client, u); err != nil {
				slog.Warn("delete the conformance namespaces", "err", err)
			}
		}()
	}
	if err := conformance.EnsureWorkloads(ctx, target.Client, u, o.image, 3*time.Minute); err != nil {
		return fmt.Errorf("%s: %w", target.Description, err)
	}
	// Cases with ipBlock peers use the real pod IPs: generate them now.
	cases, err := conformance.Select(conformance.Generate(u), sel)
	if err != nil {
		return err
	}
	runner := &conformance.Runner{Client: target.Client, Policies: target.Policies, Universe: u, Opts: conformance.Options{
		Timeout: o.timeout, ProgramTimeout: o.programTimeout, FlowWait: o.flowWait, Modes: modes, Progress: prog, Log: slog.Default(),
	}}
	if runner.Opts.Wait, err = conformanceWait(ctx, target, o.wait); err != nil {
		return err
	}
	prober := conformance.NewDemoProber(conformance.PortForwarder(target.REST))
	defer prober.Close()
	runner.Prober = prober
	flows := o.flows
	if flows == "" {
		flows = "starlab"
		if o.kubeconfig != "" {
			flows = "none"
		}
	}
	switch flows {
	case "none":
	case "starlab":
		fwd, err := observer.PortForward(ctx, target.REST, observer.DefaultNamespace, 0)
		if err != nil {
			return fmt.Errorf("--flows=starlab: %w (or pass --flows=none to compare probes only)", err)
		}
		defer fwd.Close()
		runner.Flows = &observer.Client{Base: fwd.URL()}
	default:
		return fmt.Errorf("--flows %q: use starlab or none", flows)
	}
	report := &conformance.Report{Target: target.Description, Flows: flows, Profile: o.profile, Started: time.Now().UTC()}
	report.Setup = time.Since(setupStart)
	fmt.Fprintf(prog, "running %d cases (modes: %s, wait: %s, flows: %s, probe timeout %s)\n", len(cases), strings.Join(modes, ","), runner.Opts.Wait, flows, o.timeout)
	runErr := runner.Run(ctx, cases, report)
	report.Duration = time.Since(report.Started)
	report.Tally()
	dir, err := writeConformanceReports(o, report, prog)
	if err != nil {
		return err
	}
	var bundleLine string
	if report.Failed > 0 && o.kubeconfig == "" {
		bundleLine = conformanceBundleLine(ctx, g.clusterName, dir, u, cases, modes, report, runner.Flows)
	}
	switch o.output {
	case "json":
		if err := writeJSON(out, report); err != nil {
			return err
		}
	case "markdown":
		conformance.WriteMarkdown(out, report)
	default:
		conformance.WriteText(out, report, o.all)
	}
	if runErr != nil {
		return fmt.Errorf("%w%s", runErr, bundleLine)
	}
	if report.Failed > 0 {
		return fmt.Errorf("%d of %d conformance cases failed%s", report.Failed, len(report.Cases), bundleLine)
	}
	return nil
}

// conformanceTarget is the lab (default) or the --kubeconfig cluster, checked to answer.
func conformanceTarget(ctx context.Context, g *globalOptions, o *conformanceOptions) (conformance.Target, error) {
	if o.kubeconfig != "" {
		return conformance.Connect(ctx, o.kubeconfig, "cluster of --kubeconfig "+o.kubeconfig)
	}
	l, err := lab.Open(g.clusterName)
	if err != nil {
		return conformance.Target{}, err
	}
	kc, err := l.WriteKubeconfig(ctx)
	if err != nil {
		return conformance.Target{}, fmt.Errorf("lab %q is not running (start it with `starlab up --name %s`, or pass --kubeconfig): %w", g.clusterName, g.clusterName, err)
	}
	return conformance.Connect(ctx, kc, fmt.Sprintf("lab %q", g.clusterName))
}

func conformanceWait(ctx context.Context, t conformance.Target, mode string) (string, error) {
	switch mode {
	case conformance.WaitRevision, conformance.WaitStable:
		return mode, nil
	case "auto":
		ok, err := conformance.HasRevisionAnnotation(ctx, t.Client)
		if err != nil {
			return "", fmt.Errorf("%s: %w", t.Description, err)
		}
		if ok {
			return conformance.WaitRevision, nil
		}
		return conformance.WaitStable, nil
	default:
		return "", fmt.Errorf("--wait %q: use auto, revision or stable", mode)
	}
}

// conformanceBundleLine writes the failure bundle of the run's first failed case and returns how the
// error names it (or why there is none).
func conformanceBundleLine(ctx context.Context, labName, dir string, u *conformance.Universe, cases []conformance.Case, modes []string, report *conformance.Report, flows conformance.FlowSource) string {
	rec, err := conformanceFailure(ctx, u, cases, modes, report, flows)
	if rec == nil {
		return fmt.Sprintf("; failure bundle not written: %v", err)
	}
	if err != nil {
		slog.Warn("failure bundle without the step's flows", "err", err)
	}
	res, err := writeConformanceBundle(ctx, labName, dir, rec)
	if err != nil && res.Path == "" {
		return fmt.Sprintf("; failure bundle not written: %v", err)
	}
	return fmt.Sprintf("; failure bundle of case %s: %s (reproduce it with `starlab repro %s`)", rec.Case.Name, res.Path, res.Path)
}

// writeConformanceReports writes junit.xml, summary.md and report.json into the report directory
// and returns it.
func writeConformanceReports(o *conformanceOptions, r *conformance.Report, prog io.Writer) (string, error) {
	dir := o.reportDir
	if dir == "" {
		dir = filepath.Join("out", "conformance", r.Started.Format("20060102-150405"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("report directory %s: %w", dir, err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("create report %s: %w", name, err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write report %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("junit.xml", func(w io.Writer) error { return conformance.WriteJUnit(w, r) }); err != nil {
		return "", err
	}
	if err := write("summary.md", func(w io.Writer) error { conformance.WriteMarkdown(w, r); return nil }); err != nil {
		return "", err
	}
	if err := write("truth-tables.txt", func(w io.Writer) error { conformance.WriteText(w, r, true); return nil }); err != nil {
		return "", err
	}
	if err := write("report.json", func(w io.Writer) error { return writeJSON(w, r) }); err != nil {
		return "", err
	}
	fmt.Fprintf(prog, "reports in %s (junit.xml, summary.md, truth-tables.txt, report.json)\n", dir)
	return dir, nil
}
