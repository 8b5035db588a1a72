package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// fakeAgent serves the agent API paths from fixed answers and records the last flow query.
// fakeAgent answers flows in NDJSON whatever the client accepts, as agents before the wire form did.
func fakeAgent(t *testing.T, flows []*flow.Flow) (*httptest.Server, *flow.Query) {
	t.Helper()
	var lastQuery flow.Query
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathFlows, func(w http.ResponseWriter, r *http.Request) {
		q, err := flow.ParseQuery(r.URL.Query(), time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !flow.AcceptsWire(r.Header.Get("Accept")) {
			http.Error(w, "the client did not ask for "+flow.WireContentType, http.StatusNotAcceptable)
			return
		}
		lastQuery = q
		enc := flow.NewEncoder(w)
		for _, f := range flows {
			_ = enc.Encode(f)
		}
	})
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Status{Node: "w1", Ready: true, LostEvents: 7,
			Endpoints: []EndpointStatus{{Pod: "ns/a", IP: "10.244.1.5"}}})
	})
	mux.HandleFunc("GET "+PathMetrics, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "starlab_flows_total{verdict=\"FORWARDED\"} 3\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &lastQuery
}

func TestClientStatus(t *testing.T) {
	srv, _ := fakeAgent(t, nil)
	c := NewClientURL(srv.URL, srv.Client())
	st, err := c.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "w1", st.Node)
	assert.True(t, st.Ready)
	assert.Equal(t, uint64(7), st.LostEvents)
	assert.Equal(t, []EndpointStatus{{Pod: "ns/a", IP: "10.244.1.5"}}, st.Endpoints)
}

func TestClientFlows(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	in := []*flow.Flow{{UUID: "a", Time: now}, {UUID: "b", Time: now.Add(time.Millisecond)}}
	srv, last := fakeAgent(t, in)
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"), srv.Client())
	q := flow.Query{Last: 5000, Allow: []flow.Filter{{SourceIP: []string{"10.244.1.5"}}}}
	got, err := c.AllFlows(context.Background(), q)
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].UUID)
	assert.Equal(t, "b", got[1].UUID)
	assert.Equal(t, 5000, last.Last, "the query reaches the agent")
	assert.Equal(t, []string{"10.244.1.5"}, last.Allow[0].SourceIP)

}

// Against a real agent handler the stream is the wire form, and reads back every field.
func TestClientFlowsWire(t *testing.T) {
	st := flow.NewStore(10)
	f := &flow.Flow{UUID: "8a3f2c10-0001-4e1b-9c7d-000000000001", Time: time.Now().UTC(), Verdict: flow.VerdictDropped,
		Source: flow.Endpoint{Namespace: "client", Labels: []string{"role=client"}}, NodeName: "w1"}
	st.Add(f)
	mux := http.NewServeMux()
	var contentType string
	mux.Handle("GET "+PathFlows, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flow.Handler(st, nil).ServeHTTP(w, r)
		contentType = w.Header().Get("Content-Type")
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	got, err := NewClientURL(srv.URL, nil).AllFlows(context.Background(), flow.Query{})
	require.NoError(t, err)
	assert.Equal(t, flow.WireContentType, contentType)
	require.Len(t, got, 1)
	assert.Equal(t, f, got[0])
}

func TestClientMetrics(t *testing.T) {
	srv, _ := fakeAgent(t, nil)
	m, err := NewClientURL(srv.URL+"/", nil).Metrics(context.Background())
	require.NoError(t, err)
	assert.Contains(t, m, "starlab_flows_total")
}

func TestClientErrors(t *testing.T) {
	srv, _ := fakeAgent(t, nil)
	c := NewClientURL(srv.URL, nil)
	// A bad query: the agent answers 400 with its reason.
	_, err := c.Get(context.Background(), PathFlows, map[string][]string{"last": {"x"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "400")
	assert.Contains(t, err.Error(), PathFlows)

	_, err = c.Get(context.Background(), "/nope", nil)
	assert.ErrorContains(t, err, "404")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Status(ctx)
	assert.True(t, errors.Is(err, context.Canceled), "the context reaches the request: %v", err)

	srv.Close()
	_, err = c.Status(context.Background())
	assert.ErrorContains(t, err, "connect to agent "+c.Addr())
}
