package flow

import (
	"context"
	"reflect"
	"time"
)

// MergeOptions configure MergeStreams.
type MergeOptions struct {
	// Window is the reorder window of live streams. 0: a strict k-way merge that emits the oldest head
	// only once every open stream has a head (right for finite streams such as replies to `last`).
	Window time.Duration
	// OnLate, when set, is called (on the merging goroutine, before the flow is sent) for every flow
	// emitted after a newer one: it came later than the window allows. behind is how far its time lies
	// before the newest time already emitted. Late flows are still emitted, never dropped.
	OnLate func(f *Flow, behind time.Duration)
}

// Merge merges flow streams, each already in time order, into one time-ordered stream. With window 0
// it is a strict k-way merge (see MergeOptions.Window). With window > 0 (live follow streams) a quiet
// stream does not stall the others: the oldest head is emitted once every open stream has a head, or
// once its timestamp is older than window (or it has waited window since it arrived, for clocks
// ahead of ours). Before deciding, every flow a stream has already queued is looked at, so flows that
// reach the merge within window of their time come out in time order; a later one is emitted at once
// (late). Each stream holds at most one pending flow, so a slow consumer pushes back on the producers.
// The output closes when every input has closed or ctx ends.
func Merge(ctx context.Context, window time.Duration, streams ...<-chan *Flow) <-chan *Flow {
	return MergeStreams(ctx, MergeOptions{Window: window}, nil, streams...)
}

// MergeDynamic is Merge over a set of streams that grows: each stream received from add joins the
// merge. The output closes when add (nil: no additions) and every stream have closed, or ctx ends.
func MergeDynamic(ctx context.Context, window time.Duration, add <-chan (<-chan *Flow), streams ...<-chan *Flow) <-chan *Flow {
	return MergeStreams(ctx, MergeOptions{Window: window}, add, streams...)
}

// MergeStreams is MergeDynamic with options (late-flow accounting).
func MergeStreams(ctx context.Context, opts MergeOptions, add <-chan (<-chan *Flow), streams ...<-chan *Flow) <-chan *Flow {
	out := make(chan *Flow, 64)
	m := &merger{window: opts.Window, onLate: opts.OnLate, add: add}
	for _, st := range streams {
		m.addStream(st)
	}
	go func() {
		defer close(out)
		m.run(ctx, out)
	}()
	return out
}

// merger is the state of one merge; only its goroutine touches it.
type merger struct {
	window  time.Duration
	onLate  func(*Flow, time.Duration)
	add     <-chan (<-chan *Flow)
	streams []<-chan *Flow
	heads   []*Flow
	arrived []time.Time
	open    []bool
	newest  time.Time // newest time emitted so far
}

func (m *merger) addStream(st <-chan *Flow) {
	m.streams = append(m.streams, st)
	m.heads = append(m.heads, nil)
	m.arrived = append(m.arrived, time.Time{})
	m.open = append(m.open, st != nil)
}

// take records v (received from stream i, ok false when it closed).
func (m *merger) take(i int, f *Flow, ok bool) {
	if !ok {
		m.open[i] = false
		return
	}
	if f != nil {
		m.heads[i], m.arrived[i] = f, time.Now()
	}
}

// pull fills, without blocking, the head of every open stream that lacks one and has a flow queued,
// and joins the streams waiting to be added: a flow already at the merge must compete before an older
// head is declared safe to emit.
func (m *merger) pull() {
	for m.add != nil {
		select {
		case st, ok := <-m.add:
			if !ok {
				m.add = nil
				continue
			}
			m.addStream(st)
			continue
		default:
		}
		break
	}
	for i := range m.streams {
		for m.open[i] && m.heads[i] == nil {
			select {
			case f, ok := <-m.streams[i]:
				m.take(i, f, ok) // a nil flow is skipped: try again
				continue
			default:
			}
			break
		}
	}
}

// release returns when the oldest head may be emitted although a stream has no head (zero: wait for
// the streams).
func (m *merger) release(i int) time.Time {
	if m.window <= 0 {
		return time.Time{}
	}
	t := m.heads[i].Time
	if m.arrived[i].Before(t) {
		t = m.arrived[i]
	}
	return t.Add(m.window)
}

func (m *merger) run(ctx context.Context, out chan<- *Flow) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Emit every head that is safe to emit.
		var wake time.Time
		for {
			m.pull()
			oldest, missing := -1, false
			for i := range m.streams {
				if m.heads[i] != nil {
					if oldest < 0 || m.heads[i].Time.Before(m.heads[oldest].Time) {
						oldest = i
					}
				} else if m.open[i] {
					missing = true
				}
			}
			if oldest < 0 {
				if !missing && m.add == nil {
					return // everything closed and drained
				}
				break
			}
			if missing {
				r := m.release(oldest)
				if r.IsZero() {
					break
				}
				if time.Now().Before(r) {
					wake = r
					break
				}
			}
			f := m.heads[oldest]
			if f.Time.Before(m.newest) {
				if m.onLate != nil {
					m.onLate(f, m.newest.Sub(f.Time))
				}
			} else {
				m.newest = f.Time
			}
			select {
			case out <- f:
			case <-ctx.Done():
				return
			}
			m.heads[oldest] = nil
		}
		// Wait for a head from a stream that lacks one, a new stream, or the oldest head's release.
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
		idx := []int{-1}
		if m.add != nil {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(m.add)})
			idx = append(idx, -3)
		}
		for i := range m.streams {
			if m.heads[i] == nil && m.open[i] {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(m.streams[i])})
				idx = append(idx, i)
			}
		}
		if !wake.IsZero() {
			d := max(time.Until(wake), time.Millisecond)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
			idx = append(idx, -2)
		}
		chosen, v, ok := reflect.Select(cases)
		switch i := idx[chosen]; i {
		case -1:
			return
		case -2:
			// the oldest head's release time: loop and re-check
		case -3:
			if !ok {
				m.add = nil
				continue
			}
			st, _ := v.Interface().(<-chan *Flow)
			m.addStream(st)
		default:
			f, _ := v.Interface().(*Flow)
			m.take(i, f, ok)
		}
	}
}
