package cli

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
)

func TestPrintObserver(t *testing.T) {
	tests := []struct {
		name string
		view statusView
		want []string
	}{
		{"observer unreachable", statusView{Status: &lab.Status{}, ObserverError: "port-forward to starlab-system/x:4245: refused"},
			[]string{"observer:   unavailable (port-forward to starlab-system/x:4245: refused)"}},
		{"agents as the observer hears them", statusView{Status: &lab.Status{}, Observer: &observer.Status{
			Connected: 2, Unavailable: 1, FlowsPerSecond: 12.5, FlowsTotal: 900, LostEvents: 3,
			LostByStage: map[string]uint64{observer.StageRingbuf: 1, observer.StageAgentSubscriber: 2},
			Nodes: []observer.NodeStatus{
				{Name: "lab-worker", Address: "172.18.0.3:4245", State: "connected", Flows: 600, LostEvents: 3,
					AgentStages: agentapi.FlowStages{RingbufLost: 1, SubscriberLost: 2}},
				{Name: "lab-worker2", Address: "172.18.0.4:4245", State: "unavailable", Error: "connection refused"},
			}}},
			[]string{"2/3 nodes connected, 12.5 flows/s, 900 flows, 3 lost events",
				"lost by stage: ring buffer 1, agent queue 0, agent subscribers 2, observer subscribers 0",
				"lab-worker   172.18.0.3:4245  connected    600    3 (1/0/2)", "lab-worker2  172.18.0.4:4245  unavailable", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, printObserver(&b, tt.view))
			for _, w := range tt.want {
				assert.Contains(t, b.String(), w)
			}
		})
	}
}
