package hubbleapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starlab-dev/starlab/internal/flow"
)

// Dial is a plaintext gRPC connection to a Hubble server at addr (host:port), e.g. the observer's
// Hubble port through a port-forward. Close it when done.
func Dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("hubble API %s: %w", addr, err)
	}
	return conn, nil
}

// Client reads Starlab flows from a Hubble server's GetFlows: the gRPC counterpart of
// observer.Client.Flows, for `starlab observe --transport grpc`.
type Client struct {
	Conn grpc.ClientConnInterface
}

// Flows streams the flows answering q to emit, as Starlab flows (FromProto), until the answer ends
// (or, when following, ctx ends). A query Hubble's filters cannot express exactly (Request) is asked
// for relaxed and matched here: with Last, the history is read whole and its last N kept, then a
// followed query resumes from the newest flow read.
func (c *Client) Flows(ctx context.Context, q flow.Query, emit func(*flow.Flow) error) error {
	req, exact, err := Request(q)
	if err != nil {
		return err
	}
	if q.NoHistory && !q.Follow {
		return nil // no buffered flows and no new ones: nothing asked
	}
	if exact {
		return c.stream(ctx, req, emit)
	}
	m, err := q.Matcher()
	if err != nil {
		return err
	}
	matched := func(f *flow.Flow) error {
		if !m.Match(f) {
			return nil
		}
		return emit(f)
	}
	if q.Last == 0 || q.NoHistory {
		return c.stream(ctx, req, matched)
	}
	// Last N of a relaxed query: every flow of the window, the last N matches kept.
	hist := cloneRequest(req)
	hist.Follow, hist.Number = false, 0
	if q.Follow {
		hist.Until = nil
	}
	started := time.Now()
	ring := make([]*flow.Flow, 0, q.Last)
	next := 0
	var newest time.Time
	atNewest := map[string]bool{} // UUIDs of the flows read at the newest time: the resume sends them again
	err = c.stream(ctx, hist, func(f *flow.Flow) error {
		switch {
		case f.Time.After(newest):
			newest = f.Time
			clear(atNewest)
			atNewest[f.UUID] = true
		case f.Time.Equal(newest):
			atNewest[f.UUID] = true
		}
		if !m.Match(f) {
			return nil
		}
		if len(ring) < q.Last {
			ring = append(ring, f)
		} else {
			ring[next] = f
			next = (next + 1) % q.Last
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range ring {
		if err := emit(ring[(next+i)%len(ring)]); err != nil {
			return err
		}
	}
	if !q.Follow {
		return nil
	}
	live := cloneRequest(req)
	live.Number = 0
	if newest.IsZero() {
		// Nothing buffered answered: every flow from just before the history was read is new.
		newest = started.Add(-time.Second)
		if !q.Since.IsZero() && q.Since.After(newest) {
			newest = q.Since
		}
	}
	live.Since = timestamppb.New(newest)
	return c.stream(ctx, live, func(f *flow.Flow) error {
		if f.Time.Equal(newest) && atNewest[f.UUID] {
			return nil
		}
		return matched(f)
	})
}

func cloneRequest(req *observerpb.GetFlowsRequest) *observerpb.GetFlowsRequest {
	return &observerpb.GetFlowsRequest{Whitelist: req.Whitelist, Blacklist: req.Blacklist, Since: req.Since,
		Until: req.Until, Follow: req.Follow, Number: req.Number, First: req.First}
}

// stream runs one GetFlows and sends each flow of its answer, converted, to emit.
func (c *Client) stream(ctx context.Context, req *observerpb.GetFlowsRequest, emit func(*flow.Flow) error) error {
	call, cancel := context.WithCancel(ctx)
	defer cancel() // ends the call when emit stops early
	stream, err := observerpb.NewObserverClient(c.Conn).GetFlows(call, req)
	if err != nil {
		return fmt.Errorf("hubble GetFlows (%s): %w", describeRequest(req), err)
	}
	var resp observerpb.GetFlowsResponse
	for {
		resp.Reset()
		err := stream.RecvMsg(&resp)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("hubble GetFlows (%s): %w", describeRequest(req), err)
		}
		pb := resp.GetFlow()
		if pb == nil {
			continue // node status and lost events: not flows
		}
		if err := emit(FromProto(pb)); err != nil {
			return err
		}
	}
}
