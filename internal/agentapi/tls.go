package agentapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
)

// TLSServerName is the name in the agents' server certificate, and the name the observer checks
// it against: agents are dialled by node address, which a certificate made at install time cannot
// list (Hubble's peer certificates use a fixed name the same way).
const TLSServerName = "starlab-agent"

// ServerTLSConfig is the agent's TLS configuration for mutual TLS: its certificate (certFile,
// keyFile) and the CA that signs the clients' certificates (clientCAFile). A client certificate is
// verified when given, and RequireClientCert refuses requests without one, so the kubelet's probe
// of /healthz (no certificate) still works.
func ServerTLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("agent API TLS: load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pool, err := loadPool(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("agent API TLS: client CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}, nil
}

// ClientTLSConfig is the observer's TLS configuration for the agents: its client certificate
// (certFile, keyFile) and the CA that signs the agents' certificates (caFile), checked against
// TLSServerName.
func ClientTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("agent API TLS: load client certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("agent API TLS: server CA: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   TLSServerName,
	}, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// RequireClientCert serves h only to requests that came with a client certificate the TLS layer
// verified, except for the paths in open; others are answered 401.
func RequireClientCert(h http.Handler, open ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(open, r.URL.Path) || (r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
			h.ServeHTTP(w, r)
			return
		}
		http.Error(w, "client certificate required", http.StatusUnauthorized)
	})
}

// TLSFilesSet reports whether mutual TLS is configured by the three files (certificate, key, CA):
// true when all are given, false when none is, and an error when only some are.
func TLSFilesSet(certFile, keyFile, caFile string) (bool, error) {
	n := 0
	for _, f := range []string{certFile, keyFile, caFile} {
		if f != "" {
			n++
		}
	}
	switch n {
	case 0:
		return false, nil
	case 3:
		return true, nil
	}
	return false, errors.New("set the certificate, key and CA files together (or none)")
}
