package agent

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/agentapi/agentapitest"
	"github.com/starlab-dev/starlab/internal/flow"
)

// TestAPIListenAddrBindsNodeAddress (issue 11 item 9): the flow API on the host network binds the
// node's address and loopback (for port-forwards), not every address of the host, unless an
// address is given explicitly.
func TestAPIListenAddrBindsNodeAddress(t *testing.T) {
	node := netip.MustParseAddr("172.18.0.2")
	tests := []struct {
		name, listen string
		node         netip.Addr
		err          string
		want         []string
	}{
		{name: "port only: the node address", listen: ":4245", node: node, want: []string{"172.18.0.2:4245", "127.0.0.1:4245"}},
		{name: "explicit address kept", listen: "127.0.0.1:4245", node: node, want: []string{"127.0.0.1:4245"}},
		{name: "explicit wildcard kept (opt-in)", listen: "0.0.0.0:4245", node: node, want: []string{"0.0.0.0:4245"}},
		{name: "no node address", listen: ":4245", err: "the node has no address to bind"},
		{name: "malformed", listen: "4245", node: node, err: "listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apiListenAddrs(tt.listen, tt.node)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestAPIMutualTLS (issue 11 item 9): with certificates configured, the API answers only clients
// presenting a certificate of the configured CA; /healthz stays open for the kubelet's probes.
func TestAPIMutualTLS(t *testing.T) {
	certs := agentapitest.Write(t)
	cfg := DefaultConfig()
	cfg.NodeName, cfg.CNISource = "n1", "/nonexistent"
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = certs.ServerCert, certs.ServerKey, certs.CA
	a, err := New(cfg, slog.Default())
	require.NoError(t, err)
	a.ready.Store(true)
	a.flows.store.Add(&flow.Flow{Time: time.Now(), UUID: "f1", NodeName: "n1"})
	srv, err := a.apiServer()
	require.NoError(t, err)
	require.NotNil(t, srv.TLSConfig, "certificates configured: TLS")
	ts := httptest.NewUnstartedServer(srv.Handler)
	ts.TLS = srv.TLSConfig
	ts.StartTLS()
	t.Cleanup(ts.Close)

	withCert := func(cert, key string) *http.Client {
		tc, err := agentapi.ClientTLSConfig(cert, key, certs.CA)
		require.NoError(t, err)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	noCert, err := agentapi.ClientTLSConfig(certs.ClientCert, certs.ClientKey, certs.CA)
	require.NoError(t, err)
	noCert.Certificates = nil
	tests := []struct {
		name   string
		client *http.Client
		path   string
		status int
		body   string // contained in the answer
	}{
		{name: "no client certificate: flows refused", client: &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, path: agentapi.PathFlows, status: http.StatusUnauthorized},
		{name: "no client certificate: status refused", client: &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, path: agentapi.PathStatus, status: http.StatusUnauthorized},
		{name: "no client certificate: metrics refused", client: &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, path: agentapi.PathMetrics, status: http.StatusUnauthorized},
		{name: "no client certificate: healthz open", client: &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}, path: agentapi.PathHealth, status: http.StatusOK, body: "ok"},
		{name: "observer certificate: flows", client: withCert(certs.ClientCert, certs.ClientKey), path: agentapi.PathFlows, status: http.StatusOK, body: `"uuid":"f1"`},
		// The client does not even offer a certificate the server's CA list does not name.
		{name: "certificate of another CA: refused", client: withCert(certs.RogueCert, certs.RogueKey), path: agentapi.PathFlows, status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(ts.URL + tt.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, tt.status, resp.StatusCode, string(b))
			assert.Contains(t, string(b), tt.body)
		})
	}

	// Plain HTTP to the TLS port gets no flows either.
	resp, err := http.Get(strings.Replace(ts.URL, "https://", "http://", 1) + agentapi.PathFlows)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// TestAPIWithoutTLSConfigIsPlainHTTP: without certificates (the default) the API is plain HTTP.
func TestAPIWithoutTLSConfigIsPlainHTTP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName, cfg.CNISource = "n1", "/nonexistent"
	a, err := New(cfg, slog.Default())
	require.NoError(t, err)
	srv, err := a.apiServer()
	require.NoError(t, err)
	assert.Nil(t, srv.TLSConfig)
	cfg.TLSCert = "/x.crt"
	_, err = New(cfg, slog.Default())
	require.ErrorContains(t, err, "set --tls-cert, --tls-key and --tls-client-ca together")
}
