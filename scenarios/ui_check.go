package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/demo"
)

// ManagementUINodePort is the stars management UI's NodePort (the talk's value).
const ManagementUINodePort = 32500

// nodeIP returns the InternalIP of the first node (sorted by name).
func (e *Env) nodeIP(ctx context.Context) (string, error) {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	slices.SortFunc(nodes.Items, func(a, b corev1.Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address, nil
			}
		}
	}
	return "", fmt.Errorf("no node has an InternalIP")
}

// ManagementUIURL is the UI's address through the NodePort on a node IP.
func (e *Env) ManagementUIURL(ctx context.Context) (string, error) {
	ip, err := e.nodeIP(ctx)
	if err != nil {
		return "", err
	}
	return "http://" + net.JoinHostPort(ip, fmt.Sprint(ManagementUINodePort)), nil
}

func fetchUIGraph(ctx context.Context, base string) (UIGraph, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/graph", nil)
	if err != nil {
		return UIGraph{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return UIGraph{}, fmt.Errorf("GET %s/api/graph: %w", base, err)
	}
	defer resp.Body.Close()
	var g demo.Graph
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		return UIGraph{}, fmt.Errorf("decode %s/api/graph: %w", base, err)
	}
	return uiGraphFromDemo(g), nil
}

var (
	domEdgeRe = regexp.MustCompile(`class="edge" data-from="([^"]+)" data-to="([^"]+)"`)
	domNodeRe = regexp.MustCompile(`class="node[^"]*" data-id="([^"]+)" data-present="(true|false)"`)
)

// parseUIDOM reads the graph the page drew from its DOM.
func parseUIDOM(dom string) (UIGraph, error) {
	g := UIGraph{Present: map[string]bool{}}
	for _, m := range domNodeRe.FindAllStringSubmatch(dom, -1) {
		g.Present[m[1]] = m[2] == "true"
	}
	if len(g.Present) == 0 {
		return g, fmt.Errorf("the page's DOM has no star nodes (%d bytes)", len(dom))
	}
	for _, m := range domEdgeRe.FindAllStringSubmatch(dom, -1) {
		g.Edges = append(g.Edges, m[1]+"->"+m[2])
	}
	slices.Sort(g.Edges)
	return g, nil
}

// waitUIGraph waits until the management UI (NodePort on a node IP) serves want in /api/graph, then
// loads the page in headless Chromium and returns what the page drew (retrying while the UI refreshes).
func (e *Env) waitUIGraph(ctx context.Context, want UIGraph, timeout time.Duration) (UIGraph, error) {
	base, err := e.ManagementUIURL(ctx)
	if err != nil {
		return UIGraph{}, err
	}
	var last UIGraph
	err = poll(ctx, timeout, 500*time.Millisecond, "management UI at "+base+" draws the expected graph", func(ctx context.Context) (bool, string, error) {
		g, err := fetchUIGraph(ctx, base)
		if err != nil {
			return false, "", err
		}
		last = g
		return uiEqual(g, want), fmt.Sprintf("/api/graph has %v, want %v", g, want), nil
	})
	if err != nil {
		return last, err
	}
	err = poll(ctx, timeout, time.Second, "headless Chromium sees the expected graph at "+base, func(ctx context.Context) (bool, string, error) {
		dom, err := chromiumDOM(ctx, base+"/")
		if err != nil {
			return false, "", err
		}
		g, err := parseUIDOM(dom)
		if err != nil {
			return false, "", err
		}
		last = g
		return uiEqual(g, want), fmt.Sprintf("page drew %v, want %v", g, want), nil
	})
	return last, err
}

func uiEqual(a, b UIGraph) bool {
	if len(a.Present) != len(b.Present) || !slices.Equal(a.Edges, b.Edges) {
		return false
	}
	for k, v := range a.Present {
		if bv, ok := b.Present[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
