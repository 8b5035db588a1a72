//go:build e2e

package workshop_test

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/repobin"
	"github.com/starlab-dev/starlab/internal/workshop"
	"github.com/starlab-dev/starlab/manifests"
)

// walkLab is the running lab the walks play on (STARLAB_LAB; `make test-e2e` brings it up), its REST
// config and the talk's parts.
func walkLab(t *testing.T) (string, *rest.Config, []workshop.Part) {
	t.Helper()
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		t.Fatal("STARLAB_LAB is not set: name a running lab (STARLAB_LAB=starlab go test -tags e2e ./internal/workshop/), or run `make test-e2e`")
	}
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	sub, err := fs.Sub(workshop.DefaultParts, "parts")
	require.NoError(t, err)
	parts, err := workshop.LoadParts(sub, manifests.FS)
	require.NoError(t, err)
	return name, cfg, parts
}

// newLabRunner is what `starlab demo` builds: a Runner over the lab through its observer. The lab is
// cleaned of every step's objects when the test ends, so later tests see the lab as `up` left it.
func newLabRunner(t *testing.T, ctx context.Context, cfg *rest.Config, parts []workshop.Part) (*workshop.Runner, *workshop.KubeCluster) {
	t.Helper()
	fw, err := observer.PortForward(ctx, cfg, observer.DefaultNamespace, 0)
	require.NoError(t, err)
	t.Cleanup(fw.Close)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := workshop.NewKubeCluster(cfg, &observer.Client{Base: fw.URL()}, workshop.DockerExec, log)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	r := workshop.NewRunner(parts, manifests.FS, c, slog.Default())
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for {
			err := r.Clean(cctx)
			if err == nil || cctx.Err() != nil {
				assert.NoError(t, err, "clean the lab after the walk")
				return
			}
			time.Sleep(500 * time.Millisecond) // a key's step still runs
		}
	})
	return r, c
}

func reportDir(t *testing.T, sub string) string {
	dir := os.Getenv("STARLAB_REPORT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	dir = filepath.Join(dir, sub)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// waitSettled waits until the runner is not busy at (part, step) and returns its result.
func waitSettled(t *testing.T, r *workshop.Runner, part, step int) workshop.StepResult {
	t.Helper()
	deadline := time.Now().Add(workshop.DefaultStepTimeout + 30*time.Second)
	for time.Now().Before(deadline) {
		p, s, busy, res := r.Position()
		if !busy && p == part && s == step && res.Phase != "" && res.Phase != workshop.PhaseApplying {
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, s, busy, res := r.Position()
	t.Fatalf("step %d.%d did not settle: at %d.%d busy=%v phase=%s", part+1, step+1, p+1, s+1, busy, res.Phase)
	return workshop.StepResult{}
}

// stepObjectsLeft lists the step's objects that still exist (and are not being deleted).
func stepObjectsLeft(ctx context.Context, t *testing.T, cfg *rest.Config, st workshop.Step) []string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	require.NoError(t, err)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	var left []string
	for _, f := range st.Objects {
		objs, err := lab.DecodeManifests([]byte(f.YAML))
		require.NoError(t, err)
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			require.NoError(t, err, "map %s", gvk)
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if o.GetNamespace() != "" {
				ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
			}
			got, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && got.GetDeletionTimestamp() != nil) {
				continue
			}
			require.NoError(t, err, "get %s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName())
			left = append(left, fmt.Sprintf("%s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName()))
		}
	}
	return left
}

// TestPresenterPageWalksTheTalk drives the presenter page in real headless Chromium through all
// three parts on the lab with real key presses: at each step the page must show the step, a live
// picture, the matrix as expected (no difference) and the step's flows, and a screenshot is kept in
// $STARLAB_REPORT_DIR/workshop. In part 3 it presses ← once and checks that the step's policy is gone
// and the matrix is the step before's again, then → again.
func TestPresenterPageWalksTheTalk(t *testing.T) {
	_, cfg, parts := walkLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	r, c := newLabRunner(t, ctx, cfg, parts)
	srv := httptest.NewServer(workshop.NewServer(ctx, r, c, slog.Default()))
	defer srv.Close()
	shots := reportDir(t, "workshop")

	chrome, err := exec.LookPath("chromium")
	require.NoError(t, err, "chromium is one of the Makefile's APT_PACKAGES: run `make deps`")
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 720), chromedp.Flag("disable-dev-shm-usage", true))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	start := time.Now()
	go func() { _, _ = r.Start(ctx) }()
	require.NoError(t, chromedp.Do(bctx, chromedp.EmulateViewport(1280, 720), chromedp.Navigate(srv.URL+"/")))

	// shown waits until the page draws step (part, step) settled, then returns its status line.
	shown := func(part, step int) string {
		t.Helper()
		res := waitSettled(t, r, part, step)
		title := parts[part].Steps[step].Title
		js := fmt.Sprintf(`document.getElementById("title").textContent === %q && /^[✓✗]/.test(document.getElementById("status").textContent)`, title)
		_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(30*time.Second)))
		require.NoError(t, err, "page shows step %s", title)
		status, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.ID("status")))
		require.NoError(t, err)
		require.Equal(t, workshop.PhaseDone, res.Phase, "step %s/%s: diffs %v, checks %v, error %s", res.PartName, res.StepName, res.Diffs, res.Checks, res.Error)
		return status
	}
	var firstStep time.Duration
	var prevProbed *workshop.Matrix
	n := 0
	for pi, p := range parts {
		for si, st := range p.Steps {
			n++
			status := shown(pi, si)
			if n == 1 {
				firstStep = time.Since(start)
			}
			_, _, _, res := r.Position()
			assert.Contains(t, status, "✓", "step %s/%s", p.Name, st.Name)

			matrixHTML, err := chromedp.Run(bctx, chromedp.InnerHTML(chromedp.ID("matrix")))
			require.NoError(t, err)
			if st.Figure != "" {
				// The step's figure (part 1's closing slide) is shown, loaded, in place of the picture.
				js := `(() => { const f = document.getElementById("figure"); return !f.classList.contains("hidden") && f.complete && f.naturalWidth > 0 &&
					document.getElementById("picture").classList.contains("hidden"); })()`
				_, err := chromedp.Run(bctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(10*time.Second)))
				require.NoError(t, err, "step %s/%s shows its figure %s", p.Name, st.Name, st.Figure)
			} else {
				pictureNodes, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.getElementById("picture").childElementCount`))
				require.NoError(t, err)
				assert.Positive(t, pictureNodes, "step %s/%s draws a live picture", p.Name, st.Name)
			}
			if res.Expected != nil {
				assert.Contains(t, matrixHTML, "<caption>expected</caption>", "step %s/%s", p.Name, st.Name)
				assert.Contains(t, matrixHTML, "<caption>probed</caption>", "step %s/%s", p.Name, st.Name)
				assert.NotContains(t, matrixHTML, " bad", "step %s/%s: a probed cell differs from the expected one", p.Name, st.Name)
				// The flows panel (f) lists the step's flows.
				require.NoError(t, chromedp.Do(bctx, chromedp.KeyEvent("f"),
					chromedp.Poll[chromedp.Void](`!document.getElementById("flows").classList.contains("hidden")`, chromedp.WithPollingTimeout(5*time.Second))))
				flowsHTML, err := chromedp.Run(bctx, chromedp.InnerHTML(chromedp.ID("flowrows")))
				require.NoError(t, err)
				require.NoError(t, chromedp.Do(bctx, chromedp.KeyEvent("f")))
				if len(res.Flows) > 0 {
					assert.Contains(t, flowsHTML, "<tr", "step %s/%s: %d flows but none shown", p.Name, st.Name, len(res.Flows))
				}
			}
			png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s-%s.png", n, p.Name, st.Name)), png, 0o644))
			t.Logf("step %d %s/%s: programmed %.0f ms, key to verdicts %.0f ms, %d flows", n, p.Name, st.Name, res.ProgrammedMs, res.TotalMs, len(res.Flows))

			// Part 3, backend-policy: back once undoes it, the matrix is the step before's again.
			if p.Name == "stars" && st.Name == "backend-policy" {
				require.NotNil(t, prevProbed)
				require.NoError(t, chromedp.Do(bctx, chromedp.KeyEvent(kb.ArrowLeft)))
				shown(pi, si-1)
				assert.Empty(t, stepObjectsLeft(ctx, t, cfg, st), "← undoes the step's objects")
				_, _, _, back := r.Position()
				require.NotNil(t, back.Probed)
				assert.Equal(t, prevProbed.Cells, back.Probed.Cells, "← restores the matrix of the step before")
				require.NoError(t, chromedp.Do(bctx, chromedp.KeyEvent(kb.ArrowRight)))
				shown(pi, si)
			}
			prevProbed = res.Probed
			if pi == len(parts)-1 && si == len(p.Steps)-1 {
				break
			}
			require.NoError(t, chromedp.Do(bctx, chromedp.KeyEvent(kb.ArrowRight)))
		}
	}
	t.Logf("walked %d steps; `starlab demo` to the first step: %s (warm lab)", n, firstStep.Round(time.Millisecond))
}

// TestTUIWalksTheTalk plays `starlab demo --tui` in tmux (send-keys, capture-pane) through every
// step and checks the screen at each: the step's title, "done", the matrices, and no difference.
func TestTUIWalksTheTalk(t *testing.T) {
	name, cfg, parts := walkLab(t)
	bin, err := repobin.Find("starlab", "STARLAB_BIN", "build")
	require.NoError(t, err)
	tmux, err := exec.LookPath("tmux")
	require.NoError(t, err, "tmux is needed for the terminal walk: apt-get install -y tmux")
	session := fmt.Sprintf("starlab-tui-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	newLabRunner(t, ctx, cfg, parts) // cleans the lab of the walk's objects at the end
	run := func(args ...string) string {
		out, err := exec.CommandContext(ctx, tmux, args...).CombinedOutput()
		require.NoError(t, err, "tmux %v: %s", args, out)
		return string(out)
	}
	run("new-session", "-d", "-s", session, "-x", "220", "-y", "70", bin, "demo", "--tui", "--name", name)
	t.Cleanup(func() { _ = exec.Command(tmux, "kill-session", "-t", session).Run() })
	screens := reportDir(t, "workshop-tui")

	capture := func() string { return run("capture-pane", "-p", "-t", session) }
	waitFor := func(title string) string {
		t.Helper()
		deadline := time.Now().Add(workshop.DefaultStepTimeout + 30*time.Second)
		var screen string
		for time.Now().Before(deadline) {
			screen = capture()
			// A settled step's phase line ends in its times: "done  programmed … ms, probed … ms, total … ms".
			if strings.Contains(screen, title) && strings.Contains(screen, ", total ") {
				return screen
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("the terminal never showed step %q settled; last screen:\n%s", title, screen)
		return ""
	}
	n := 0
	for pi, p := range parts {
		for si, st := range p.Steps {
			n++
			screen := waitFor(st.Title)
			require.NoError(t, os.WriteFile(filepath.Join(screens, fmt.Sprintf("%02d-%s-%s.txt", n, p.Name, st.Name)), []byte(screen), 0o644))
			assert.NotContains(t, screen, "differs", "step %s/%s:\n%s", p.Name, st.Name, screen)
			assert.NotContains(t, screen, "DIFF", "step %s/%s", p.Name, st.Name)
			if st.Figure != "" {
				assert.Contains(t, screen, "figure: "+st.Figure, "step %s/%s names its figure", p.Name, st.Name)
			}
			if len(p.Rows) > 0 {
				assert.Contains(t, screen, "expected (oracle)", "step %s/%s shows the matrices", p.Name, st.Name)
				for _, row := range p.Rows {
					assert.Contains(t, screen, row, "step %s/%s matrix row", p.Name, st.Name)
				}
			}
			if pi == len(parts)-1 && si == len(p.Steps)-1 {
				break
			}
			run("send-keys", "-t", session, "Right")
		}
	}
	run("send-keys", "-t", session, "q")
}
