package repro

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// ReplayOptions say where and how fast `starlab replay` serves a bundle's flows.
type ReplayOptions struct {
	Listen string  // host:port of the observer API and UI ("127.0.0.1:0" = any free port)
	Speed  float64 // 1 = recorded speed, 10 = ten times faster, 0 = every flow at once
	// Ready is called with the base URL once the server listens.
	Ready func(url string)
	// Done is called once every flow has been served.
	Done func(served int)
}

// Replay serves flows (a bundle's failing step) through an observer with no agents: the flow API,
// the graph and the UI, exactly as a lab's observer serves them. Flows arrive in time order with
// their recorded spacing divided by Speed. It serves until ctx ends.
func Replay(ctx context.Context, flows []*flow.Flow, opts ReplayOptions) error {
	if opts.Speed < 0 {
		return fmt.Errorf("--speed %v: use 1 for the recorded speed, more to go faster, 0 for everything at once", opts.Speed)
	}
	obs, err := observer.New(observer.Config{Capacity: max(len(flows), 1000)})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("replay listen %s: %w (choose another --listen)", opts.Listen, err)
	}
	srv := &http.Server{Handler: obs.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if opts.Ready != nil {
		opts.Ready("http://" + ln.Addr().String())
	}
	sorted := slices.Clone(flows)
	slices.SortStableFunc(sorted, func(a, b *flow.Flow) int { return a.Time.Compare(b.Time) })
	begin := time.Now()
	for _, f := range sorted {
		if opts.Speed > 0 && len(sorted) > 0 {
			due := begin.Add(time.Duration(float64(f.Time.Sub(sorted[0].Time)) / opts.Speed))
			select {
			case <-ctx.Done():
				return nil
			case err := <-errc:
				return fmt.Errorf("replay server: %w", err)
			case <-time.After(time.Until(due)):
			}
		}
		obs.Ingest(f)
	}
	if opts.Done != nil {
		opts.Done(len(sorted))
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("replay server: %w", err)
	}
}
