package scenarios

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/demo"
)

// TestNodePortHoldKeepsOneConnection: the hold's client carries every request on its one
// keep-alive connection to the demo's HTTP server (the first version left each answer unread, so
// the transport closed the connection after every request and dialled again: "connection opened
// again (dial 2)" at the second request, on every node at once), and it does count a dial when the
// server really drops the connection.
func TestNodePortHoldKeepsOneConnection(t *testing.T) {
	mux := http.NewServeMux()
	demo.RegisterCommon(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := &nodePortHold{node: "n1", addr: strings.TrimPrefix(srv.URL, "http://")}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); h.run(ctx) }()
	waitRequests := func(n int) {
		require.Eventually(t, func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.requests >= n
		}, 10*time.Second, 20*time.Millisecond)
	}
	waitRequests(8)
	assert.EqualValues(t, 1, h.dials.Load(), "one connection for every request")

	srv.CloseClientConnections() // a real break: the server side closes the connection
	h.mu.Lock()
	n := h.requests
	h.mu.Unlock()
	waitRequests(n + 3)
	cancel()
	<-done
	assert.EqualValues(t, 2, h.dials.Load(), "a dropped connection is opened again, and counted")
	assert.Empty(t, h.failed, "GET is retried on a new connection by the transport: no request fails")
}
