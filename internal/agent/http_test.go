package agent

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPIListenAddrBindsNodeAddress (issue 11 item 9): the flow API on the host network binds the
// node's address and loopback (for port-forwards), not every address of the host, unless an
// address is given explicitly.
func TestAPIListenAddrBindsNodeAddress(t *testing.T) {
	node := netip.MustParseAddr("172.18.0.2")
	tests := []struct {
		name, listen string
		node         netip.Addr
		err          string
		want         []string
	}{
		{name: "port only: the node address", listen: ":4245", node: node, want: []string{"172.18.0.2:4245", "127.0.0.1:4245"}},
		{name: "explicit address kept", listen: "127.0.0.1:4245", node: node, want: []string{"127.0.0.1:4245"}},
		{name: "explicit wildcard kept (opt-in)", listen: "0.0.0.0:4245", node: node, want: []string{"0.0.0.0:4245"}},
		{name: "no node address", listen: ":4245", err: "the node has no address to bind"},
		{name: "malformed", listen: "4245", node: node, err: "listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := apiListenAddrs(tt.listen, tt.node)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
