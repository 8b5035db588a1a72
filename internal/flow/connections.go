package flow

import (
	"sort"
	"time"
)

// Connection is the flows of one connection folded together: the events of both directions at
// every hook (a pod-to-pod connection is seen leaving the client and entering the server), its
// replies and its close, keyed by the client's 5-tuple.
type Connection struct {
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	Client     Endpoint  `json:"client"` // the side that opened it (the non-reply source)
	Server     Endpoint  `json:"server"`
	Protocol   string    `json:"protocol"`
	ClientPort uint16    `json:"client_port"`
	ServerPort uint16    `json:"server_port"`
	Service    *Service  `json:"service,omitempty"` // the Service dialled, if any
	Verdict    Verdict   `json:"verdict"`           // DROPPED when any of its events was a drop
	DropReason string    `json:"drop_reason_desc,omitempty"`
	Policies   []Policy  `json:"policies,omitempty"` // the policies that allowed or denied it (first seen)
	Events     int       `json:"events"`             // flows folded in
	Replies    int       `json:"replies"`            // of them, replies
	Closed     bool      `json:"closed"`             // a CLOSE event was seen
	Packets    uint64    `json:"packets,omitempty"`  // from CLOSE events (the datapath counts per direction and hook; the largest)
	Bytes      uint64    `json:"bytes,omitempty"`
}

// ConnKey is a connection's client-side 5-tuple.
type ConnKey struct {
	Proto                  string
	ClientIP, ServerIP     string
	ClientPort, ServerPort uint16
}

// KeyOf is the connection key of a flow: a reply's source is the server.
func KeyOf(f *Flow) ConnKey {
	if f.IsReply {
		return ConnKey{Proto: f.L4.Protocol, ClientIP: f.IP.Destination, ServerIP: f.IP.Source,
			ClientPort: f.L4.DestinationPort, ServerPort: f.L4.SourcePort}
	}
	return ConnKey{Proto: f.L4.Protocol, ClientIP: f.IP.Source, ServerIP: f.IP.Destination,
		ClientPort: f.L4.SourcePort, ServerPort: f.L4.DestinationPort}
}

// Connections folds flows into connections.
type Connections struct {
	byKey map[ConnKey]*Connection
}

// NewConnections returns an empty fold.
func NewConnections() *Connections { return &Connections{byKey: map[ConnKey]*Connection{}} }

// Add folds f into its connection and returns it, and whether f opened it (its first flow).
func (c *Connections) Add(f *Flow) (*Connection, bool) {
	k := KeyOf(f)
	conn, ok := c.byKey[k]
	if !ok {
		conn = &Connection{First: f.Time, Protocol: k.Proto, ClientPort: k.ClientPort, ServerPort: k.ServerPort,
			Verdict: f.Verdict}
		if f.IsReply {
			conn.Client, conn.Server = f.Destination, f.Source
		} else {
			conn.Client, conn.Server = f.Source, f.Destination
		}
		c.byKey[k] = conn
	}
	if !f.IsReply && (conn.Client.PodName == "" && f.Source.PodName != "") {
		conn.Client = f.Source
	}
	if !f.IsReply && (conn.Server.PodName == "" && f.Destination.PodName != "") {
		conn.Server = f.Destination
	}
	conn.Events++
	if f.IsReply {
		conn.Replies++
	}
	if f.Time.After(conn.Last) {
		conn.Last = f.Time
	}
	if f.Time.Before(conn.First) {
		conn.First = f.Time
	}
	if conn.Service == nil && f.DestinationService != nil {
		conn.Service = f.DestinationService
	}
	if f.Verdict == VerdictDropped {
		conn.Verdict, conn.DropReason = VerdictDropped, f.DropReasonDesc
	}
	if conn.Policies == nil {
		if len(f.DeniedBy) > 0 {
			conn.Policies = f.DeniedBy
		} else if len(f.AllowedBy) > 0 {
			conn.Policies = f.AllowedBy
		}
	}
	if f.EventType == EventClose {
		conn.Closed = true
		conn.Packets, conn.Bytes = max(conn.Packets, f.Packets), max(conn.Bytes, f.Bytes)
	}
	return conn, !ok
}

// List is every connection, oldest first.
func (c *Connections) List() []*Connection {
	out := make([]*Connection, 0, len(c.byKey))
	for _, conn := range c.byKey {
		out = append(out, conn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].First.Before(out[j].First) })
	return out
}

// Forget drops f's connection from the fold (a follower forgets a connection once it closed).
func (c *Connections) Forget(f *Flow) { delete(c.byKey, KeyOf(f)) }

// Len is the number of connections.
func (c *Connections) Len() int { return len(c.byKey) }
