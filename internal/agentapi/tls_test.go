package agentapi_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/agentapi/agentapitest"
)

// TestMutualTLSHelpers: a client certificate of another CA forced on the server fails the
// handshake; the client checks the agent's certificate against TLSServerName; missing or empty
// files are errors naming the file.
func TestMutualTLSHelpers(t *testing.T) {
	certs := agentapitest.Write(t)
	srvTLS, err := agentapi.ServerTLSConfig(certs.ServerCert, certs.ServerKey, certs.CA)
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(agentapi.RequireClientCert(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("flows"))
	}), agentapi.PathHealth))
	ts.TLS = srvTLS
	ts.StartTLS()
	t.Cleanup(ts.Close)

	rogue, err := tls.LoadX509KeyPair(certs.RogueCert, certs.RogueKey)
	require.NoError(t, err)
	forced, err := agentapi.ClientTLSConfig(certs.ClientCert, certs.ClientKey, certs.CA)
	require.NoError(t, err)
	forced.Certificates = nil
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: forced}}).Get(ts.URL + agentapi.PathFlows)
	require.Error(t, err, "a certificate of another CA fails the handshake")

	wrongName, err := agentapi.ClientTLSConfig(certs.ClientCert, certs.ClientKey, certs.CA)
	require.NoError(t, err)
	wrongName.ServerName = "someone-else"
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: wrongName}}).Get(ts.URL + agentapi.PathHealth)
	require.ErrorContains(t, err, "certificate", "the agent's certificate is checked against the name")

	empty := filepath.Join(t.TempDir(), "empty.pem")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	tests := []struct {
		name, cert, key, ca, err string
	}{
		{name: "missing certificate", cert: "/nonexistent.crt", key: certs.ServerKey, ca: certs.CA, err: "/nonexistent.crt"},
		{name: "missing CA", cert: certs.ServerCert, key: certs.ServerKey, ca: "/nonexistent-ca.crt", err: "/nonexistent-ca.crt"},
		{name: "CA file without certificates", cert: certs.ServerCert, key: certs.ServerKey, ca: empty, err: "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agentapi.ServerTLSConfig(tt.cert, tt.key, tt.ca)
			assert.ErrorContains(t, err, tt.err)
			_, err = agentapi.ClientTLSConfig(tt.cert, tt.key, tt.ca)
			assert.ErrorContains(t, err, tt.err)
		})
	}
}

func TestTLSFilesSet(t *testing.T) {
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          bool
		wantErr       bool
	}{
		{name: "none"},
		{name: "all", cert: "c", key: "k", ca: "a", want: true},
		{name: "cert only", cert: "c", wantErr: true},
		{name: "no CA", cert: "c", key: "k", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agentapi.TLSFilesSet(tc.cert, tc.key, tc.ca)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}
