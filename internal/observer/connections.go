package observer

import (
	"net/url"
	"slices"
	"strconv"

	"github.com/starlab-dev/starlab/internal/flow"
)

// ConnectionsQuery selects the connections /api/v1/connections folds.
type ConnectionsQuery struct {
	Edge string // only flows of this graph edge (EdgeID), replies included; "" for all
	Last int    // newest connections returned (default 100)
	Scan int    // newest flows of the store read (default 20000)
}

// ConnectionsView is the /api/v1/connections answer: the newest flows folded into connections
// (flow.Connections, as `starlab observe --connections` does), so a table shows connections, not
// packets: a connection's NEW events at both hooks, its replies and its CLOSE are one row.
type ConnectionsView struct {
	Edge        string             `json:"edge,omitempty"`
	Connections []*flow.Connection `json:"connections"` // newest first
	Scanned     int                `json:"scanned"`     // flows read from the store
	Events      int                `json:"events"`      // of them, folded into the connections
	More        int                `json:"more"`        // connections left out beyond Last
}

// ParseConnectionsQuery reads edge, last and scan.
func ParseConnectionsQuery(v url.Values) (ConnectionsQuery, error) {
	q := ConnectionsQuery{Last: 100, Scan: 20000}
	for k, vals := range v {
		last := vals[len(vals)-1]
		switch k {
		case "edge":
			q.Edge = last
		case "last", "scan":
			n, err := strconv.Atoi(last)
			if err != nil || n <= 0 {
				return ConnectionsQuery{}, errorf("query parameter %s=%q: use a positive number", k, last)
			}
			if k == "last" {
				q.Last = n
			} else {
				q.Scan = n
			}
		default:
			return ConnectionsQuery{}, errorf("unknown query parameter %q for connections: use edge, last, scan", k)
		}
	}
	return q, nil
}

// Connections folds the store's newest q.Scan flows (of edge q.Edge) into connections.
func (o *Observer) Connections(q ConnectionsQuery) ConnectionsView {
	flows := o.store.Snapshot(nil, q.Scan)
	v := ConnectionsView{Edge: q.Edge, Scanned: len(flows), Connections: []*flow.Connection{}}
	fold := flow.NewConnections()
	for _, f := range flows {
		if q.Edge != "" && EdgeID(f) != q.Edge {
			continue
		}
		fold.Add(f)
		v.Events++
	}
	list := fold.List()
	slices.Reverse(list)
	if len(list) > q.Last {
		v.More = len(list) - q.Last
		list = list[:q.Last]
	}
	v.Connections = append(v.Connections, list...)
	return v
}
