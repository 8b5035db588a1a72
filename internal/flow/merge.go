package flow

import (
	"context"
	"reflect"
	"slices"
	"time"
)

// Merge merges flow streams, each already in time order, into one time-ordered stream. With window 0
// it is a strict k-way merge: it emits the oldest head only once every open stream has a head (right
// for finite streams such as replies to `last`). With window > 0 (live follow streams) a quiet stream
// does not stall the others: a head is emitted once its timestamp is older than window, or it has
// waited window since it arrived, so disorder is bounded by window. Each stream holds at most one
// pending flow, so a slow consumer pushes back on the producers. The output closes when every input
// has closed or ctx ends.
func Merge(ctx context.Context, window time.Duration, streams ...<-chan *Flow) <-chan *Flow {
	return MergeDynamic(ctx, window, nil, streams...)
}

// MergeDynamic is Merge over a set of streams that grows: each stream received from add joins the
// merge. The output closes when add (nil: no additions) and every stream have closed, or ctx ends.
func MergeDynamic(ctx context.Context, window time.Duration, add <-chan (<-chan *Flow), streams ...<-chan *Flow) <-chan *Flow {
	out := make(chan *Flow, 64)
	go func() {
		defer close(out)
		streams := slices.Clone(streams)
		n := len(streams)
		heads := make([]*Flow, n)
		arrived := make([]time.Time, n)
		open := make([]bool, n)
		for i := range open {
			open[i] = streams[i] != nil
		}
		var timer *time.Timer
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		addStream := func(st <-chan *Flow) {
			streams = append(streams, st)
			heads = append(heads, nil)
			arrived = append(arrived, time.Time{})
			open = append(open, st != nil)
			n++
		}
		for {
			// Join the streams already waiting to be added before deciding what is oldest.
		drain:
			for add != nil {
				select {
				case st, ok := <-add:
					if !ok {
						add = nil
						break drain
					}
					addStream(st)
				default:
					break drain
				}
			}
			// Emit every head that is safe to emit.
			for {
				oldest, missing := -1, false
				for i := range n {
					if heads[i] != nil {
						if oldest < 0 || heads[i].Time.Before(heads[oldest].Time) {
							oldest = i
						}
					} else if open[i] {
						missing = true
					}
				}
				if oldest < 0 {
					if !missing && add == nil {
						return // everything closed and drained
					}
					break
				}
				if missing {
					if window <= 0 {
						break
					}
					now := time.Now()
					h := heads[oldest]
					if now.Sub(h.Time) < window && now.Sub(arrived[oldest]) < window {
						break
					}
				}
				select {
				case out <- heads[oldest]:
				case <-ctx.Done():
					return
				}
				heads[oldest] = nil
			}
			// Wait for a head from each open stream that lacks one, or for the window to pass.
			cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
			idx := []int{-1}
			if add != nil {
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(add)})
				idx = append(idx, -3)
			}
			haveHead := false
			for i := range n {
				if heads[i] != nil {
					haveHead = true
				} else if open[i] {
					cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(streams[i])})
					idx = append(idx, i)
				}
			}
			if window > 0 && haveHead {
				if timer == nil {
					timer = time.NewTimer(window / 4)
				} else {
					timer.Reset(window / 4)
				}
				cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
				idx = append(idx, -2)
			}
			chosen, v, ok := reflect.Select(cases)
			switch i := idx[chosen]; i {
			case -1:
				return
			case -2:
				// window tick: loop and re-check
			case -3:
				if !ok {
					add = nil
					continue
				}
				st, _ := v.Interface().(<-chan *Flow)
				addStream(st)
			default:
				if !ok {
					open[i] = false
					continue
				}
				f, _ := v.Interface().(*Flow)
				if f == nil {
					continue
				}
				heads[i], arrived[i] = f, time.Now()
			}
		}
	}()
	return out
}
