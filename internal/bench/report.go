package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Ratio is one derived comparison of a run.
type Ratio struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Goal is the target the project set for it ("" when none), Met whether the run reached it.
	Goal string `json:"goal,omitempty"`
	Met  *bool  `json:"met,omitempty"`
}

func point(pts []ServicePoint, dp string, n int) (ServicePoint, bool) {
	for _, p := range pts {
		if p.Datapath == dp && p.Services == n {
			return p, true
		}
	}
	return ServicePoint{}, false
}

func datapaths(pts []ServicePoint) []string {
	var out []string
	for _, p := range pts {
		if !slices.Contains(out, p.Datapath) {
			out = append(out, p.Datapath)
		}
	}
	return out
}

func counts(pts []ServicePoint) []int {
	var out []int
	for _, p := range pts {
		if !slices.Contains(out, p.Services) {
			out = append(out, p.Services)
		}
	}
	slices.Sort(out)
	return out
}

// ratios derives, per datapath, p99 at the largest count over p99 at the smallest (flatness), and per count
// each kube-proxy mode's p99 and connections/s against Starlab's.
func ratios(pts []ServicePoint) []Ratio {
	var out []Ratio
	ns := counts(pts)
	if len(ns) == 0 {
		return nil
	}
	lo, hi := ns[0], ns[len(ns)-1]
	for _, dp := range datapaths(pts) {
		a, ok1 := point(pts, dp, lo)
		b, ok2 := point(pts, dp, hi)
		if !ok1 || !ok2 || lo == hi || a.Latency.P99Us == 0 {
			continue
		}
		r := Ratio{Name: fmt.Sprintf("%s p99 connect, %d / %d services", dp, hi, lo), Value: b.Latency.P99Us / a.Latency.P99Us}
		if dp == Starlab && lo <= 10 && hi >= 10000 {
			r.Goal = "<= 1.1 (flat)"
			met := r.Value <= 1.1
			r.Met = &met
		}
		out = append(out, r)
	}
	for _, n := range ns {
		sl, ok := point(pts, Starlab, n)
		if !ok || sl.Latency.P99Us == 0 || sl.Throughput.PerSecond == 0 {
			continue
		}
		for _, dp := range []string{KubeProxyIPTables, KubeProxyNFTables} {
			kp, ok := point(pts, dp, n)
			if !ok {
				continue
			}
			r := Ratio{Name: fmt.Sprintf("%s / starlab p99 connect, %d services", dp, n), Value: kp.Latency.P99Us / sl.Latency.P99Us}
			if dp == KubeProxyIPTables && n == 10000 {
				r.Goal = ">= 2 (Starlab twice as fast)"
				met := r.Value >= 2
				r.Met = &met
			}
			out = append(out, r,
				Ratio{Name: fmt.Sprintf("starlab / %s connections/s, %d services", dp, n), Value: sl.Throughput.PerSecond / kp.Throughput.PerSecond})
		}
	}
	return out
}

// WriteTable prints the points and the ratios.
func WriteTable(w io.Writer, r *ServicesReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "datapath\tservices\tp50 µs\tp99 µs\tconn/s\tfailed\tfirst conn ms\tprogrammed s\tCPU s\tRSS MiB\tCPUs busy\t")
	for _, p := range r.Points {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%d\t%.0f\t%.1f\t%.2f\t%.0f\t%s\t\n", p.Datapath, p.Services, p.Latency.P50Us, p.Latency.P99Us,
			p.Throughput.PerSecond, p.Latency.Failures+p.Throughput.Failures, p.FirstConnectMs, p.ProgrammedSeconds, p.CPUSeconds, p.RSSMiB, p.Quiet)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, x := range r.Ratios {
		goal := ""
		if x.Goal != "" {
			goal = fmt.Sprintf("   goal %s: %s", x.Goal, map[bool]string{true: "met", false: "NOT met"}[*x.Met])
		}
		fmt.Fprintf(w, "%-60s %6.2f%s\n", x.Name, x.Value, goal)
	}
	fmt.Fprintf(w, "\nhost: %d CPUs, kernel %s, load average %s before, %s after\n", r.Host.CPUs, r.Host.Kernel, r.Host.LoadAvgBefore, r.Host.LoadAvgAfter)
	return nil
}

// Validate checks that a report's numbers are present and sane: every point measured, latencies above
// zero, every connection of the latency and throughput loads successful.
func Validate(r *ServicesReport, wantDatapaths []string) error {
	var errs []string
	for _, dp := range wantDatapaths {
		for _, n := range r.Options.Counts {
			p, ok := point(r.Points, dp, n)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s at %d services: not measured", dp, n))
				continue
			}
			for name, l := range map[string]struct{ ok, failed int64 }{"latency": {p.Latency.Successes, p.Latency.Failures}, "throughput": {p.Throughput.Successes, p.Throughput.Failures}} {
				if l.ok == 0 || l.failed != 0 {
					errs = append(errs, fmt.Sprintf("%s at %d services: %s load %d ok, %d failed", dp, n, name, l.ok, l.failed))
				}
			}
			if !(p.Latency.P50Us > 0 && p.Latency.P99Us >= p.Latency.P50Us && p.Throughput.PerSecond > 0 && p.FirstConnectMs > 0 && p.RSSMiB > 0) {
				errs = append(errs, fmt.Sprintf("%s at %d services: implausible numbers p50 %.1f µs, p99 %.1f µs, %.1f conn/s, first %.1f ms, RSS %.1f MiB",
					dp, n, p.Latency.P50Us, p.Latency.P99Us, p.Throughput.PerSecond, p.FirstConnectMs, p.RSSMiB))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("benchmark results not sane: %s", strings.Join(errs, "; "))
	}
	return nil
}

// chart geometry (SVG user units).
const (
	chartW, chartH                    = 720.0, 420.0
	padLeft, padRight, padTop, padBot = 70.0, 180.0, 40.0, 50.0
)

var lineColors = map[string]string{Starlab: "#1f77b4", KubeProxyIPTables: "#d62728", KubeProxyNFTables: "#ff7f0e"}

// WriteSVG draws p99 (solid) and p50 (dashed) connect latency against the number of Services (log
// scale), one colour per datapath.
func WriteSVG(w io.Writer, r *ServicesReport) error {
	ns := counts(r.Points)
	if len(ns) == 0 {
		return fmt.Errorf("no points to draw")
	}
	maxY := 0.0
	for _, p := range r.Points {
		maxY = math.Max(maxY, p.Latency.P99Us)
	}
	maxY = niceCeil(maxY)
	lx0, lx1 := math.Log10(float64(ns[0])), math.Log10(float64(ns[len(ns)-1]))
	if lx1 == lx0 {
		lx0, lx1 = lx0-0.5, lx1+0.5
	}
	plotW, plotH := chartW-padLeft-padRight, chartH-padTop-padBot
	x := func(n int) float64 { return padLeft + (math.Log10(float64(n))-lx0)/(lx1-lx0)*plotW }
	y := func(v float64) float64 { return padTop + plotH - v/maxY*plotH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15">Connect latency to a ClusterIP against the number of Services</text>`+"\n", padLeft)
	for i := 0; i <= 5; i++ {
		v := maxY * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%.0f</text>`+"\n",
			padLeft, y(v), padLeft+plotW, y(v), padLeft-6, y(v)+4, v)
	}
	for _, n := range ns {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n",
			x(n), padTop, x(n), padTop+plotH, x(n), padTop+plotH+16, n)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", padLeft, padTop, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">Services (log scale)</text>`+"\n", padLeft+plotW/2, chartH-12)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">connect latency, µs</text>`+"\n", padTop+plotH/2)
	for i, dp := range datapaths(r.Points) {
		color := lineColors[dp]
		if color == "" {
			color = "#555"
		}
		var p99, p50 []string
		for _, n := range ns {
			if p, ok := point(r.Points, dp, n); ok {
				p99 = append(p99, fmt.Sprintf("%.1f,%.1f", x(n), y(p.Latency.P99Us)))
				p50 = append(p50, fmt.Sprintf("%.1f,%.1f", x(n), y(p.Latency.P50Us)))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(n), y(p.Latency.P99Us), color)
			}
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(p99, " "), color)
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="5 4"/>`+"\n", strings.Join(p50, " "), color)
		ly := padTop + 10 + float64(i)*36
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			chartW-padRight+14, ly, chartW-padRight+40, ly, color, chartW-padRight+46, ly+4, html.EscapeString(dp))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#666" font-size="10">solid p99, dashed p50</text>`+"\n", chartW-padRight+46, ly+17)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#666" font-size="10">%d CPUs, load %s</text>`+"\n", chartW-padRight+14, chartH-padBot, r.Host.CPUs, html.EscapeString(r.Host.LoadAvgBefore))
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}
