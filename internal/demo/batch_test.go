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
		{"bad protocol", BatchRequest{Probes: []BatchTarget{{Target: "a:1", Protocol: "sctp"}}}, http.StatusBadRequest, nil},
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
