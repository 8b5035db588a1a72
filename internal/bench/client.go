package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/portforward"
)

// loadClient runs loads in the client pod through a port-forward to its HTTP port (POST /load): the
// traffic measured starts in the pod, the port-forward only carries the request and the numbers.
type loadClient struct {
	fwd  *portforward.Forward
	http *http.Client
}

func openLoadClient(ctx context.Context, cfg *rest.Config, pod string) (*loadClient, error) {
	f, err := portforward.Open(ctx, cfg, Namespace, pod, httpPort, 0)
	if err != nil {
		return nil, err
	}
	return &loadClient{fwd: f, http: &http.Client{}}, nil
}

func (c *loadClient) Close() { c.fwd.Close() }

// run runs one load and returns its result.
func (c *loadClient) run(ctx context.Context, req demo.LoadRequest) (demo.LoadResult, error) {
	d, err := time.ParseDuration(req.Duration)
	if err != nil {
		return demo.LoadResult{}, fmt.Errorf("load duration %q: %w", req.Duration, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return demo.LoadResult{}, fmt.Errorf("encode load request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.fwd.URL()+"/load", bytes.NewReader(body))
	if err != nil {
		return demo.LoadResult{}, fmt.Errorf("load request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		return demo.LoadResult{}, fmt.Errorf("POST /load to pod %s/%s (is the demo image current? `make build`): %w", Namespace, "bench-client", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return demo.LoadResult{}, fmt.Errorf("POST /load to pod %s/bench-client: %s: %s", Namespace, resp.Status, strings.TrimSpace(string(data)))
	}
	var r demo.LoadResult
	if err := json.Unmarshal(data, &r); err != nil {
		return demo.LoadResult{}, fmt.Errorf("decode load result: %w", err)
	}
	return r, nil
}
