package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// connFlows is one TCP connection as the datapath reports it on one node (NEW leaving the client,
// NEW entering the server, a reply, CLOSE) and one denied connection.
func connFlows() []*flow.Flow {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	client := flow.Endpoint{Identity: 256, Namespace: "client", PodName: "client-a"}
	server := flow.Endpoint{Identity: 300, Namespace: "stars", PodName: "backend-1"}
	pol := []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "stars", Name: "backend-policy"}}
	mk := func(i int, ev flow.EventType, reply bool, obs string) *flow.Flow {
		f := &flow.Flow{Time: t0.Add(time.Duration(i) * time.Millisecond), Verdict: flow.VerdictForwarded, EventType: ev,
			IP:     flow.IP{Source: "10.244.1.5", Destination: "10.244.1.7"},
			L4:     flow.L4{Protocol: flow.ProtoTCP, SourcePort: 40000, DestinationPort: 6379},
			Source: client, Destination: server, TraceObservationPoint: obs, IsReply: reply, AllowedBy: pol}
		if reply {
			f.IP.Source, f.IP.Destination = f.IP.Destination, f.IP.Source
			f.L4.SourcePort, f.L4.DestinationPort = f.L4.DestinationPort, f.L4.SourcePort
			f.Source, f.Destination, f.AllowedBy = server, client, nil
		}
		return f
	}
	closeF := mk(3, flow.EventClose, false, flow.ObsFromEndpoint)
	closeF.Packets, closeF.Bytes = 12, 3400
	denied := mk(4, flow.EventDrop, false, flow.ObsToEndpoint)
	denied.L4.SourcePort, denied.Verdict, denied.DropReasonDesc = 40001, flow.VerdictDropped, flow.DropPolicyDenied
	denied.AllowedBy, denied.DeniedBy = nil, []flow.Policy{{Kind: flow.PolicyKindDefaultDeny}}
	return []*flow.Flow{mk(0, flow.EventNew, false, flow.ObsFromEndpoint), mk(1, flow.EventNew, false, flow.ObsToEndpoint),
		mk(2, flow.EventNew, true, flow.ObsFromEndpoint), closeF, denied}
}

func TestObserveConnections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.ndjson")
	var buf bytes.Buffer
	enc := flow.NewEncoder(&buf)
	for _, f := range connFlows() {
		require.NoError(t, enc.Encode(f))
	}
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))

	out, err := run(t, "observe", "--input-file", path, "--connections", "-o", "json")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, "five events, two connections: %s", out)
	var c flow.Connection
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &c))
	assert.Equal(t, "client-a", c.Client.PodName)
	assert.Equal(t, uint16(6379), c.ServerPort)
	assert.Equal(t, 4, c.Events)
	assert.Equal(t, 1, c.Replies)
	assert.True(t, c.Closed)
	assert.Equal(t, uint64(12), c.Packets)

	out, err = run(t, "observe", "--input-file", path, "--connections", "-o", "table")
	require.NoError(t, err)
	assert.Contains(t, out, "client/client-a:40000")
	assert.Regexp(t, `FORWARDED\s+closed\s+4\s+12\s+3400\s+NetworkPolicy/stars/backend-policy`, out)
	assert.Regexp(t, `DROPPED POLICY_DENIED\s+denied\s+1`, out)

	out, err = run(t, "observe", "--input-file", path, "--connections", "--policy", "stars/backend-policy")
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out, "\n"), "--policy keeps the flows the policy decided: %s", out)
}
