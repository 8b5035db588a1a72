package scenarios

// Workload is a demo workload as feature tables name it.
type Workload struct {
	Name   string // row/column name in tables
	ID     string // node id in the stars management UI ("" when not drawn)
	Ref    PodRef
	Target string   // host:port its Service answers on (what other pods connect to)
	Peers  []string // names of the workloads it probes by itself (what the stars UI draws)
}
