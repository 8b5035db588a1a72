package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Load generation from inside a pod, for `starlab bench`: POST /load on the probe's HTTP port runs one
// bounded load and answers with its numbers. Kinds:
//
//   - connect: short-lived connections, closed loop: dial (the TCP handshake is the latency), write one
//     byte, read the echoed byte (the peer is an --echo port), close. Connections are spread over the
//     targets in turn.
//   - rr: one connection per worker, one byte written and read back per transaction (TCP_RR).
//   - stream: one connection per worker, 64 KiB writes for the whole duration while the echo is read and
//     counted (TCP_STREAM through an echo peer: the bytes cross the path both ways).
//   - first: one worker dials the first target every millisecond until a connection succeeds (and its
//     byte is echoed), then stops: FirstSuccessUnixNano is when (the benchmark's create -> first
//     connection, against the wall clock the labs' nodes share with the host).

// Load kinds.
const (
	LoadConnect = "connect"
	LoadRR      = "rr"
	LoadStream  = "stream"
	LoadFirst   = "first"
)

// MaxLoadDuration bounds one POST /load.
const MaxLoadDuration = 2 * time.Minute

// LoadRequest is the body of POST /load.
type LoadRequest struct {
	Kind        string   `json:"kind"`
	Targets     []string `json:"targets"`               // host:port, an echo port
	Duration    string   `json:"duration"`              // e.g. "5s", at most MaxLoadDuration
	Concurrency int      `json:"concurrency,omitempty"` // workers, default 1, at most 64
	Timeout     string   `json:"timeout,omitempty"`     // per dial and per transaction, default 1s
}

// LoadResult is what one load measured. Latencies are in microseconds: of the TCP handshake (connect)
// or of one transaction (rr).
type LoadResult struct {
	Kind       string   `json:"kind"`
	Attempts   int64    `json:"attempts"`
	Successes  int64    `json:"successes"`
	Failures   int64    `json:"failures"`
	Errors     []string `json:"errors,omitempty"` // the first few distinct errors
	DurationMs float64  `json:"durationMs"`
	PerSecond  float64  `json:"perSecond"` // successful connections (connect) or transactions (rr)
	P50Us      float64  `json:"p50Us"`
	P90Us      float64  `json:"p90Us"`
	P99Us      float64  `json:"p99Us"`
	MaxUs      float64  `json:"maxUs"`
	MeanUs     float64  `json:"meanUs"`
	// BitsPerSecond is the echoed payload read back per second (stream).
	BitsPerSecond float64 `json:"bitsPerSecond,omitempty"`
	// FirstSuccessUnixNano is when the first connection succeeded (first); 0 when none did.
	FirstSuccessUnixNano int64 `json:"firstSuccessUnixNano,omitempty"`
}

type loadSpec struct {
	end         time.Time // when the run ends (checked on the clock: a context's timer can fire late)
	kind        string
	targets     []string
	duration    time.Duration
	concurrency int
	timeout     time.Duration
}

func parseLoadRequest(req LoadRequest) (loadSpec, error) {
	s := loadSpec{kind: req.Kind, targets: req.Targets, concurrency: req.Concurrency, timeout: time.Second}
	if s.kind != LoadConnect && s.kind != LoadRR && s.kind != LoadStream && s.kind != LoadFirst {
		return s, fmt.Errorf("kind %q: want %s, %s, %s or %s", req.Kind, LoadConnect, LoadRR, LoadStream, LoadFirst)
	}
	if len(s.targets) == 0 {
		return s, fmt.Errorf("no targets: give host:port of an echo port")
	}
	for _, t := range s.targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return s, fmt.Errorf("target %q: want host:port", t)
		}
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d <= 0 || d > MaxLoadDuration {
		return s, fmt.Errorf("duration %q: want a duration up to %s such as 5s", req.Duration, MaxLoadDuration)
	}
	s.duration = d
	if s.concurrency == 0 {
		s.concurrency = 1
	}
	if s.concurrency < 1 || s.concurrency > 64 {
		return s, fmt.Errorf("concurrency %d: want 1..64", req.Concurrency)
	}
	if req.Timeout != "" {
		t, err := time.ParseDuration(req.Timeout)
		if err != nil || t <= 0 || t > time.Minute {
			return s, fmt.Errorf("timeout %q: want a duration up to 1m such as 1s", req.Timeout)
		}
		s.timeout = t
	}
	return s, nil
}

// over reports whether the run has ended: an error then is the run being cut, not a failure.
func (s loadSpec) over(ctx context.Context) bool {
	return ctx.Err() != nil || !time.Now().Before(s.end)
}

// loadWorker is what one worker recorded.
type loadWorker struct {
	lat       []time.Duration
	attempts  int64
	failures  int64
	bytesRead int64
	first     int64
	errs      []string
}

func (w *loadWorker) fail(err error) {
	w.failures++
	if len(w.errs) < 4 && !slices.Contains(w.errs, err.Error()) {
		w.errs = append(w.errs, err.Error())
	}
}

// RunLoad runs one load until its duration ends (or ctx does).
func RunLoad(ctx context.Context, req LoadRequest) (LoadResult, error) {
	s, err := parseLoadRequest(req)
	if err != nil {
		return LoadResult{}, err
	}
	start := time.Now()
	s.end = start.Add(s.duration)
	ctx, cancel := context.WithDeadline(ctx, s.end)
	defer cancel()
	workers := make([]*loadWorker, s.concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &loadWorker{}
		workers[i] = w
		target := i // each worker starts at another target
		wg.Go(func() {
			switch s.kind {
			case LoadConnect:
				runConnect(ctx, s, w, target)
			case LoadRR:
				runRR(ctx, s, w, s.targets[target%len(s.targets)])
			case LoadStream:
				runStream(ctx, s, w, s.targets[target%len(s.targets)])
			case LoadFirst:
				runFirst(ctx, s, w, s.targets[0])
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := summarize(s.kind, workers, elapsed)
	if s.kind == LoadFirst {
		r.FirstSuccessUnixNano = workers[0].first
	}
	return r, nil
}

func runFirst(ctx context.Context, s loadSpec, w *loadWorker, target string) {
	buf := make([]byte, 1)
	d := net.Dialer{Timeout: s.timeout}
	for !s.over(ctx) {
		w.attempts++
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", target)
		if err == nil {
			lat := time.Since(t0)
			err = exchangeByte(c, buf, s.timeout)
			_ = c.Close()
			if err == nil {
				w.first = time.Now().UnixNano()
				w.lat = append(w.lat, lat)
				return
			}
		}
		if !s.over(ctx) {
			w.failures++ // expected until the datapath has the Service: not listed as errors
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
}

func runConnect(ctx context.Context, s loadSpec, w *loadWorker, next int) {
	buf := make([]byte, 1)
	d := net.Dialer{Timeout: s.timeout}
	for !s.over(ctx) {
		target := s.targets[next%len(s.targets)]
		next++
		w.attempts++
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			if s.over(ctx) {
				w.attempts-- // cut by the end of the run, not a failure
				return
			}
			w.fail(err)
			continue
		}
		lat := time.Since(t0)
		err = exchangeByte(c, buf, s.timeout)
		_ = c.Close()
		if err != nil {
			if s.over(ctx) {
				w.attempts--
				return
			}
			w.fail(fmt.Errorf("%s: %w", target, err))
			continue
		}
		w.lat = append(w.lat, lat)
	}
}

// exchangeByte writes one byte and reads the echo.
func exchangeByte(c net.Conn, buf []byte, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	buf[0] = 'x'
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf)
	return err
}

func runRR(ctx context.Context, s loadSpec, w *loadWorker, target string) {
	d := net.Dialer{Timeout: s.timeout}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		w.attempts++
		w.fail(err)
		return
	}
	defer c.Close()
	buf := make([]byte, 1)
	for !s.over(ctx) {
		w.attempts++
		t0 := time.Now()
		if err := exchangeByte(c, buf, s.timeout); err != nil {
			if s.over(ctx) {
				w.attempts--
				return
			}
			w.fail(err)
			return // the connection is unusable
		}
		w.lat = append(w.lat, time.Since(t0))
	}
}

func runStream(ctx context.Context, s loadSpec, w *loadWorker, target string) {
	d := net.Dialer{Timeout: s.timeout}
	w.attempts++
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		w.fail(err)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	defer c.Close()
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	chunk := make([]byte, 64<<10)
	for !s.over(ctx) {
		if _, err := c.Write(chunk); err != nil {
			if !s.over(ctx) {
				w.fail(err)
			}
			break
		}
	}
	_ = c.SetDeadline(time.Now())
	w.bytesRead = <-done
	if w.failures == 0 {
		w.lat = append(w.lat, 0) // one successful stream
	}
}

func summarize(kind string, workers []*loadWorker, elapsed time.Duration) LoadResult {
	r := LoadResult{Kind: kind, DurationMs: float64(elapsed) / float64(time.Millisecond)}
	var all []time.Duration
	var bytes int64
	for _, w := range workers {
		r.Attempts += w.attempts
		r.Failures += w.failures
		bytes += w.bytesRead
		all = append(all, w.lat...)
		for _, e := range w.errs {
			if len(r.Errors) < 8 && !slices.Contains(r.Errors, e) {
				r.Errors = append(r.Errors, e)
			}
		}
	}
	r.Successes = int64(len(all))
	secs := elapsed.Seconds()
	if kind == LoadStream || kind == LoadFirst {
		r.BitsPerSecond = float64(bytes) * 8 / secs
		return r
	}
	if len(all) == 0 {
		return r
	}
	r.PerSecond = float64(len(all)) / secs
	slices.Sort(all)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	pct := func(p float64) float64 { return us(all[min(len(all)-1, int(p*float64(len(all))))]) }
	r.P50Us, r.P90Us, r.P99Us, r.MaxUs = pct(0.50), pct(0.90), pct(0.99), us(all[len(all)-1])
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	r.MeanUs = us(sum) / float64(len(all))
	return r
}

func handleLoad(w http.ResponseWriter, r *http.Request) {
	var req LoadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("decode load request: %v", err)})
		return
	}
	res, err := RunLoad(r.Context(), req)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}
