package portforward

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
)

func TestOpenRejectsBadInput(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	for _, tc := range []struct {
		name              string
		cfg               *rest.Config
		ns, pod           string
		remote, local     int
		want, wantPodPort string
	}{
		{"no namespace", cfg, "", "p", 80, 0, "namespace and pod name are required", "/p:80"},
		{"no pod", cfg, "ns", "", 80, 0, "namespace and pod name are required", "ns/:80"},
		{"remote port 0", cfg, "ns", "p", 0, 0, "ports must be 1-65535", "ns/p:0"},
		{"remote port too big", cfg, "ns", "p", 70000, 0, "ports must be 1-65535", "ns/p:70000"},
		{"negative local port", cfg, "ns", "p", 80, -1, "ports must be 1-65535", "ns/p:80"},
		{"no REST config", nil, "ns", "p", 80, 0, "no REST config", "ns/p:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(context.Background(), tc.cfg, tc.ns, tc.pod, tc.remote, tc.local)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "port-forward to "+tc.wantPodPort)
		})
	}
}

// TestOpenRefused runs Open against an API server that refuses the portforward subresource (as for a
// missing pod or RBAC): the error names the pod and port, and the request went to the pod's subresource.
func TestOpenRefused(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path)
		mu.Unlock()
		http.Error(w, `pods "web-0" not found`, http.StatusNotFound)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := Open(ctx, &rest.Config{Host: srv.URL}, "shop", "web-0", 8080, 0)
	require.Error(t, err)
	assert.Nil(t, f)
	assert.Contains(t, err.Error(), "port-forward to shop/web-0:8080")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, paths, "Open never reached the API server")
	for _, p := range paths {
		assert.Contains(t, []string{
			"GET /api/v1/namespaces/shop/pods/web-0/portforward",  // WebSocket
			"POST /api/v1/namespaces/shop/pods/web-0/portforward", // SPDY fallback
		}, p)
	}
}

func TestOpenCanceled(t *testing.T) {
	// An API server that never answers: only ctx can end Open.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, &rest.Config{Host: srv.URL}, "shop", "web-0", 8080, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "port-forward to shop/web-0:8080")
	assert.Less(t, time.Since(start), 5*time.Second, "Open must return soon after ctx ends")
}

func TestSubresourceURL(t *testing.T) {
	for _, tc := range []struct{ host, want string }{
		{"https://127.0.0.1:6443", "https://127.0.0.1:6443/api/v1/namespaces/ns/pods/p/portforward"},
		{"https://proxy.local/k8s/clusters/c1", "https://proxy.local/k8s/clusters/c1/api/v1/namespaces/ns/pods/p/portforward"},
	} {
		base, err := url.Parse(tc.host)
		require.NoError(t, err)
		assert.Equal(t, tc.want, subresourceURL(base, "ns", "p").String())
	}
}
