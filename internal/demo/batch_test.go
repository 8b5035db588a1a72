package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	port := pc.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, pc.Close())
	return port
}

func TestProbeBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	udp := freeUDPPort(t)
	require.NoError(t, ListenUDPEcho(ctx, "127.0.0.1", udp))
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer tcp.Close()
	go acceptAndClose(tcp)
	closedUDP := freeUDPPort(t)

	mux := http.NewServeMux()
	RegisterCommon(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name      string
		body      BatchRequest
		code      int
		reachable []bool
	}{
		{"tcp and udp", BatchRequest{Timeout: "300ms", Probes: []BatchTarget{
			{Target: tcp.Addr().String(), Protocol: "tcp"},
			{Target: "127.0.0.1:" + strconv.Itoa(udp), Protocol: "udp"},
			{Target: "127.0.0.1:" + strconv.Itoa(closedUDP), Protocol: "udp"},
		}}, http.StatusOK, []bool{true, true, false}},
		{"bad protocol", BatchRequest{Probes: []BatchTarget{{Target: "a:1", Protocol: "icmp"}}}, http.StatusBadRequest, nil},
		{"bad target", BatchRequest{Probes: []BatchTarget{{Target: "nope"}}}, http.StatusBadRequest, nil},
		{"bad timeout", BatchRequest{Timeout: "2h"}, http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.body)
			require.NoError(t, err)
			resp, err := http.Post(srv.URL+"/probe/batch", "application/json", bytes.NewReader(b))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, tt.code, resp.StatusCode)
			if tt.code != http.StatusOK {
				return
			}
			var got BatchResponse
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
			require.Len(t, got.Results, len(tt.reachable))
			for i, want := range tt.reachable {
				assert.Equal(t, want, got.Results[i].Reachable, "probe %d: %+v", i, got.Results[i])
			}
		})
	}
}

// TestProbeBatchNeverReusesSourcePorts: one probe process must not reuse a source port (so a
// 5-tuple an earlier probe left in some conntrack table) across batches. A reused UDP 5-tuple is
// one flow to the destination's conntrack: probed through a ClusterIP after the pod IP, the
// destination forwards it as established and reports no NEW flow (the conformance runs' "allowed,
// no ingress flow" cells); with Linux conntrack a reused 5-tuple even passes a policy that now
// denies it.
func TestProbeBatchNeverReusesSourcePorts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	udp := freeUDPPort(t)
	require.NoError(t, ListenUDPEcho(ctx, "127.0.0.1", udp))
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer tcp.Close()
	go acceptAndClose(tcp)
	mux := http.NewServeMux()
	RegisterCommon(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	seen := map[string]int{}
	for batch := 0; batch < 8; batch++ {
		req := BatchRequest{Timeout: "2s"}
		for i := 0; i < 150; i++ {
			req.Probes = append(req.Probes, BatchTarget{Target: "127.0.0.1:" + strconv.Itoa(udp), Protocol: "udp"},
				BatchTarget{Target: tcp.Addr().String(), Protocol: "tcp"})
		}
		b, err := json.Marshal(req)
		require.NoError(t, err)
		resp, err := http.Post(srv.URL+"/probe/batch", "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		var got BatchResponse
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		resp.Body.Close()
		for i, r := range got.Results {
			require.True(t, r.Reachable, "probe %d of batch %d: %+v", i, batch, r)
			_, port, err := net.SplitHostPort(r.LocalAddr)
			require.NoError(t, err, "probe %d of batch %d: %+v", i, batch, r)
			seen[r.Protocol+"/"+port]++
		}
	}
	var reused []string
	for k, n := range seen {
		if n > 1 {
			reused = append(reused, k)
		}
	}
	assert.Empty(t, reused, "source ports used more than once in 8 batches of 150 UDP and 150 TCP probes")
}
