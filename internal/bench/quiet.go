package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Quiet is what waitQuiet saw before a measurement: the labs' nodes share this machine's kernel and
// CPUs, so the control planes' work after a burst of Service creations (the API server, etcd, the
// controllers, kube-proxy's resyncs) lands on the same CPUs as the handshakes measured.
type Quiet struct {
	// WaitSeconds is how long the wait took; Busy the share of all CPUs busy over its last window
	// (0..1). Reached is false when the machine did not get quiet within the wait's limit: the
	// measurement ran anyway, under that load.
	WaitSeconds float64 `json:"waitSeconds"`
	Busy        float64 `json:"busy"`
	Reached     bool    `json:"reached"`
}

// String is the busy share for the tables, marked when the machine never got quiet.
func (q Quiet) String() string {
	if !q.Reached {
		return fmt.Sprintf("%.0f%% (not quiet)", 100*q.Busy)
	}
	return fmt.Sprintf("%.0f%%", 100*q.Busy)
}

// QuietOptions bound waitQuiet.
type QuietOptions struct {
	// MaxBusy is the share of all CPUs (0..1) under which a window counts as quiet; Windows how many
	// consecutive one-second windows must be quiet; Timeout how long to wait at most. Timeout 0
	// disables the wait.
	MaxBusy float64
	Windows int
	Timeout time.Duration
}

// FullQuietOptions is the wait of a full run: 3 one-second windows at most 25 % busy, at most 2 minutes.
func FullQuietOptions() QuietOptions {
	return QuietOptions{MaxBusy: 0.25, Windows: 3, Timeout: 2 * time.Minute}
}

// cpuTimes are the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, total uint64 }

// parseCPUTimes reads the aggregate cpu line of /proc/stat: idle and iowait are idle, the rest busy
// (guest time is already in user).
func parseCPUTimes(stat string) (cpuTimes, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: first line %q is not the aggregate cpu line", line)
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: cpu field %d %q: %w", i+1, s, err)
		}
		t.total += v
		if i != 3 && i != 4 {
			t.busy += v
		}
	}
	return t, nil
}

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read CPU times: %w", err)
	}
	return parseCPUTimes(string(b))
}

// busyBetween is the share of CPU time busy from a to b.
func busyBetween(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// waitQuiet waits until o.Windows consecutive one-second windows each had at most o.MaxBusy of the
// machine's CPUs busy, or o.Timeout passed.
func waitQuiet(ctx context.Context, o QuietOptions) (Quiet, error) {
	if o.Timeout <= 0 {
		return Quiet{Reached: true}, nil
	}
	start := time.Now()
	prev, err := readCPUTimes()
	if err != nil {
		return Quiet{}, err
	}
	var q Quiet
	for quiet := 0; quiet < max(o.Windows, 1); {
		select {
		case <-ctx.Done():
			return q, ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := readCPUTimes()
		if err != nil {
			return q, err
		}
		q.Busy = busyBetween(prev, cur)
		prev = cur
		quiet++
		if q.Busy > o.MaxBusy {
			quiet = 0
		}
		q.WaitSeconds = time.Since(start).Seconds()
		if quiet < max(o.Windows, 1) && time.Since(start) >= o.Timeout {
			return q, nil
		}
	}
	q.Reached = true
	return q, nil
}
