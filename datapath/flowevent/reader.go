package flowevent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// ReadDeadline is how long one blocking read waits before re-checking the
// context; the datapath batches wakeups, so this bounds event latency.
const ReadDeadline = 50 * time.Millisecond

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// Counters is sl_counters, to report ring-buffer reserve failures
	// (events the datapath could not emit). Optional.
	Counters *ebpf.Map
}

// Stats of a Reader.
type Stats struct {
	// Read is the number of events delivered.
	Read uint64
	// Malformed records could not be decoded (lost).
	Malformed uint64
	// ReserveFailed is the datapath's count of events lost because the
	// ring buffer was full (from sl_counters; 0 without Counters).
	ReserveFailed uint64
}

// Reader reads flow events from the sl_events ring buffer.
type Reader struct {
	rd        *ringbuf.Reader
	counters  *ebpf.Map
	read      atomic.Uint64
	malformed atomic.Uint64
}

// NewReader opens a reader on the sl_events ring buffer map.
func NewReader(events *ebpf.Map, opts ReaderOptions) (*Reader, error) {
	if events == nil {
		return nil, errors.New("flow event reader: nil events map (pass dp.Maps.Events)")
	}
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer %s: %w", events, err)
	}
	return &Reader{rd: rd, counters: opts.Counters}, nil
}

// Run delivers decoded events to fn until ctx is done (returns nil) or the
// reader fails. fn runs on the reading goroutine and must not keep e.
func (r *Reader) Run(ctx context.Context, fn func(e *Event)) error {
	var rec ringbuf.Record
	var ev Event
	for {
		if ctx.Err() != nil {
			return nil
		}
		r.rd.SetDeadline(time.Now().Add(ReadDeadline))
		if err := r.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read flow events: %w", err)
		}
		if err := Decode(rec.RawSample, &ev); err != nil {
			r.malformed.Add(1)
			continue
		}
		r.read.Add(1)
		fn(&ev)
	}
}

// Stats returns the reader's counters.
func (r *Reader) Stats() Stats {
	s := Stats{Read: r.read.Load(), Malformed: r.malformed.Load()}
	if r.counters != nil {
		var per []uint64
		k := maps.CounterRBFail
		if err := r.counters.Lookup(&k, &per); err == nil {
			for _, v := range per {
				s.ReserveFailed += v
			}
		}
	}
	return s
}

// Close stops Run and releases the ring buffer.
func (r *Reader) Close() error {
	if err := r.rd.Close(); err != nil {
		return fmt.Errorf("close flow event reader: %w", err)
	}
	return nil
}
