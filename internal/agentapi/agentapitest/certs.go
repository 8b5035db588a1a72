// Package agentapitest makes certificates for tests of the agent API's mutual TLS, the way the
// chart does (one CA signing the agents' server certificate and the observer's client certificate).
package agentapitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
)

// Certs are PEM files in a test's temporary directory.
type Certs struct {
	CA                    string // CA certificate
	ServerCert, ServerKey string // agent: DNS name agentapi.TLSServerName
	ClientCert, ClientKey string // observer, signed by CA
	// RogueCert and RogueKey are a client certificate signed by another CA.
	RogueCert, RogueKey string
}

// Write makes a CA, a server and a client certificate it signs, and a client certificate of
// another CA, and writes them under t.TempDir().
func Write(t testing.TB) Certs {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "starlab-ca")
	rogue, rogueKey := newCA(t, "rogue-ca")
	c := Certs{CA: filepath.Join(dir, "ca.crt")}
	writePEM(t, c.CA, "CERTIFICATE", ca.Raw)
	c.ServerCert, c.ServerKey = leaf(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth, agentapi.TLSServerName)
	c.ClientCert, c.ClientKey = leaf(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth, "starlab-observer")
	c.RogueCert, c.RogueKey = leaf(t, dir, "rogue", rogue, rogueKey, x509.ExtKeyUsageClientAuth, "starlab-observer")
	return c
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

func leaf(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage, dns string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: dns}, DNSNames: []string{dns},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}
