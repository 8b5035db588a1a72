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
	PathFlows   = "/v1/flows"  // NDJSON flows answering a flow.Query (flow.Query.Values)
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
	Uptime           string           `json:"uptime"`
	DatapathCounters map[string]any   `json:"datapath_counters,omitempty"`
}

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
