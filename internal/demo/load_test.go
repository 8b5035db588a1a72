package demo

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateReachesTheSink(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	l := &Loader{log: slog.Default()}
	go l.sink(pc)
	port := pc.LocalAddr().(*net.UDPAddr).Port
	res, err := Generate(context.Background(), LoadRequest{Target: "127.0.0.1", Port: port, Ports: 1, Sockets: 4, Rate: 2000, Duration: "500ms"})
	require.NoError(t, err)
	assert.Equal(t, 4, res.Tuples)
	assert.InDelta(t, 1000, float64(res.Sent), 150, "rate x duration, paced")
	assert.Zero(t, res.Errors)
	require.Eventually(t, func() bool { return l.received.Load() == res.Sent }, 2*time.Second, 10*time.Millisecond)
}

func TestGenerateRefusesBadRequests(t *testing.T) {
	for _, req := range []LoadRequest{
		{Target: "::1", Port: 9000, Ports: 1, Sockets: 1, Rate: 1, Duration: "1s"},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 1, Rate: 1, Duration: "soon"},
		{Target: "10.0.0.1", Port: 65535, Ports: 2, Sockets: 1, Rate: 1, Duration: "1s"},
		{Target: "10.0.0.1", Port: 9000, Ports: 1, Sockets: 0, Rate: 1, Duration: "1s"},
	} {
		_, err := Generate(context.Background(), req)
		assert.Error(t, err, "%+v", req)
	}
}
