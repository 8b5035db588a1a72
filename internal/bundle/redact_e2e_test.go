//go:build e2e

package bundle

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/lab"
)

// TestRedactedBundleHoldsNoSecretValue puts a random Secret value where the bundle collects it (a
// ConfigMap of the starlab namespace, an annotation of a namespace, a container env var named
// by --redact-key) and checks that no Secret value of the lab (this one and every other Secret's
// data, raw or base64) appears in any file of a --redact bundle, while an unredacted bundle holds it.
func TestRedactedBundleHoldsNoSecretValue(t *testing.T) {
	name, _ := runningLab(t)
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	raw := make([]byte, 12)
	_, err = rand.Read(raw)
	require.NoError(t, err)
	secret := "pw-" + hex.EncodeToString(raw)
	const ns = "redact-e2e"
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Annotations: map[string]string{"note": "the password is " + secret}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": secret}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().ConfigMaps(DefaultNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "redact-e2e"}, Data: map[string]string{"copied": secret, "API_TOKEN": "tok-" + secret[3:11]}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = cs.CoreV1().ConfigMaps(DefaultNamespace).Delete(context.Background(), "redact-e2e", metav1.DeleteOptions{})
	})

	plain := filepath.Join(t.TempDir(), "plain.tar.gz")
	_, err = Write(ctx, Options{Lab: name, Output: plain, Since: time.Minute})
	require.NoError(t, err)
	assert.True(t, bundleContains(t, plain, secret), "without --redact the value is in the bundle (the test puts it where the bundle looks)")

	red := filepath.Join(t.TempDir(), "redacted.tar.gz")
	res, err := Write(ctx, Options{Lab: name, Output: red, Since: time.Minute, Redact: true, RedactKeys: []string{"API_TOKEN"}})
	require.NoError(t, err)
	b, err := Open(red)
	require.NoError(t, err)
	assert.True(t, b.Manifest.Redacted)

	// Every Secret value of the lab, not only ours.
	secrets, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	var values []string
	for _, s := range secrets.Items {
		for _, v := range s.Data {
			if len(v) >= minLiteral {
				values = append(values, base64.StdEncoding.EncodeToString(v))
			}
			if replacedEverywhere(string(v)) {
				values = append(values, string(v))
			}
		}
	}
	values = append(values, "tok-"+secret[3:11])
	require.Contains(t, values, secret)
	for _, name := range b.Names() {
		data, _ := b.File(name)
		for _, v := range values {
			require.NotContains(t, string(data), v, "%s holds a Secret value", name)
		}
	}
	t.Logf("redacted bundle: %d files, %d bytes, %d Secret values checked", res.Files, res.Size, len(values))
}

func bundleContains(t *testing.T, path, v string) bool {
	t.Helper()
	b, err := Open(path)
	require.NoError(t, err)
	for _, name := range b.Names() {
		if data, _ := b.File(name); strings.Contains(string(data), v) {
			return true
		}
	}
	return false
}
