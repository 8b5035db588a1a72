package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UINode is a star of the graph: a probe workload whose /status the UI reads at Address.
type UINode struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Present is false when the node's /status could not be fetched (drawn as missing).
	Present bool   `json:"present"`
	Error   string `json:"error,omitempty"`
}

// UIEdge says From's last probe of To succeeded.
type UIEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Graph is GET /api/graph.
type Graph struct {
	Nodes     []UINode  `json:"nodes"`
	Edges     []UIEdge  `json:"edges"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ParseUINode parses a --node value ID=host:port (e.g. F=frontend.stars:80).
func ParseUINode(s string) (UINode, error) {
	id, addr, ok := strings.Cut(s, "=")
	if !ok || id == "" {
		return UINode{}, fmt.Errorf("node %q: want ID=host:port, e.g. F=frontend.stars:80", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return UINode{}, fmt.Errorf("node %q: address %q: want host:port", s, addr)
	}
	return UINode{ID: id, Address: addr}, nil
}

// UIConfig configures the management UI.
type UIConfig struct {
	Addr     string
	Port     int
	Nodes    []UINode
	Interval time.Duration
	Timeout  time.Duration
}

// UI polls every node's /status and serves the star graph.
type UI struct {
	cfg    UIConfig
	log    *slog.Logger
	client *http.Client
	mu     sync.Mutex
	graph  Graph
}

// NewUI validates cfg.
func NewUI(cfg UIConfig, log *slog.Logger) (*UI, error) {
	if len(cfg.Nodes) == 0 {
		return nil, fmt.Errorf("no --node given: pass e.g. --node C=client.client:9000 --node F=frontend.stars:80")
	}
	seen := map[string]bool{}
	for _, n := range cfg.Nodes {
		if seen[n.ID] {
			return nil, fmt.Errorf("node id %q given twice", n.ID)
		}
		seen[n.ID] = true
	}
	log = pollDefaults(&cfg.Interval, &cfg.Timeout, log)
	ui := &UI{cfg: cfg, log: log, client: newFreshClient(cfg.Timeout)}
	ui.graph = Graph{Nodes: append([]UINode(nil), cfg.Nodes...)}
	return ui, nil
}

// Graph returns the last graph.
func (u *UI) Graph() Graph {
	u.mu.Lock()
	defer u.mu.Unlock()
	g := u.graph
	g.Nodes = append([]UINode(nil), g.Nodes...)
	g.Edges = append([]UIEdge(nil), g.Edges...)
	return g
}

// Refresh fetches every node's /status now and rebuilds the graph.
func (u *UI) Refresh(ctx context.Context) Graph {
	byAddr := map[string]string{}
	for _, n := range u.cfg.Nodes {
		byAddr[n.Address] = n.ID
	}
	nodes := make([]UINode, len(u.cfg.Nodes))
	statuses := make([][]PeerStatus, len(u.cfg.Nodes))
	var wg sync.WaitGroup
	for i, n := range u.cfg.Nodes {
		wg.Go(func() {
			st, err := u.fetchStatus(ctx, n.Address)
			nodes[i] = UINode{ID: n.ID, Address: n.Address, Present: err == nil}
			if err != nil {
				nodes[i].Error = err.Error()
			}
			statuses[i] = st
		})
	}
	wg.Wait()
	g := Graph{Nodes: nodes, UpdatedAt: time.Now().UTC()}
	for i, n := range nodes {
		if !n.Present {
			continue
		}
		for _, st := range statuses[i] {
			to, ok := byAddr[peerAddress(st.Peer)]
			if ok && st.Reachable && to != n.ID {
				g.Edges = append(g.Edges, UIEdge{From: n.ID, To: to})
			}
		}
	}
	u.mu.Lock()
	u.graph = g
	u.mu.Unlock()
	return g
}

// peerAddress reduces a probe's peer (host:port or URL) to host:port.
func peerAddress(peer string) string {
	p, err := ParsePeer(peer)
	if err != nil || p.URL == nil {
		return peer
	}
	if p.URL.Port() != "" {
		return p.URL.Host
	}
	if p.URL.Scheme == "https" {
		return net.JoinHostPort(p.URL.Hostname(), "443")
	}
	return net.JoinHostPort(p.URL.Hostname(), "80")
}

func (u *UI) fetchStatus(ctx context.Context, addr string) ([]PeerStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, fmt.Errorf("status request to %s: %w", addr, err)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET http://%s/status: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s/status: %s", addr, resp.Status)
	}
	var st []PeerStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("decode status of %s: %w", addr, err)
	}
	return st, nil
}

// Handler serves / (the page), /api/graph, /probe and /healthz.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/graph", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, u.Graph()) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTemplate.Execute(w, layout(u.Graph())); err != nil {
			u.log.Warn("render page", "err", err)
		}
	})
	RegisterCommon(mux)
	return mux
}

// Run refreshes the graph every Interval and serves until ctx ends.
func (u *UI) Run(ctx context.Context) error {
	u.log.Info("management-ui serving", "port", u.cfg.Port, "nodes", len(u.cfg.Nodes))
	return serveEvery(ctx, net.JoinHostPort(u.cfg.Addr, strconv.Itoa(u.cfg.Port)), u.Handler(), u.cfg.Interval, func(ctx context.Context) { u.Refresh(ctx) })
}

type drawnNode struct {
	UINode
	X, Y float64
}

type drawnEdge struct {
	UIEdge
	X1, Y1, X2, Y2 float64
}

type page struct {
	Nodes     []drawnNode
	Edges     []drawnEdge
	UpdatedAt string
}

// layout puts the nodes on a circle and shortens each edge so its arrow ends at the target circle.
func layout(g Graph) page {
	const cx, cy, r, nodeR = 250.0, 230.0, 160.0, 34.0
	p := page{UpdatedAt: g.UpdatedAt.Format(time.RFC3339)}
	pos := map[string][2]float64{}
	for i, n := range g.Nodes {
		a := -math.Pi/2 + 2*math.Pi*float64(i)/float64(len(g.Nodes))
		x, y := cx+r*math.Cos(a), cy+r*math.Sin(a)
		pos[n.ID] = [2]float64{x, y}
		p.Nodes = append(p.Nodes, drawnNode{UINode: n, X: x, Y: y})
	}
	for _, e := range g.Edges {
		a, b := pos[e.From], pos[e.To]
		dx, dy := b[0]-a[0], b[1]-a[1]
		d := math.Hypot(dx, dy)
		if d == 0 {
			continue
		}
		ux, uy := dx/d, dy/d
		// Offset sideways so A->B and B->A are both visible.
		ox, oy := -uy*6, ux*6
		p.Edges = append(p.Edges, drawnEdge{UIEdge: e,
			X1: a[0] + ux*nodeR + ox, Y1: a[1] + uy*nodeR + oy,
			X2: b[0] - ux*(nodeR+4) + ox, Y2: b[1] - uy*(nodeR+4) + oy})
	}
	return p
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>Starlab stars</title>
<style>body{font-family:sans-serif;background:#111;color:#eee} .missing{opacity:.25} text{fill:#fff;font-size:22px;font-weight:bold}</style>
</head><body>
<h1>Stars: who can reach whom</h1>
<svg id="graph" width="500" height="460" viewBox="0 0 500 460" xmlns="http://www.w3.org/2000/svg">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8f8"/></marker></defs>
{{range .Edges}}<line class="edge" data-from="{{.From}}" data-to="{{.To}}" x1="{{printf "%.1f" .X1}}" y1="{{printf "%.1f" .Y1}}" x2="{{printf "%.1f" .X2}}" y2="{{printf "%.1f" .Y2}}" stroke="#8f8" stroke-width="3" marker-end="url(#arrow)"/>
{{end}}{{range .Nodes}}<g class="node{{if not .Present}} missing{{end}}" data-id="{{.ID}}" data-present="{{.Present}}"><title>{{.Address}}{{if .Error}}: {{.Error}}{{end}}</title><circle cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="34" fill="{{if .Present}}#36c{{else}}#444{{end}}"/><text x="{{printf "%.1f" .X}}" y="{{printf "%.1f" .Y}}" text-anchor="middle" dominant-baseline="central">{{.ID}}</text></g>
{{end}}</svg>
<p>updated {{.UpdatedAt}}; JSON at <a href="/api/graph">/api/graph</a></p>
</body></html>
`))
