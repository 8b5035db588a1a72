// Package cni is Starlab's CNI plugin (spec 1.0): routed pod networking (no bridge) with a /32 per
// pod, a host-side veth per pod whose programs the node agent attaches, and IPs from datapath/ipam.
//
// The plugin talks to the agent over a unix socket (EndpointRequest, POST /v1/endpoints and
// DELETE /v1/endpoints/<containerID>); the agent imports this package for the request type and
// the handler paths.
package cni

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// API paths on the agent socket.
const (
	PathEndpoints = "/v1/endpoints"  // POST: EndpointRequest
	PathEndpoint  = "/v1/endpoints/" // DELETE: + containerID
	PathHealth    = "/v1/healthz"    // GET: 200 when the datapath is loaded
)

// EndpointRequest is the body of POST /v1/endpoints (also the record the agent persists).
type EndpointRequest struct {
	ContainerID  string `json:"containerID"`
	Netns        string `json:"netns"`
	IfName       string `json:"ifName"`
	HostIfName   string `json:"hostIfName"`
	IP           string `json:"ip"`
	MAC          string `json:"mac"`
	HostMAC      string `json:"hostMac"`
	PodName      string `json:"podName"`
	PodNamespace string `json:"podNamespace"`
}

// Validate checks the request fields the agent relies on.
func (r *EndpointRequest) Validate() error {
	switch {
	case r.ContainerID == "":
		return errors.New("endpoint request: containerID is empty")
	case r.HostIfName == "":
		return fmt.Errorf("endpoint request %s: hostIfName is empty", r.ContainerID)
	case net.ParseIP(r.IP).To4() == nil:
		return fmt.Errorf("endpoint request %s: ip %q is not an IPv4 address", r.ContainerID, r.IP)
	}
	if _, err := net.ParseMAC(r.MAC); err != nil {
		return fmt.Errorf("endpoint request %s: mac %q: %w", r.ContainerID, r.MAC, err)
	}
	return nil
}

// HostIfName is the host-side veth name for a container: "sl" + the first 11 hex digits of
// sha256(containerID).
func HostIfName(containerID string) string {
	sum := sha256.Sum256([]byte(containerID))
	return "sl" + hex.EncodeToString(sum[:])[:11]
}

// AgentClient calls the agent's unix-socket API.
type AgentClient struct {
	socket string
	hc     *http.Client
}

// NewAgentClient returns a client for the agent socket path.
func NewAgentClient(socket string, timeout time.Duration) *AgentClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &AgentClient{socket: socket, hc: &http.Client{Transport: tr, Timeout: timeout}}
}

// ErrAgentUnreachable wraps failures to connect to the agent socket.
var ErrAgentUnreachable = errors.New("agent unreachable")

func (c *AgentClient) do(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		var oe *net.OpError
		if errors.As(err, &ue) && errors.As(err, &oe) && oe.Op == "dial" {
			return fmt.Errorf("%s %s on %s: %w: %v", method, path, c.socket, ErrAgentUnreachable, err)
		}
		return fmt.Errorf("%s %s on %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s on %s: agent answered %s: %s", method, path, c.socket, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// AddEndpoint registers an endpoint with the agent.
func (c *AgentClient) AddEndpoint(ctx context.Context, r EndpointRequest) error {
	return c.do(ctx, http.MethodPost, PathEndpoints, r)
}

// DeleteEndpoint removes an endpoint; unknown endpoints are not an error for the agent.
func (c *AgentClient) DeleteEndpoint(ctx context.Context, containerID string) error {
	return c.do(ctx, http.MethodDelete, PathEndpoint+url.PathEscape(containerID), nil)
}

// Health asks whether the agent's datapath is ready.
func (c *AgentClient) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, PathHealth, nil)
}
