package demo

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

func TestGenerateReachesTheSink(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	l := &Loader{log: slog.Default()}
	go l.sink(pc)
	port := pc.LocalAddr().(*net.UDPAddr).Port
	var total uint64
	for _, senders := range []int{0, 3} { // one sender (the default), and the rate split over three
		res, err := Generate(context.Background(), FlowLoadRequest{Target: "127.0.0.1", Port: port, Ports: 1, Sockets: 4, Rate: 2000, Duration: "500ms", Senders: senders})
		require.NoError(t, err)
		assert.Equal(t, 4, res.Tuples)
		assert.InDelta(t, 1000, float64(res.Sent), 150, "senders %d: rate x duration, paced", senders)
		assert.Zero(t, res.Errors)
		total += res.Sent
		require.Eventually(t, func() bool { return l.received.Load() == total }, 2*time.Second, 10*time.Millisecond)
	}
}

func TestGenerateRefusesBadRequests(t *testing.T) {
	for _, req := range []FlowLoadRequest{
		{Target: "::1", Port: 9000, Ports: 1, Sockets: 1, Rate: 1, Duration: "1s"},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 1, Rate: 1, Duration: "soon"},
		{Target: "10.0.0.1", Port: 65535, Ports: 2, Sockets: 1, Rate: 1, Duration: "1s"},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 0, Rate: 1, Duration: "1s"},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 64, Rate: 1000, Duration: "1s", Senders: MaxFlowLoadSenders + 1},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 2, Rate: 1000, Duration: "1s", Senders: 3},
	} {
		_, err := Generate(context.Background(), req)
		assert.Error(t, err, "%+v", req)
	}
}

func TestFollowCountsTheStream(t *testing.T) {
	store := flow.NewStore(100)
	srv := httptest.NewServer(flow.Handler(store, nil))
	defer srv.Close()
	l := &Loader{log: slog.Default()}
	post := httptest.NewRecorder()
	l.handleFollow(post, httptest.NewRequest(http.MethodPost, "/follow", strings.NewReader(`{"url":"`+srv.URL+`?follow=true&no-history=true"}`)))
	require.Equal(t, http.StatusOK, post.Code, post.Body.String())
	require.Eventually(t, func() bool { return store.Subscribers() == 1 }, 2*time.Second, 10*time.Millisecond)
	for i := range 50 {
		store.Add(&flow.Flow{Time: time.Unix(int64(i), 0), Verdict: flow.VerdictForwarded})
	}
	require.Eventually(t, func() bool {
		rec := httptest.NewRecorder()
		l.handleFollow(rec, httptest.NewRequest(http.MethodGet, "/follow", nil))
		var st FollowStats
		return json.Unmarshal(rec.Body.Bytes(), &st) == nil && st.Flows == 50 && st.Error == ""
	}, 2*time.Second, 10*time.Millisecond)
	del := httptest.NewRecorder()
	l.handleFollow(del, httptest.NewRequest(http.MethodDelete, "/follow", nil))
	assert.Equal(t, http.StatusNoContent, del.Code)
}

func TestLoaderControlAPIServesBothLoads(t *testing.T) {
	l, err := NewLoader(LoadConfig{Port: 8080, SinkFirst: 9000, SinkCount: 1}, slog.Default())
	require.NoError(t, err)
	srv := httptest.NewServer(l.mux()) // panicked before: the common POST /load and the flow load's were one pattern
	defer srv.Close()
	res, err := http.Get(srv.URL + "/flowload/stats")
	require.NoError(t, err)
	defer res.Body.Close()
	var st LoadStats
	require.NoError(t, json.NewDecoder(res.Body).Decode(&st))
	assert.Equal(t, http.StatusOK, res.StatusCode)
	bad, err := http.Post(srv.URL+"/flowload", "application/json", strings.NewReader(`{"target":"::1"}`))
	require.NoError(t, err)
	bad.Body.Close()
	assert.Equal(t, http.StatusBadRequest, bad.StatusCode, "the flow load answers its own endpoint")
}
