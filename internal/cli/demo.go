package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/workshop"
	"github.com/starlab-dev/starlab/internal/workshop/tui"
	"github.com/starlab-dev/starlab/manifests"
)

// demoOptions are the flags of `starlab demo`.
type demoOptions struct {
	oo          observerOptions
	port        int
	open        bool
	list        bool
	script      bool
	scripted    bool
	tui         bool
	up          bool
	output      string
	steps       string
	record      string
	stepTimeout time.Duration
}

// demoWalk is what `starlab demo --scripted -o json` prints.
type demoWalk struct {
	Steps  []workshop.StepResult `json:"steps"`
	Failed int                   `json:"failed"`
}

// newDemoCommand returns `starlab demo`.
func newDemoCommand(g *globalOptions) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Present the talk: a local presenter page walking the three parts step by step, live",
		Long: `demo serves a presenter page (no internet needed) on 127.0.0.1 that walks the talk's parts:
the datapath and observer, the shop under Hubble-style visibility, and the stars demo under policy.
Each step shows its narrative, the YAML it applies and the kubectl line, the live map, the
reachability matrix expected by the oracle next to the one probed from inside the pods, and the
step's flows. Keys: → next, ← back (undoes the step), r reset the part, f flows.

--tui plays the same steps in this terminal, for a presenter without a browser.
--scripted walks every step headless and prints each result (exit status 1 when one differs);
--list prints the steps, --script a shell script of their kubectl lines to rehearse without Starlab.
--steps DIR reads the parts from your own YAML files (see internal/workshop/parts).`,
		Example: `  starlab demo --open
  starlab demo --tui
  starlab demo --scripted -o json > walk.json
  starlab demo --script > rehearse.sh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd, g, &o) },
	}
	o.oo.register(cmd)
	f := cmd.Flags()
	f.IntVar(&o.port, "port", 12100, "local port of the presenter page (0: any free port)")
	f.BoolVar(&o.open, "open", false, "open the page with xdg-open")
	f.BoolVar(&o.list, "list", false, "print the parts and steps and exit")
	f.BoolVar(&o.script, "script", false, "print every step's commands as a shell script and exit")
	f.BoolVar(&o.up, "up", false, "start the lab first when it is not running (as `starlab up`, with its progress); without it a terminal asks")
	f.BoolVar(&o.tui, "tui", false, "play the steps in this terminal instead of a browser page (same keys; q quits)")
	f.BoolVar(&o.scripted, "scripted", false, "walk every step headless, print each result, exit 1 if one differs")
	f.StringVarP(&o.output, "output", "o", "text", "output of --list and --scripted: text or json")
	f.StringVar(&o.record, "record", "", "with --scripted: write each step's result, matrix and a page screenshot into this directory")
	f.StringVar(&o.steps, "steps", "", "directory of part YAML files (default: the talk's three parts)")
	f.DurationVar(&o.stepTimeout, "step-timeout", workshop.DefaultStepTimeout, "bound of one step (apply, programming, probes)")
	return cmd
}

func runDemo(cmd *cobra.Command, g *globalOptions, o *demoOptions) error {
	if err := outputFormat(o.output, "text", "json"); err != nil {
		return err
	}
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port %d: use 0 (any free port) or 1-65535", o.port)
	}
	if o.record != "" && !o.scripted {
		return fmt.Errorf("--record %s needs --scripted (the recording is of the headless walk)", o.record)
	}
	if o.tui && (o.scripted || o.open) {
		return errors.New("--tui is the terminal walk: leave out --scripted and --open")
	}
	if o.stepTimeout <= 0 {
		return fmt.Errorf("--step-timeout %s: use a positive duration, e.g. 90s", o.stepTimeout)
	}
	parts, err := demoParts(o.steps)
	if err != nil {
		return err
	}
	out := stdout(cmd)
	switch {
	case o.list && o.output == "json":
		return writeJSON(out, workshop.Script(parts))
	case o.list:
		return workshop.WriteList(out, parts)
	case o.script:
		return workshop.WriteShellScript(out, parts)
	}
	ctx := cmd.Context()
	log := slog.Default()
	if o.tui {
		// The terminal belongs to the walk: the log goes to a file, named when the walk ends.
		f, err := os.CreateTemp("", "starlab-demo-*.log")
		if err != nil {
			return fmt.Errorf("log file of the terminal walk: %w", err)
		}
		defer func() {
			f.Close()
			fmt.Fprintf(cmd.ErrOrStderr(), "log of the walk: %s\n", f.Name())
		}()
		log = slog.New(slog.NewTextHandler(f, nil))
	}
	if err := ensureDemoLab(cmd, g, o); err != nil {
		return err
	}
	cluster, closeFn, err := demoCluster(ctx, g, o, log)
	if err != nil {
		return err
	}
	defer closeFn()
	runner := workshop.NewRunner(parts, manifests.FS, cluster, log)
	runner.SetTimeout(o.stepTimeout)
	if o.scripted {
		var rec *workshop.Recorder
		if o.record != "" {
			rec = &workshop.Recorder{Dir: o.record}
			url, stop, err := startDemoServer(ctx, runner, cluster, 0)
			if err != nil {
				return err
			}
			defer stop()
			rec.URL = url
		}
		return walkDemo(ctx, runner, out, o.output, rec)
	}
	if o.tui {
		return tui.Run(ctx, runner)
	}
	return serveDemo(ctx, cmd, runner, cluster, o)
}

// demoParts loads the talk's parts, or a presenter's from dir.
func demoParts(dir string) ([]workshop.Part, error) {
	var partsFS fs.FS
	if dir == "" {
		sub, err := fs.Sub(workshop.DefaultParts, "parts")
		if err != nil {
			return nil, fmt.Errorf("embedded parts: %w", err)
		}
		partsFS = sub
	} else {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--steps %s: not a directory of part YAML files (see internal/workshop/parts)", dir)
		}
		partsFS = os.DirFS(dir)
	}
	parts, err := workshop.LoadParts(partsFS, manifests.FS)
	if err != nil && dir != "" {
		return nil, fmt.Errorf("--steps %s: %w", dir, err)
	}
	return parts, err
}

// ensureDemoLab starts the lab when it is not running and the presenter wants it: --up, or a yes on
// the terminal. Without either, demoCluster says how to start it.
func ensureDemoLab(cmd *cobra.Command, g *globalOptions, o *demoOptions) error {
	if o.oo.kubeconfig != "" {
		return nil // another cluster: not ours to start
	}
	l, err := lab.Open(g.clusterName)
	if err != nil {
		return err
	}
	ex, err := l.Inspect(cmd.Context())
	if err != nil {
		return fmt.Errorf("look for lab %q: %w", g.clusterName, err)
	}
	if ex.State == lab.StateRunning {
		return nil
	}
	if !o.up {
		in, ok := cmd.InOrStdin().(*os.File)
		if !ok || !isatty.IsTerminal(in.Fd()) {
			return nil
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "lab %q is %s. Start it now (2-4 minutes with a cached node image)? [Y/n] ", g.clusterName, ex.State)
		answer, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(answer)); a != "" && a != "y" && a != "yes" {
			return nil
		}
	}
	up := newUpCommand(g)
	up.SetContext(cmd.Context())
	up.SetOut(cmd.ErrOrStderr()) // the demo's own output stays clean
	up.SetErr(cmd.ErrOrStderr())
	if err := up.RunE(up, nil); err != nil {
		return fmt.Errorf("start lab %q for the demo: %w", g.clusterName, err)
	}
	return nil
}

// demoCluster reaches the lab: its API server, its observer (port-forward) and its node containers.
func demoCluster(ctx context.Context, g *globalOptions, o *demoOptions, log *slog.Logger) (*workshop.KubeCluster, func(), error) {
	var opts []lab.Option
	if o.oo.kubeconfig != "" {
		opts = append(opts, lab.WithKubeconfigPath(o.oo.kubeconfig))
	}
	l, err := lab.Open(g.clusterName, opts...)
	if err != nil {
		return nil, nil, err
	}
	if o.oo.kubeconfig == "" {
		ex, err := l.Inspect(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("look for lab %q: %w", g.clusterName, err)
		}
		if ex.State != lab.StateRunning {
			return nil, nil, fmt.Errorf("lab %q is %s: start it with `starlab up --name %s` (2-4 minutes), or run `starlab demo --up`", g.clusterName, ex.State, g.clusterName)
		}
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	base, closeObs, _, err := o.oo.connect(ctx, g, 0)
	if err != nil {
		return nil, nil, err
	}
	c, err := workshop.NewKubeCluster(cfg, &observer.Client{Base: base}, workshop.DockerExec, log)
	if err != nil {
		closeObs()
		return nil, nil, err
	}
	return c, func() { c.Close(); closeObs() }, nil
}

// walkDemo runs every step in order and prints each result.
func walkDemo(ctx context.Context, r *workshop.Runner, out io.Writer, output string, rec *workshop.Recorder) error {
	var walk demoWalk
	res, err := r.Start(ctx)
	for {
		if err != nil && !errors.Is(err, workshop.ErrEnd) {
			return fmt.Errorf("step %s/%s: %w", res.PartName, res.StepName, err)
		}
		if errors.Is(err, workshop.ErrEnd) {
			break
		}
		walk.Steps = append(walk.Steps, res)
		if !res.OK() {
			walk.Failed++
		}
		if output == "text" {
			printStep(out, r.Parts(), res)
		}
		if rec != nil {
			shot, err := rec.Record(ctx, len(walk.Steps), res)
			if err != nil {
				return err
			}
			slog.Info("recorded", "step", res.PartName+"/"+res.StepName, "screenshot", shot)
		}
		res, err = r.Next(ctx)
	}
	if output == "json" {
		if err := writeJSON(out, walk); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "\n%d steps, %d differ\n", len(walk.Steps), walk.Failed)
	}
	if walk.Failed > 0 {
		return fmt.Errorf("%d of %d steps differ from what they expect: see the diffs above", walk.Failed, len(walk.Steps))
	}
	return nil
}

func printStep(w io.Writer, parts []workshop.Part, res workshop.StepResult) {
	st := parts[res.Part].Steps[res.Step]
	fmt.Fprintf(w, "\n== %d.%d %s / %s: %s  [%s] programmed %.0f ms, probed %.0f ms, total %.0f ms\n",
		res.Part+1, res.Step+1, res.PartName, res.StepName, st.Title, res.Phase, res.ProgrammedMs, res.ProbedMs, res.TotalMs)
	if line := st.Kubectl(); line != "" {
		fmt.Fprintf(w, "$ %s\n", line)
	}
	for _, c := range res.Checks {
		fmt.Fprintf(w, "  %s %s: %s\n", map[bool]string{true: "ok  ", false: "FAIL"}[c.OK], c.Subject, c.Detail)
	}
	if res.Expected != nil {
		fmt.Fprintf(w, "expected (oracle):\n%sprobed:\n%s", res.Expected.Text(), res.Probed.Text())
	}
	for _, d := range res.Diffs {
		fmt.Fprintf(w, "  DIFF %s\n", d)
	}
	if res.Error != "" {
		fmt.Fprintf(w, "  ERROR %s\n", res.Error)
	}
	fmt.Fprintf(w, "flows: %d\n", len(res.Flows))
}

// startDemoServer serves the presenter page on 127.0.0.1:port in the background and returns its URL.
func startDemoServer(ctx context.Context, r *workshop.Runner, c workshop.Cluster, port int) (string, func(), error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", nil, fmt.Errorf("listen on 127.0.0.1:%d: %w", port, err)
	}
	srv := &http.Server{Handler: workshop.NewServer(ctx, r, c, slog.Default()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/", func() { _ = srv.Close() }, nil
}

// serveDemo starts the script and serves the presenter page until ctx ends.
func serveDemo(ctx context.Context, cmd *cobra.Command, r *workshop.Runner, c workshop.Cluster, o *demoOptions) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", o.port))
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1:%d: %w (pass another --port, or 0 for any free one)", o.port, err)
	}
	srv := &http.Server{Handler: workshop.NewServer(ctx, r, c, slog.Default()), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintf(stdout(cmd), "Starlab workshop: %s\n(→ next, ← back, r reset, f flows; Ctrl-C to stop)\n", url)
	go func() {
		if _, err := r.Start(ctx); err != nil {
			slog.Warn("first step failed: the page shows why", "err", err)
		}
	}()
	if o.open {
		opener := exec.CommandContext(ctx, "xdg-open", url)
		if err := opener.Start(); err != nil {
			slog.Warn("could not open a browser; open the URL yourself", "url", url, "err", err)
		} else {
			go func() { _ = opener.Wait() }()
		}
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("presenter page: %w", err)
	}
	return nil
}
