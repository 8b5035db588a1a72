//go:build e2e

package portforward_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
)

// TestForwardToObserver forwards a local port to the observer pod of the lab named by STARLAB_LAB and
// GETs its status through it; after Close the local port no longer answers.
func TestForwardToObserver(t *testing.T) {
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		t.Fatal("STARLAB_LAB is not set: name a running lab (e.g. STARLAB_LAB=starlab go test -tags e2e ./internal/portforward/), " +
			"or run `make test-e2e`, which brings one up and sets STARLAB_LAB")
	}
	l, err := lab.Open(name)
	require.NoError(t, err)
	cfg, err := l.RESTConfig()
	require.NoError(t, err)
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pod, err := observer.FindPod(ctx, cs, observer.DefaultNamespace)
	require.NoError(t, err)

	f, err := portforward.Open(ctx, cfg, observer.DefaultNamespace, pod, observer.Port, 0)
	require.NoError(t, err)
	require.NotZero(t, f.LocalPort())
	assert.True(t, f.Alive())
	resp, err := http.Get(f.URL() + "/api/v1/status")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"nodes"`)

	f.Close()
	f.Close() // idempotent
	assert.False(t, f.Alive())
	assert.NoError(t, f.Err())
	_, err = http.Get(f.URL() + "/api/v1/status")
	assert.Error(t, err, "the local port must be closed after Close")
}
