package observer

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// chromium is the headless browser the UI tests drive (make deps installs it).
const chromium = "/usr/bin/chromium"

// ingestFixture fills the observer with a small three-namespace map: an allowed edge, a denied edge
// (POLICY_DENIED by default deny), a mixed edge and traffic to the world.
func ingestFixture(o *Observer) {
	ep := func(ns, workload, pod string, id uint32) flow.Endpoint {
		return flow.Endpoint{Identity: id, Namespace: ns, PodName: pod, Labels: []string{"role=" + workload},
			Workload: &flow.Workload{Name: workload, Kind: "Deployment"}, IP: "10.244.1." + pod[len(pod)-1:]}
	}
	mk := func(src, dst flow.Endpoint, port uint16, v flow.Verdict) *flow.Flow {
		f := &flow.Flow{Time: time.Now(), UUID: src.PodName + dst.PodName, Verdict: v, EventType: flow.EventNew,
			IP: flow.IP{Source: src.IP, Destination: dst.IP}, L4: flow.L4{Protocol: flow.ProtoTCP, SourcePort: 41000, DestinationPort: port},
			Source: src, Destination: dst, NodeName: "starlab-worker", TrafficDirection: flow.DirectionIngress,
			DestinationService: &flow.Service{Namespace: dst.Namespace, Name: dst.Workload.Name}}
		if v == flow.VerdictDropped {
			f.EventType, f.DropReasonDesc = flow.EventDrop, flow.DropPolicyDenied
			f.DeniedBy = []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}, {Kind: flow.PolicyKindNetworkPolicy, Namespace: dst.Namespace, Name: "default-deny"}}
		} else {
			f.AllowedBy = []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: dst.Namespace, Name: "allow-" + src.Workload.Name}}
		}
		return f
	}
	client := ep("client", "client", "client-1", 256)
	frontend := ep("stars", "frontend", "frontend-2", 257)
	backend := ep("stars", "backend", "backend-3", 258)
	ui := ep("management-ui", "management-ui", "management-ui-4", 259)
	o.Ingest(mk(frontend, backend, 6379, flow.VerdictForwarded))
	o.Ingest(mk(client, backend, 6379, flow.VerdictDropped))
	o.Ingest(mk(client, backend, 6379, flow.VerdictDropped))
	o.Ingest(mk(ui, frontend, 80, flow.VerdictForwarded))
	o.Ingest(mk(ui, frontend, 80, flow.VerdictDropped))
	w := mk(frontend, backend, 443, flow.VerdictForwarded)
	w.Destination, w.DestinationService, w.TrafficDirection, w.AllowedBy = flow.Endpoint{Identity: flow.IdentityWorld, IP: "203.0.113.9"}, nil, flow.DirectionEgress, nil
	o.Ingest(w)
}

// serveLoopback serves the observer on 127.0.0.1 (a real listener, as in the pod).
func serveLoopback(t testing.TB, o *Observer) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: o.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// runChromium runs headless Chromium with the flags that keep it off the network except for url.
func runChromium(t *testing.T, args ...string) string {
	t.Helper()
	_, err := os.Stat(chromium)
	require.NoError(t, err, "the UI test needs Chromium: apt-get install -y chromium (or make deps)")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=6000", "--window-size=1500,900"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %v: %s", args, stderr.String())
	return string(out)
}

// TestUIInChromium loads the real UI from a real observer in real headless Chromium and checks that
// every namespace box, the workloads and a red dashed dropped edge are drawn, and that selecting the
// dropped edge shows the deciding policy and its recent flows. The screenshot lands in out/.
func TestUIInChromium(t *testing.T) {
	o, err := New(Config{})
	require.NoError(t, err)
	ingestFixture(o)
	base := serveLoopback(t, o)
	dropped := "client/client->stars/backend"

	dom := runChromium(t, "--dump-dom", base+"/?select="+url.QueryEscape(dropped))
	for _, want := range []string{
		`data-namespace="client"`, `data-namespace="stars"`, `data-namespace="management-ui"`, `data-namespace="(outside the cluster)"`,
		`class="node kind-Deployment" data-id="client/client"`,
		`class="node kind-Deployment has-drops" data-id="stars/frontend"`,
		`class="node kind-Deployment has-drops" data-id="stars/backend"`,
		`class="node kind-Reserved" data-id="reserved:world"`,
		`class="edge dropped selected" data-id="client/client-&gt;stars/backend"`,
		`class="edge forwarded" data-id="stars/frontend-&gt;stars/backend"`,
		`class="edge mixed" data-id="management-ui/management-ui-&gt;stars/frontend"`,
		`marker-end="url(#arrow-dropped)"`,
		// the panel of the selected edge: deciding policies and recent flows
		`NetworkPolicy stars/default-deny`, `DefaultDeny`, `DROPPED POLICY_DENIED`, `client/client-1:41000`, `2 (0 replies)`,
		`data-tier="NetworkPolicy"`, `deciding tier`,
		`0/0 nodes connected`, `6 flows`,
	} {
		assert.Contains(t, dom, want)
	}
	assert.Equal(t, 4, strings.Count(dom, `<g class="edge `), "edges drawn")

	shot := filepath.Join("..", "..", "out", "observer-ui.png")
	require.NoError(t, os.MkdirAll(filepath.Dir(shot), 0o755))
	abs, err := filepath.Abs(shot)
	require.NoError(t, err)
	_ = os.Remove(abs)
	runChromium(t, "--screenshot="+abs, base+"/?select="+url.QueryEscape(dropped))
	st, err := os.Stat(abs)
	require.NoError(t, err, "screenshot written")
	assert.Greater(t, st.Size(), int64(10_000), "a real rendering, not a blank page")
	t.Logf("screenshot: %s (%d bytes)", abs, st.Size())
}
