package scenarios

import (
	"net"
	"strconv"

	"github.com/starlab-dev/starlab/internal/agentapi"
)

// agentClient is a client of the agent API on the node with IP nodeIP (hostNetwork: reachable from
// this host on the kind network).
func agentClient(nodeIP string) *agentapi.Client {
	return agentapi.NewClient(net.JoinHostPort(nodeIP, strconv.Itoa(agentapi.Port)), nil)
}
