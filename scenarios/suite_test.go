//go:build e2e

package scenarios

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/envfuncs"
)

// suite is what TestMain set up for the tests of this package: the e2e-framework environment and the
// scenarios' shared Env. Set once in TestMain, read by the tests.
type suite struct {
	testEnv  env.Environment
	provider *LabProvider
	env      *Env
}

var e2e suite

// TestMain brings up a lab with our own cluster provider (internal/lab) and runs the features on it:
//   - STARLAB_LAB=<name>: reuse (and upgrade) that running lab, leave it running afterwards;
//   - unset: create starlab-e2e-<random> and destroy it at the end, also on failure;
//   - STARLAB_LAB=<name> STARLAB_AS_IS=1: use that running lab exactly as it is (no upgrade).
//
// STARLAB_BIN_DIR (default ../bin, `make build`) holds the binaries; STARLAB_REPORT_DIR (default
// ../out/e2e/<time>) receives junit.xml, cucumber.json, flows.ndjson, dumps and pod logs.
func TestMain(m *testing.M) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	binDir := os.Getenv("STARLAB_BIN_DIR")
	if binDir == "" {
		binDir = filepath.Join("..", "bin")
	}
	binDir, _ = filepath.Abs(binDir)
	reportDir := os.Getenv("STARLAB_REPORT_DIR")
	if reportDir == "" {
		reportDir = filepath.Join("..", "out", "e2e", time.Now().UTC().Format("20060102-150405"))
	}
	reportDir, _ = filepath.Abs(reportDir)
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		name = RandomLabName()
	}
	e2e.provider = NewLabProvider(log, os.Stderr)
	e2e.provider.WithPath(binDir)
	e2e.provider.WithName(name)
	e2e.provider.WithAsIs(os.Getenv("STARLAB_LAB") != "" && os.Getenv("STARLAB_AS_IS") == "1")

	e2e.testEnv = env.NewWithConfig(envconf.New())
	e2e.testEnv.Setup(
		func(ctx context.Context, _ *envconf.Config) (context.Context, error) {
			for _, b := range binariesNeeded(e2e.provider) {
				if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
					return ctx, fmt.Errorf("binary %s missing in %s: run `make build` (or set STARLAB_BIN_DIR)", b, binDir)
				}
			}
			log.Info("bringing up the lab", "name", name, "reuse", os.Getenv("STARLAB_LAB") != "")
			return ctx, nil
		},
		// Our provider through e2e-framework's own env funcs: Create (lab.Up), kubeconfig into the
		// envconf, WaitForControlPlane (every node and pod Ready).
		envfuncs.CreateCluster(e2e.provider, name),
		func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
			var err error
			e2e.env, err = NewEnv(name, cfg.KubeconfigFile(), reportDir, log)
			return ctx, err
		},
	)
	e2e.testEnv.Finish(func(ctx context.Context, _ *envconf.Config) (context.Context, error) {
		if e2e.env != nil {
			e2e.env.Close()
			if err := writeLatencies(e2e.env); err != nil {
				log.Warn("write latencies", "err", err)
			}
			if err := e2e.provider.ExportLogs(ctx, filepath.Join(reportDir, "logs")); err != nil {
				log.Warn("export pod logs", "err", err)
			}
		}
		// Destroy only what we created; runs also when setup failed half-way.
		if err := e2e.provider.Destroy(ctx); err != nil {
			return ctx, err
		}
		log.Info("report bundle", "dir", reportDir)
		return ctx, nil
	})
	os.Exit(e2e.testEnv.Run(m))
}

// TestFeatures runs every feature in ../features as subtests (one per scenario).
func TestFeatures(t *testing.T) {
	if e2e.env == nil {
		t.Fatal("the lab was not set up (see TestMain's log)")
	}
	paths := []string{filepath.Join("..", "features")}
	if p := os.Getenv("STARLAB_FEATURES"); p != "" {
		paths = filepath.SplitList(p)
	}
	// @wip marks a scenario written for an open issue that does not pass yet (each says why in the
	// feature file); STARLAB_TAGS=@wip runs them.
	tags := "~@wip"
	if v := os.Getenv("STARLAB_TAGS"); v != "" {
		tags = v
	}
	status, err := RunSuite(t.Context(), e2e.env, SuiteOptions{Paths: paths, Tags: tags, TestingT: t})
	if err != nil {
		t.Fatal(err)
	}
	if status != 0 {
		t.Errorf("godog suite exit status %d; reports in %s", status, e2e.env.ReportDir)
	}
}

func writeLatencies(e *Env) error {
	lat := e.ProgramLatencies()
	if len(lat) == 0 {
		return nil
	}
	s := SummarizeLatencies(lat)
	return os.WriteFile(filepath.Join(e.ReportDir, "policy-latency.txt"), []byte(s.String()+"\n"), 0o644)
}

func binariesNeeded(p *LabProvider) []string {
	if p.asIs {
		return nil
	}
	return []string{"starlab-agent", "starlab-cni", "starlab-observer", "starlab-demo"}
}
