package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/starlab-dev/starlab/internal/flow"
)

// maxStatusBytes bounds a decoded status answer.
const maxStatusBytes = 1 << 20

// Client talks to one agent's HTTP API. Every call takes its deadline from ctx.
type Client struct {
	base string // http://host:port
	addr string // host:port, for messages
	http *http.Client
}

// NewClient returns a client of the agent at addr (host:port). A nil hc uses http.DefaultClient.
func NewClient(addr string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: "http://" + addr, addr: addr, http: hc}
}

// NewClientURL returns a client of the agent at base (e.g. a port-forward's http://127.0.0.1:port).
func NewClientURL(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	base = strings.TrimSuffix(base, "/")
	return &Client{base: base, addr: strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://"), http: hc}
}

// Addr is the agent's host:port (as given to NewClient).
func (c *Client) Addr() string { return c.addr }

// Get starts GET path?q and returns the body of a 200 answer; the caller closes it. Any other
// answer is an error carrying the status and the start of the body.
func (c *Client) Get(ctx context.Context, path string, q url.Values) (io.ReadCloser, error) {
	resp, err := c.get(ctx, path, q, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// get starts GET path?q, with an Accept header when accept is set, and returns a 200 answer.
func (c *Client) get(ctx context.Context, path string, q url.Values, accept string) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("agent %s request %s: %w", c.addr, path, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("connect to agent %s: %w", c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("agent %s GET %s answered %s: %s", c.addr, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// FlowStream is an open GET /v1/flows answer: Next decodes it flow by flow. Close it when done.
type FlowStream struct {
	body io.ReadCloser
	dec  flow.StreamDecoder
	addr string
}

// Flows opens the flows answering q (q.Follow keeps the stream open for new flows until ctx ends),
// asking for the binary wire form (an agent that answers NDJSON is read as NDJSON).
func (c *Client) Flows(ctx context.Context, q flow.Query) (*FlowStream, error) {
	resp, err := c.get(ctx, PathFlows, q.Values(), flow.WireContentType)
	if err != nil {
		return nil, err
	}
	return &FlowStream{body: resp.Body, dec: flow.NewStreamDecoder(resp.Header.Get("Content-Type"), resp.Body), addr: c.addr}, nil
}

// Next returns the next flow, or io.EOF at the end of the answer.
func (s *FlowStream) Next() (*flow.Flow, error) {
	f, err := s.dec.Decode()
	if errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("read flows from agent %s: %w", s.addr, err)
	}
	return f, nil
}

// Close ends the answer.
func (s *FlowStream) Close() error { return s.body.Close() }

// AllFlows returns every flow answering q (q.Follow must be false, or the call ends with ctx).
func (c *Client) AllFlows(ctx context.Context, q flow.Query) ([]*flow.Flow, error) {
	s, err := c.Flows(ctx, q)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out []*flow.Flow
	for {
		f, err := s.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	body, err := c.Get(ctx, PathStatus, nil)
	if err != nil {
		return Status{}, err
	}
	defer body.Close()
	var st Status
	if err := json.NewDecoder(io.LimitReader(body, maxStatusBytes)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decode agent %s status: %w", c.addr, err)
	}
	return st, nil
}

// Metrics fetches the Prometheus text exposition of GET /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	body, err := c.Get(ctx, PathMetrics, nil)
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return "", fmt.Errorf("read agent %s metrics: %w", c.addr, err)
	}
	return string(b), nil
}
