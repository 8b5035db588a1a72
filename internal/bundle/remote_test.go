package bundle

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/observer"
)

// TestReadAllKeepsTheRawAnswer checks that the bundle saves the agent's and the observer's answers
// byte for byte, and a failed GET as an error naming the path.
func TestReadAllKeepsTheRawAnswer(t *testing.T) {
	const status = "{\n  \"node\": \"w1\",\n  \"extra_field_of_a_newer_agent\": 1\n}\n"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, status) })
	mux.HandleFunc("GET "+observer.PathStatus, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, status) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	agent := agentapi.NewClientURL(srv.URL, nil)
	data, err := readAll(context.Background(), agentapi.PathStatus, func(ctx context.Context) (io.ReadCloser, error) {
		return agent.Get(ctx, agentapi.PathStatus, nil)
	})
	require.NoError(t, err)
	assert.Equal(t, status, string(data))

	obs := &observer.Client{Base: srv.URL}
	data, err = readAll(context.Background(), observer.PathStatus, func(ctx context.Context) (io.ReadCloser, error) {
		return obs.Get(ctx, observer.PathStatus, nil)
	})
	require.NoError(t, err)
	assert.Equal(t, status, string(data))

	_, err = readAll(context.Background(), agentapi.PathMetrics, func(ctx context.Context) (io.ReadCloser, error) {
		return agent.Get(ctx, agentapi.PathMetrics, nil)
	})
	assert.ErrorContains(t, err, "404")
	assert.ErrorContains(t, err, agentapi.PathMetrics)
}
