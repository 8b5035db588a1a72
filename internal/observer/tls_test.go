package observer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/agentapi/agentapitest"
	"github.com/starlab-dev/starlab/internal/flow"
)

// TestObserverDialsAgentsWithMutualTLS (issue 11 item 9): an agent serving mutual TLS gives its
// flows to an observer configured with the client certificate, and none to one without it.
func TestObserverDialsAgentsWithMutualTLS(t *testing.T) {
	certs := agentapitest.Write(t)
	a := &agent{store: flow.NewStore(100)}
	a.store.Add(podFlow("node-1", "history", flow.VerdictForwarded, flow.DirectionIngress))
	mux := http.NewServeMux()
	mux.Handle("GET "+agentapi.PathFlows, flow.Handler(a.store, nil))
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{}`)) })
	srvTLS, err := agentapi.ServerTLSConfig(certs.ServerCert, certs.ServerKey, certs.CA)
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(agentapi.RequireClientCert(mux, agentapi.PathHealth))
	ts.TLS = srvTLS
	ts.StartTLS()
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "https://")

	clientTLS, err := agentapi.ClientTLSConfig(certs.ClientCert, certs.ClientKey, certs.CA)
	require.NoError(t, err)
	noCert := clientTLS.Clone()
	noCert.Certificates = nil
	tests := []struct {
		name      string
		cfg       Config
		connected bool
	}{
		{name: "client certificate: connected", cfg: Config{AgentTLS: clientTLS}, connected: true},
		{name: "TLS without a client certificate: refused", cfg: Config{AgentTLS: noCert}},
		{name: "plain HTTP: refused", cfg: Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.MergeWindow, tt.cfg.StatusEvery = 50*time.Millisecond, 100*time.Millisecond
			obs, err := New(tt.cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			obs.Start(ctx)
			t.Cleanup(func() { cancel(); obs.Wait() })
			require.NoError(t, obs.SetAgent("node-1", addr, ""))
			if tt.connected {
				require.Eventually(t, func() bool { return obs.Store().Total() == 1 }, 5*time.Second, 10*time.Millisecond)
				return
			}
			time.Sleep(300 * time.Millisecond)
			assert.Zero(t, obs.Store().Total(), "no flows without the client certificate")
			assert.Zero(t, obs.Status().Connected)
		})
	}
}
