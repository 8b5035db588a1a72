package repro

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/starlab-dev/starlab/internal/bundle"
	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/nodeimage"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/scenarios"
)

// Options of Run.
type Options struct {
	Bundle    string    // the failure bundle (.tar.gz)
	Name      string    // name of the fresh lab; "" = repro-<random>
	Keep      bool      // leave the lab after the rerun
	BinDir    string    // Starlab binaries ("" = next to this executable)
	CacheDir  string    // node image cache ("" = $STARLAB_CACHE or /var/cache/starlab)
	ReportDir string    // where the rerun reports (and its own failure bundle) go; "" = out/repro/<time>
	Out       io.Writer // progress; nil = io.Discard
	Log       *slog.Logger
}

// Result is what Run found.
type Result struct {
	Bundle      string       `json:"bundle"`
	Kind        string       `json:"kind"`
	Test        string       `json:"test"`
	Step        string       `json:"step"`
	Differences []Difference `json:"differences"`
	Lab         string       `json:"lab,omitempty"`
	Kept        bool         `json:"kept"`
	Comparison
	RerunBundle string        `json:"rerunBundle,omitempty"`
	ReportDir   string        `json:"reportDir,omitempty"`
	LabDuration time.Duration `json:"labDurationNs"`
	Duration    time.Duration `json:"durationNs"`
}

// HereNow is this Starlab: its build, its supported versions and its node images (cacheDir).
func HereNow(cacheDir string) Here {
	return Here{
		Starlab:   bundle.StarlabVersion(),
		Supported: nodeimage.SupportedVersions(),
		NodeImage: func(ctx context.Context, version string) (string, bool, error) {
			ref, _, present, err := nodeimage.Lookup(ctx, nodeimage.Options{KubernetesVersion: version, CacheDir: cacheDir})
			return ref, present, err
		},
	}
}

// Open reads a bundle and its failing test.
func Open(path string) (*bundle.Opened, *bundle.Record, error) {
	b, err := bundle.Open(path)
	if err != nil {
		return nil, nil, err
	}
	rec, err := b.Record()
	if err != nil {
		return nil, nil, err
	}
	return b, rec, nil
}

// Run reproduces the bundle's failure on a fresh lab. Nothing is created when the bundle cannot be
// read or this Starlab cannot replay it; a lab that fails half-way is deleted (unless Keep).
func Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	_, rec, err := Open(opts.Bundle)
	if err != nil {
		return nil, err
	}
	res := &Result{Bundle: opts.Bundle, Kind: rec.Kind, Test: rec.Test(), Step: rec.Step.Text}
	res.Differences, err = Check(ctx, rec, HereNow(opts.CacheDir))
	if err != nil {
		return res, fmt.Errorf("bundle %s: %w", opts.Bundle, err)
	}
	for _, d := range res.Differences {
		fmt.Fprintf(opts.Out, "differs: %s\n", d)
	}
	if bl := Blocking(res.Differences); len(bl) > 0 {
		return res, fmt.Errorf("this Starlab cannot replay bundle %s (nothing was created): %s", opts.Bundle, bl[0])
	}
	if opts.Name == "" {
		opts.Name = "repro-" + strconv.FormatInt(time.Now().UnixNano()%100000, 10)
	}
	if opts.ReportDir == "" {
		opts.ReportDir = filepath.Join("out", "repro", time.Now().UTC().Format("20060102-150405"))
	}
	res.Lab, res.ReportDir = opts.Name, opts.ReportDir
	l, err := lab.Open(opts.Name, lab.WithLogger(opts.Log))
	if err != nil {
		return res, err
	}
	ex, err := l.Inspect(ctx)
	if err != nil {
		return res, err
	}
	if ex.State != lab.StateAbsent {
		return res, fmt.Errorf("lab %q exists: starlab repro makes a fresh lab, pass another --name or delete it with `starlab down --name %s`", opts.Name, opts.Name)
	}
	labStart := time.Now()
	up, err := freshLab(ctx, l, rec, opts)
	res.LabDuration = time.Since(labStart)
	defer func() {
		if opts.Keep {
			res.Kept = true
			fmt.Fprintf(opts.Out, "keeping lab %q (--keep): delete it with `starlab down --name %s`\n", opts.Name, opts.Name)
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if derr := l.Delete(dctx); derr != nil {
			opts.Log.Error("delete the repro lab", "lab", opts.Name, "err", derr)
		}
	}()
	if err != nil {
		return res, fmt.Errorf("fresh lab %q for the repro: %w", opts.Name, err)
	}
	var rerun *bundle.Record
	switch rec.Kind {
	case bundle.RecordScenario:
		rerun, res.RerunBundle, err = rerunScenario(ctx, rec, up, opts)
	case bundle.RecordConformance:
		rerun, err = rerunCase(ctx, rec, up.Kubeconfig, opts)
	}
	if err != nil {
		return res, err
	}
	res.Comparison = Compare(rec, rerun)
	res.Duration = time.Since(start)
	return res, nil
}

// freshLab creates the lab with the bundle's Kubernetes version, workers and chart values, from the
// node image at hand (never building one).
func freshLab(ctx context.Context, l *lab.Lab, rec *bundle.Record, opts Options) (*lab.UpResult, error) {
	p := scenarios.NewLabProvider(opts.Log, opts.Out).WithWorkers(rec.Inputs.Workers)
	p.WithVersion(rec.Inputs.KubernetesVersion)
	p.WithPath(opts.BinDir)
	up := p.UpOptions()
	up.ChartValues = userChartValues(rec.Inputs.ChartValues)
	build := up.BuildNodeImage
	up.BuildNodeImage = func(ctx context.Context, v string) (lab.NodeImage, error) {
		ref, _, present, err := nodeimage.Lookup(ctx, nodeimage.Options{KubernetesVersion: v, CacheDir: opts.CacheDir})
		if err != nil {
			return lab.NodeImage{}, err
		}
		if !present {
			return lab.NodeImage{}, fmt.Errorf("node image %s is not in the cache: build it with `starlab image build --kubernetes-version %s`", ref, v)
		}
		return build(ctx, v)
	}
	return l.Up(ctx, up)
}

// userChartValues are the recorded chart values without those `starlab up` computes for the lab
// it creates (images, API server address).
func userChartValues(vals map[string]any) map[string]any {
	b, err := json.Marshal(vals)
	if err != nil {
		return nil
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil
	}
	for _, part := range []string{"agent", "observer"} {
		if m, ok := out[part].(map[string]any); ok {
			delete(m, "image")
			delete(m, "apiServer")
			if len(m) == 0 {
				delete(out, part)
			}
		}
	}
	return out
}

// rerunScenario applies the recorded objects in order, then runs the recorded scenario (its feature
// file, filtered to the scenario's line) and returns the record of its failing step, read back from
// the failure bundle the rerun wrote (nil: the scenario passed).
func rerunScenario(ctx context.Context, rec *bundle.Record, up *lab.UpResult, opts Options) (*bundle.Record, string, error) {
	env, err := scenarios.NewEnv(up.Name, up.Kubeconfig, opts.ReportDir, opts.Log)
	if err != nil {
		return nil, "", err
	}
	defer env.Close()
	if err := ApplyObjects(ctx, env, rec.Objects, up.Images); err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "starlab-repro-")
	if err != nil {
		return nil, "", fmt.Errorf("temporary feature directory: %w", err)
	}
	defer os.RemoveAll(dir)
	feature := filepath.Join(dir, filepath.Base(rec.Scenario.FeatureFile))
	if err := os.WriteFile(feature, rec.Feature, 0o644); err != nil {
		return nil, "", fmt.Errorf("write the bundle's feature file: %w", err)
	}
	fmt.Fprintf(opts.Out, "rerunning %q (%s:%d) on lab %q\n", rec.Scenario.Name, rec.Scenario.FeaturePath, rec.Scenario.Line, up.Name)
	status, err := scenarios.RunSuite(ctx, env, scenarios.SuiteOptions{Paths: []string{feature + ":" + strconv.Itoa(rec.Scenario.Line)}, Output: opts.Out})
	if err != nil {
		return nil, "", err
	}
	bundles := env.Bundles()
	if status == 0 {
		return nil, "", nil
	}
	if len(bundles) == 0 {
		return nil, "", fmt.Errorf("the rerun of %q failed but wrote no failure bundle (see %s)", rec.Scenario.Name, opts.ReportDir)
	}
	// A scenario stops at its first failing step: one bundle, unless a cleanup failed too.
	var first *bundle.Record
	for _, p := range bundles {
		_, got, err := Open(p)
		if err != nil {
			return nil, p, err
		}
		if got.Step.Text == rec.Step.Text {
			return got, p, nil
		}
		if first == nil {
			first = got
		}
	}
	return first, bundles[0], nil
}

// ApplyObjects applies (or deletes) the recorded objects in order, with this lab's images.
func ApplyObjects(ctx context.Context, env *scenarios.Env, objs []bundle.AppliedObject, images map[string]string) error {
	for i, o := range objs {
		data, err := json.Marshal(o.Object)
		if err != nil {
			return fmt.Errorf("object %d: %w", i, err)
		}
		data = []byte(lab.SubstituteImages(string(data), images))
		switch o.Op {
		case "apply":
			_, err = env.Apply(ctx, data)
		case "delete":
			_, err = env.Delete(ctx, data)
		default:
			err = fmt.Errorf("op %q: want apply or delete", o.Op)
		}
		if err != nil {
			return fmt.Errorf("recorded object %d (%s): %w", i, o.Op, err)
		}
	}
	return nil
}

// rerunCase runs the recorded conformance case alone on the lab (its states applied in order by
// the runner, as in the recorded run) and returns the record of its failure (nil: it passed).
func rerunCase(ctx context.Context, rec *bundle.Record, kubeconfig string, opts Options) (*bundle.Record, error) {
	target, err := conformance.Connect(ctx, kubeconfig, "repro lab "+opts.Name)
	if err != nil {
		return nil, err
	}
	image, err := conformance.DiscoverDemoImage(ctx, target.Client)
	if err != nil {
		return nil, err
	}
	u := conformance.NewUniverse()
	defer func() { _ = conformance.DeleteWorkloads(context.WithoutCancel(ctx), target.Client, u) }()
	if err := conformance.EnsureWorkloads(ctx, target.Client, u, image, 3*time.Minute); err != nil {
		return nil, err
	}
	cases := conformance.Generate(u)
	i := slices.IndexFunc(cases, func(c conformance.Case) bool { return c.Name == rec.Case.Name })
	if i < 0 {
		return nil, fmt.Errorf("this Starlab generates no conformance case %q (`starlab conformance --list`): the bundle comes from another case set", rec.Case.Name)
	}
	modes, err := conformance.ParseModes(rec.Case.Modes)
	if err != nil {
		return nil, err
	}
	runner := &conformance.Runner{Client: target.Client, Universe: u, Opts: conformance.Options{
		Timeout: time.Second, ProgramTimeout: time.Minute, FlowWait: 5 * time.Second, Modes: modes, Wait: conformance.WaitRevision, Progress: opts.Out, Log: opts.Log,
	}}
	prober := conformance.NewDemoProber(conformance.PortForwarder(target.REST))
	defer prober.Close()
	runner.Prober = prober
	fwd, err := observer.PortForward(ctx, target.REST, observer.DefaultNamespace, 0)
	if err != nil {
		return nil, err
	}
	defer fwd.Close()
	runner.Flows = &observer.Client{Base: fwd.URL()}
	report := &conformance.Report{Target: target.Description, Flows: "starlab", Started: time.Now().UTC()}
	if err := runner.Run(ctx, cases[i:i+1], report); err != nil {
		return nil, err
	}
	return caseFailure(rec, report)
}

// caseFailure is the rerun's record of the recorded step of the recorded case (nil: it passed).
func caseFailure(rec *bundle.Record, report *conformance.Report) (*bundle.Record, error) {
	if len(report.Cases) != 1 {
		return nil, fmt.Errorf("the rerun of case %s reported %d cases, want 1", rec.Case.Name, len(report.Cases))
	}
	cr := report.Cases[0]
	if cr.Passed {
		return nil, nil
	}
	got := &bundle.Record{Kind: bundle.RecordConformance, Case: rec.Case, Error: cr.Error}
	for _, st := range cr.Steps {
		if st.Wrong == 0 && st.Error == "" {
			continue
		}
		// The case stops at its first failing step: the recorded one, or another.
		got.Step = bundle.StepRef{Text: st.Name, Started: st.Started, Ended: st.Ended}
		got.Cells = conformance.TruthCells(st.Cells)
		if st.Error != "" {
			got.Error = st.Error
		}
		return got, nil
	}
	return got, nil
}
