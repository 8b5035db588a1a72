package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// RequestProbe asks the probe server at base (e.g. "http://127.0.0.1:34567", a port-forward to a demo
// pod) for one connection to target with protocol (tcp or udp) and the given connect timeout, through
// GET /probe. The request itself may take the timeout plus 10 s.
func RequestProbe(ctx context.Context, base, target, protocol string, timeout time.Duration) (ProbeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	q := url.Values{"target": {target}, "protocol": {protocol}, "timeout": {timeout.String()}}
	u := base + "/probe?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return ProbeResult{}, fmt.Errorf("probe request %s: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ProbeResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ProbeResult{}, fmt.Errorf("/probe answered %s", resp.Status)
	}
	var res ProbeResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return ProbeResult{}, fmt.Errorf("decode /probe answer: %w", err)
	}
	return res, nil
}
