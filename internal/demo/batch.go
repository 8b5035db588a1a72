package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// MaxBatchProbes bounds one POST /probe/batch request.
const MaxBatchProbes = 4096

// BatchRequest is the body of POST /probe/batch: many connections made at once from inside the pod.
type BatchRequest struct {
	// Timeout of each connection, e.g. "1s" (default 1s, at most 1m).
	Timeout string        `json:"timeout,omitempty"`
	Probes  []BatchTarget `json:"probes"`
}

// BatchTarget is one connection of a batch: host:port and tcp, udp or sctp.
type BatchTarget struct {
	Target   string `json:"target"`
	Protocol string `json:"protocol,omitempty"`
}

// BatchResponse answers POST /probe/batch: one result per probe, in request order.
type BatchResponse struct {
	Results []ProbeResult `json:"results"`
}

// ProbeBatch makes every connection of targets concurrently, each bounded by timeout, from source
// ports taken from ports (nil: the kernel's choice).
func ProbeBatch(ctx context.Context, ports *SourcePorts, targets []BatchTarget, timeout time.Duration) []ProbeResult {
	out := make([]ProbeResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out[i] = DialFrom(cctx, ports, t.Protocol, t.Target)
		})
	}
	wg.Wait()
	return out
}

func handleProbeBatch(w http.ResponseWriter, r *http.Request, ports *SourcePorts) {
	var req BatchRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("decode batch request: %v", err)})
		return
	}
	if len(req.Probes) > MaxBatchProbes {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%d probes: at most %d per batch", len(req.Probes), MaxBatchProbes)})
		return
	}
	timeout := time.Second
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 || d > time.Minute {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("timeout %q: want a duration up to 1m such as 1s", req.Timeout)})
			return
		}
		timeout = d
	}
	for i, p := range req.Probes {
		if _, _, err := net.SplitHostPort(p.Target); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("probe %d: target %q: want host:port", i, p.Target)})
			return
		}
		if p.Protocol != "" && !validProtocol(p.Protocol) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("probe %d: protocol %q: want tcp, udp or sctp", i, p.Protocol)})
			return
		}
	}
	writeJSON(w, http.StatusOK, BatchResponse{Results: ProbeBatch(r.Context(), ports, req.Probes, timeout)})
}
