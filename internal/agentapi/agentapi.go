// Package agentapi is the node agent's HTTP API (host port Port, hostNetwork): the paths, the JSON
// of GET /v1/status, and Client, the one Go client of the API (used by the observer, the bundle
// and the scenarios). The agent serves it; this package imports nothing of the agent.
//
//	c := agentapi.NewClient(net.JoinHostPort(nodeIP, strconv.Itoa(agentapi.Port)), nil)
//	st, err := c.Status(ctx)
package agentapi

// Where the agent serves its API and how its pods are found.
const (
	// Port is the agent's HTTP API port on every node (the chart's --listen).
	Port = 4245
	// PodSelector selects the agent pods (the chart's app.kubernetes.io/name).
	PodSelector = "app.kubernetes.io/name=starlab-agent"
	// PinDir is where the agent's datapath pins its maps and links on every node (the loader's
	// loader.DefaultPinDir; a test keeps the two equal, so that light packages such as the bundle
	// need not import the loader and its BPF objects).
	PinDir = "/sys/fs/bpf/starlab"
)

// API paths.
const (
	PathFlows   = "/v1/flows"  // flows answering a flow.Query (flow.Query.Values): NDJSON, or the wire form when asked
	PathStatus  = "/v1/status" // Status as JSON
	PathMetrics = "/metrics"   // Prometheus text exposition
	PathHealth  = "/healthz"   // 200 once the agent is ready
)

// Status is the JSON of GET /v1/status.
type Status struct {
	Node             string           `json:"node"`
	Ready            bool             `json:"ready"`
	PodCIDR          string           `json:"pod_cidr"`
	NodeDevice       string           `json:"node_device"`
	Endpoints        []EndpointStatus `json:"endpoints"`
	Services         int              `json:"services"`
	PolicyRevision   uint64           `json:"policy_revision"`
	SeenRevision     uint64           `json:"seen_revision"`
	PolicyProblems   []string         `json:"policy_problems,omitempty"`
	FlowsSeen        uint64           `json:"flows_seen"`
	FlowsStored      int              `json:"flows_stored"`
	LostEvents       uint64           `json:"lost_events"` // ring-buffer reserve failures, malformed events, slow flow subscribers
	FlowStages       FlowStages       `json:"flow_stages"`
	Uptime           string           `json:"uptime"`
	DatapathCounters map[string]any   `json:"datapath_counters,omitempty"`
}

// FlowStages counts a node's flow events at each stage of the agent, cumulative since it started:
// what each stage passed on and where events were lost. LostEvents is the sum of the three losses.
type FlowStages struct {
	// RingbufRead is how many events the agent read from the sl_events ring buffer.
	RingbufRead uint64 `json:"ringbuf_read"`
	// RingbufLost is how many events the datapath could not emit because the ring buffer was full
	// (sl_counters reserve failures): the agent read too slowly.
	RingbufLost uint64 `json:"ringbuf_lost"`
	// QueueLost is how many events were read but never stored: malformed, or read before the
	// informers synced (they could not be named).
	QueueLost uint64 `json:"queue_lost"`
	// Stored is how many flows entered the agent's flow store (offered to every follow stream).
	Stored uint64 `json:"stored"`
	// SubscriberLost is how many flows the agent's follow streams (the observer's among them) lost
	// because they read too slowly: a stream that falls behind reads on from the agent's flow ring
	// (--flow-buffer), and loses what the ring overwrote before it was read. The observer's merge never drops: it holds its stream from an
	// agent back, so a slow merge shows here, on the node it slows down.
	SubscriberLost uint64 `json:"subscriber_lost"`
}

// Lost is the sum of the losses of every stage.
func (s FlowStages) Lost() uint64 { return s.RingbufLost + s.QueueLost + s.SubscriberLost }

// EndpointStatus is one local endpoint in the status.
type EndpointStatus struct {
	ContainerID string `json:"container_id"`
	Pod         string `json:"pod"` // namespace/name
	IP          string `json:"ip"`
	HostIfName  string `json:"host_if_name"`
	Ifindex     int    `json:"ifindex"`
	Identity    uint32 `json:"identity"`
	Flags       uint32 `json:"flags"`
}
