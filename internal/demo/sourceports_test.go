package demo

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSourcePortsWrapAndSkipPortsInUse(t *testing.T) {
	s := NewSourcePorts(100, 102)
	first := s.take()
	got := []int{first, s.take(), s.take(), s.take()}
	assert.Equal(t, first, got[3], "every port of the range once, then around again: %v", got)
	assert.ElementsMatch(t, []int{100, 101, 102}, got[:3])

	// A port held by another socket is skipped; with none left, the kernel chooses.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	echo := freeUDPPort(t)
	require.NoError(t, ListenUDPEcho(ctx, "127.0.0.1", echo))
	held, err := net.ListenPacket("udp4", "0.0.0.0:0")
	require.NoError(t, err)
	defer held.Close()
	hp := held.LocalAddr().(*net.UDPAddr).Port
	only := NewSourcePorts(hp, hp)
	r := DialFrom(ctx, only, "udp", "127.0.0.1:"+strconv.Itoa(echo))
	require.True(t, r.Reachable, "%+v", r)
	_, port, err := net.SplitHostPort(r.LocalAddr)
	require.NoError(t, err)
	assert.NotEqual(t, strconv.Itoa(hp), port)
}
