package observer

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

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

// TestUIInChromium loads the real UI from a real observer in real headless Chromium and checks that
// every namespace box, the workloads and a red dashed dropped edge are drawn, and that selecting the
// dropped edge shows the deciding policy and its recent flows. The screenshot lands in out/.
func TestUIInChromium(t *testing.T) {
	o, err := New(Config{})
	require.NoError(t, err)
	ingestFixture(o)
	base := serveLoopback(t, o)
	dropped := "client/client->stars/backend"

	ctx := browser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(base+"/?select="+url.QueryEscape(dropped))))
	// the map is drawn from the worker's view and the panel from the edge's own answers
	waitJS(t, ctx, `document.querySelectorAll("#map .edge").length > 0 && document.getElementById("edge-connections") !== null &&
		document.getElementById("status").textContent.includes("nodes connected")`, 60*time.Second)
	dom := eval[string](t, ctx, `document.documentElement.outerHTML`)
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

	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	assert.Greater(t, len(png), 10_000, "a real rendering, not a blank page")
	shot, err := filepath.Abs(filepath.Join("..", "..", "out", "observer-ui.png"))
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(shot), 0o755))
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
}
