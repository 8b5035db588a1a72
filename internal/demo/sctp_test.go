package demo

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSCTPProbe: on a kernel with SCTP, a probe to a ListenSCTP port is reachable from a source
// port of the allocator and a probe to a closed port is not; on a kernel without SCTP (this
// repository's CI VM has none) listening fails and a probe is unreachable, both saying why.
func TestSCTPProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := freeUDPPort(t) // any free number; SCTP has its own port space
	err := ListenSCTP(ctx, "127.0.0.1", port)
	ports := NewSourcePorts(45000, 45100)
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	r := DialFrom(dctx, ports, "sctp", "127.0.0.1:"+strconv.Itoa(port))
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) {
		assert.ErrorContains(t, err, "SCTP is not supported by this kernel (load the sctp module on the node)")
		assert.False(t, r.Reachable)
		assert.Contains(t, r.Error, "SCTP is not supported by this kernel")
		return
	}
	require.NoError(t, err)
	require.True(t, r.Reachable, "%+v", r)
	host, p, err := net.SplitHostPort(r.LocalAddr)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	n, _ := strconv.Atoi(p)
	assert.True(t, n >= 45000 && n <= 45100, "source port %d from the allocator", n)

	closed := DialFrom(dctx, ports, "sctp", "127.0.0.1:"+strconv.Itoa(freeUDPPort(t)))
	assert.False(t, closed.Reachable)
	assert.NotEmpty(t, closed.Error)
}

func TestSCTPProbeBadTarget(t *testing.T) {
	r := DialFrom(context.Background(), nil, "sctp", "127.0.0.1:0")
	assert.False(t, r.Reachable)
	assert.Contains(t, r.Error, "bad port")
}
