package scenarios

import (
	"fmt"
	"strings"
)

// Workload is a demo workload as feature tables name it.
type Workload struct {
	Name   string // row/column name in tables
	ID     string // node id in the stars management UI ("" when not drawn)
	Ref    PodRef
	Target string   // host:port its Service answers on (what other pods connect to)
	Peers  []string // names of the workloads it probes by itself (what the stars UI draws)
}

// findWorkload returns the workload of ws named name; the error lists the names (demo names the set).
func findWorkload(demo string, ws []Workload, name string) (Workload, error) {
	names := make([]string, 0, len(ws))
	for _, w := range ws {
		if w.Name == name {
			return w, nil
		}
		names = append(names, w.Name)
	}
	return Workload{}, fmt.Errorf("unknown %s workload %q: use %s", demo, name, orList(names))
}

// orList writes names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
