package workshop

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium runs headless Chromium on url with extra flags and returns its stdout.
func chromium(t *testing.T, url string, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install -y chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(),
		"--window-size=1280,720", "--virtual-time-budget=4000"}, extra...)
	var stderr bytes.Buffer
	c := exec.CommandContext(ctx, bin, append(args, url)...)
	c.Stderr = &stderr
	out, err := c.Output()
	require.NoError(t, err, "chromium: %s", stderr.String())
	return string(out)
}

// TestPageInChromium loads the presenter page at stars/backend-policy (with one probe made wrong)
// and part 2's stranger step, checks what the DOM shows, and keeps screenshots in
// $STARLAB_SCREENSHOT_DIR (default: a temporary directory).
func TestPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("headless Chromium: not in -short")
	}
	tests := []struct {
		name  string
		nexts int
		query string
		has   []string
	}{
		{"stars-backend-policy", 10, "", []string{"The frontend may reach the backend", "kubectl apply -f manifests/stars/policies/3-backend-policy.yaml",
			"client → backend: no", "≠ client -&gt; backend: expected no, probed yes", "the stars", `class="k">podSelector`}},
		{"datapath-map", 2, "", []string{"No KUBE-SVC rules on any node", "fine", "service map"}},
		{"datapath-bench-chart", 3, "", []string{"recorded: bench-services.svg", `id="figure" class="" alt="bench-services.svg" src="/api/figure/0/3"`, `id="picture" viewBox="0 0 560 330" preserveAspectRatio="xMidYMid meet" class="hidden"`}},
		{"shop-stranger-flows", 5, "?flows=1", []string{"A connection from a stranger", "service map", "POLICY_DENIED", "stars/default-deny", "stranger → db: yes"}},
	}
	dir := os.Getenv("STARLAB_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake()
			fake.wrong["client->backend.stars:6379"] = true
			srv, r := newTestServer(t, fake)
			for range tt.nexts {
				_, err := r.Next(context.Background())
				require.NoError(t, err)
			}
			dom := chromium(t, srv.URL+"/"+tt.query, "--dump-dom")
			for _, want := range tt.has {
				assert.Contains(t, dom, want)
			}
			shot := filepath.Join(dir, "workshop-"+tt.name+".png")
			chromium(t, srv.URL+"/"+tt.query, "--screenshot="+shot)
			st, err := os.Stat(shot)
			require.NoError(t, err)
			assert.Greater(t, st.Size(), int64(10000), "a screenshot with content")
			t.Logf("screenshot: %s", shot)
		})
	}
}
