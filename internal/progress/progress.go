// Package progress prints named steps, with elapsed time, and a bar with ETA for steps of known size.
//
// Use:
//
//	p := progress.New(os.Stdout)        // TTY: live line redrawn in place; otherwise plain lines (CI logs)
//	s := p.Start("build kubernetes")    // "==> build kubernetes"
//	s.SetTotal(6); s.Add(1)             // optional: a bar with ETA (plain mode prints every 10%)
//	s.Logf("cache hit %s", key)         // optional: an indented note under the step
//	s.Done()                            // "  ok  build kubernetes (7m05s)"
//	return s.Fail(err)                  // "  FAIL build kubernetes (3s): <err>", returns err
//
// or, for a function: err := p.Run("step", func() error { ... }).
// A nil *Reporter (and the Step it returns) prints nothing, so libraries can take an optional Reporter.
// All methods are safe for concurrent use.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
)

// Reporter prints steps to one writer.
type Reporter struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	now func() time.Time
}

// New returns a Reporter on w; it redraws a live line only when w is a terminal.
func New(w io.Writer) *Reporter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	return &Reporter{w: w, tty: tty, now: time.Now}
}

// Step is one named unit of work started by Reporter.Start.
type Step struct {
	r       *Reporter
	name    string
	start   time.Time
	total   int64
	done    int64
	lastPct int64
	ended   bool
	stop    chan struct{}
}

// Start begins a step and prints its name.
func (r *Reporter) Start(name string) *Step {
	if r == nil {
		return nil
	}
	s := &Step{r: r, name: name, start: r.now(), lastPct: -1}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty {
		s.stop = make(chan struct{})
		r.drawLocked(s)
		go s.tick()
	} else {
		fmt.Fprintf(r.w, "==> %s\n", name)
	}
	return s
}

// Run runs fn as a step named name and reports its outcome.
func (r *Reporter) Run(name string, fn func() error) error {
	s := r.Start(name)
	if err := fn(); err != nil {
		return s.Fail(err)
	}
	s.Done()
	return nil
}

// SetTotal sets the amount of work (bytes, items) the step will do, turning on the bar and ETA.
func (s *Step) SetTotal(total int64) {
	if s == nil {
		return
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.total = total
	s.updateLocked()
}

// Add records n more units of work done.
func (s *Step) Add(n int64) {
	if s == nil {
		return
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.done += n
	s.updateLocked()
}

// Logf prints a note under the step.
func (s *Step) Logf(format string, args ...any) {
	if s == nil {
		return
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.tty {
		fmt.Fprint(s.r.w, "\r\033[K")
	}
	fmt.Fprintf(s.r.w, "    %s\n", fmt.Sprintf(format, args...))
	if s.r.tty && !s.ended {
		s.r.drawLocked(s)
	}
}

// Done ends the step successfully and prints its elapsed time.
func (s *Step) Done() {
	s.end("ok  ", nil)
}

// Fail ends the step with err (which it returns, for `return s.Fail(err)`).
func (s *Step) Fail(err error) error {
	s.end("FAIL", err)
	return err
}

func (s *Step) end(word string, err error) {
	if s == nil {
		return
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	if s.stop != nil {
		close(s.stop)
	}
	line := fmt.Sprintf("  %s %s (%s)", word, s.name, formatDuration(s.r.now().Sub(s.start)))
	if err != nil {
		line += ": " + err.Error()
	}
	if s.r.tty {
		fmt.Fprint(s.r.w, "\r\033[K")
	}
	fmt.Fprintln(s.r.w, line)
}

func (s *Step) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.r.mu.Lock()
			if !s.ended {
				s.r.drawLocked(s)
			}
			s.r.mu.Unlock()
		}
	}
}

func (s *Step) updateLocked() {
	if s.ended {
		return
	}
	if s.r.tty {
		s.r.drawLocked(s)
		return
	}
	if s.total <= 0 {
		return
	}
	pct := min(s.done*100/s.total, 100) / 10 * 10
	if pct > s.lastPct {
		s.lastPct = pct
		fmt.Fprintf(s.r.w, "    %s\n", s.barText(false))
	}
}

// drawLocked redraws the live line of s (TTY only).
func (r *Reporter) drawLocked(s *Step) {
	fmt.Fprintf(r.w, "\r\033[K... %s %s", s.name, s.barText(true))
}

// barText renders "[#####-----]  50% 3/6 ETA 12s" or the elapsed time when the total is unknown.
func (s *Step) barText(withBar bool) string {
	elapsed := s.r.now().Sub(s.start)
	if s.total <= 0 {
		return formatDuration(elapsed)
	}
	done := min(max(s.done, 0), s.total)
	var b strings.Builder
	if withBar {
		const width = 24
		filled := int(done * width / s.total)
		b.WriteString("[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "] ")
	}
	fmt.Fprintf(&b, "%3d%% %d/%d %s", done*100/s.total, done, s.total, formatDuration(elapsed))
	if eta, ok := ETA(elapsed, done, s.total); ok {
		fmt.Fprintf(&b, " ETA %s", formatDuration(eta))
	}
	return b.String()
}

// ETA estimates the time left from the rate so far; ok is false before any progress.
func ETA(elapsed time.Duration, done, total int64) (time.Duration, bool) {
	if done <= 0 || total <= 0 || done > total {
		return 0, false
	}
	return time.Duration(float64(elapsed) * float64(total-done) / float64(done)), true
}

func formatDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
