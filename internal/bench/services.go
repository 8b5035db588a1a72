// Package bench measures Service load balancing and pod-to-pod traffic on Starlab's eBPF datapath against
// upstream kube-proxy (internal/reflab), in the labs of this machine, with the same workload on each:
// `starlab bench services` and `starlab bench pods`.
//
// Every number comes from inside a pod: the client pod runs starlab-demo's POST /load (internal/demo),
// reached through a port-forward that only carries the request and the result. Services are selectorless
// ClusterIP Services with one EndpointSlice each (two server pods on the echo port), applied server-side in
// parallel; the datapaths see real Service and EndpointSlice objects, as from the EndpointSlice controller.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/lab"
)

// Datapath names.
const (
	Starlab           = "starlab"
	KubeProxyIPTables = "kube-proxy-iptables"
	KubeProxyNFTables = "kube-proxy-nftables"
)

// Datapath is one datapath to measure: a lab and the process doing its Service work.
type Datapath struct {
	Name string
	Lab  *lab.Lab
	// Process is the comm of the process whose CPU and memory are reported (starlab-agent, kube-proxy).
	Process string
	// DemoImage is the demo image reference loaded into the lab's nodes.
	DemoImage string
	// Prepare readies the datapath once the lab holds no benchmark Service (switching kube-proxy's mode);
	// nil when there is nothing to do.
	Prepare func(ctx context.Context) error
}

// ServicesOptions configure RunServices.
type ServicesOptions struct {
	// Counts are the numbers of Services measured, in increasing order.
	Counts []int
	// Duration of each latency and throughput load.
	Duration time.Duration
	// Samples is how many ClusterIPs (spread over all Services) each load connects to, in turn.
	Samples int
	// Concurrency of the throughput load (the latency load has one worker).
	Concurrency int
	// Workers apply Services in parallel.
	Workers int
	// ProgramTimeout bounds the wait for a count's Services to connect.
	ProgramTimeout time.Duration
	// Quiet is the wait for a quiet machine before each latency load.
	Quiet QuietOptions
	Log   *slog.Logger
}

// QuickServicesOptions and FullServicesOptions are `--quick` and the default.
func QuickServicesOptions(counts []int) ServicesOptions {
	return ServicesOptions{Counts: counts, Duration: 2 * time.Second, Samples: 16, Concurrency: 4, Workers: 16, ProgramTimeout: 5 * time.Minute,
		Quiet: QuietOptions{MaxBusy: 0.3, Windows: 2, Timeout: 10 * time.Second}}
}

// FullServicesOptions are the options of a full run.
func FullServicesOptions(counts []int) ServicesOptions {
	return ServicesOptions{Counts: counts, Duration: 10 * time.Second, Samples: 64, Concurrency: 4, Workers: 24, ProgramTimeout: 15 * time.Minute,
		Quiet: FullQuietOptions()}
}

// ServicePoint is one datapath at one number of Services.
type ServicePoint struct {
	Datapath string `json:"datapath"`
	Services int    `json:"services"`
	// CreateSeconds is how long applying the Services (and slices) up to this count took; ProgrammedSeconds
	// is from the start of that until every sampled ClusterIP connected.
	CreateSeconds     float64 `json:"createSeconds"`
	ProgrammedSeconds float64 `json:"programmedSeconds"`
	// FirstConnectMs is from applying one more Service (then its slice) to its first successful connection.
	FirstConnectMs float64 `json:"firstConnectMs"`
	// Quiet is the machine's state when the latency load started (after the wait for a quiet machine).
	Quiet Quiet `json:"quiet"`
	// Latency is the connect load with one worker; Throughput with Concurrency workers.
	Latency    demo.LoadResult `json:"latency"`
	Throughput demo.LoadResult `json:"throughput"`
	// Process, its CPU seconds (all nodes) spent from the start of creating this count's Services until
	// the end of its measurements, and its resident memory (all nodes) at the end.
	Process    string  `json:"process"`
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSMiB     float64 `json:"rssMiB"`
}

// Host describes the machine during the run.
type Host struct {
	CPUs          int    `json:"cpus"`
	Kernel        string `json:"kernel"`
	LoadAvgBefore string `json:"loadAvgBefore"`
	LoadAvgAfter  string `json:"loadAvgAfter"`
}

// ServicesReport is the result of RunServices.
type ServicesReport struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Host     Host           `json:"host"`
	Options  OptionsSummary `json:"options"`
	Points   []ServicePoint `json:"points"`
	Ratios   []Ratio        `json:"ratios"`
}

// OptionsSummary is what the run was asked for.
type OptionsSummary struct {
	Counts      []int   `json:"counts"`
	DurationSec float64 `json:"durationSeconds"`
	Samples     int     `json:"samples"`
	Concurrency int     `json:"concurrency"`
}

// RunServices measures every datapath at every count, one datapath after the other.
func RunServices(ctx context.Context, dps []Datapath, o ServicesOptions) (*ServicesReport, error) {
	if len(o.Counts) == 0 || !slices.IsSorted(o.Counts) || o.Counts[0] < 1 {
		return nil, fmt.Errorf("service counts %v: give increasing counts of at least 1, e.g. --counts 10,1000,10000", o.Counts)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &ServicesReport{Started: time.Now().UTC(), Host: hostInfo(),
		Options: OptionsSummary{Counts: o.Counts, DurationSec: o.Duration.Seconds(), Samples: o.Samples, Concurrency: o.Concurrency}}
	for _, dp := range dps {
		pts, err := runServicesOn(ctx, dp, o)
		r.Points = append(r.Points, pts...)
		if err != nil {
			return r, fmt.Errorf("%s (lab %q): %w", dp.Name, dp.Lab.Name(), err)
		}
	}
	r.Host.LoadAvgAfter = loadAvg()
	r.Finished = time.Now().UTC()
	r.Ratios = ratios(r.Points)
	return r, nil
}

// session is one datapath's lab, opened for a run.
type session struct {
	dp     Datapath
	cs     kubernetes.Interface
	nodes  []nodes.Node
	wl     *workload
	client *loadClient
}

func openSession(ctx context.Context, dp Datapath, o ServicesOptions) (*session, func(), error) {
	cfg, err := dp.Lab.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 4000 // bulk Service creation; the API server's own limits still apply
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("client for lab %q: %w", dp.Lab.Name(), err)
	}
	ns, err := dp.Lab.Nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	wl, err := setupWorkload(ctx, cs, dp.DemoImage, 3*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	if err := refuseUnprogrammed(ctx, ns, true); err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		if err := refuseUnprogrammed(context.WithoutCancel(ctx), ns, false); err != nil {
			o.Log.Warn("remove the service CIDR's unreachable route", "lab", dp.Lab.Name(), "err", err)
		}
	}
	client, err := openLoadClient(ctx, cfg, wl.clientPod)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	s := &session{dp: dp, cs: cs, nodes: ns, wl: wl, client: client}
	return s, func() { client.Close(); cleanup() }, nil
}

func runServicesOn(ctx context.Context, dp Datapath, o ServicesOptions) ([]ServicePoint, error) {
	s, closeSession, err := openSession(ctx, dp, o)
	if err != nil {
		return nil, err
	}
	defer closeSession()
	o.Log.Info("bench services: clearing earlier Services", "datapath", dp.Name)
	if err := s.wl.deleteServices(ctx, o.Workers); err != nil {
		return nil, err
	}
	if dp.Prepare != nil {
		if err := dp.Prepare(ctx); err != nil {
			return nil, err
		}
	}
	if err := s.waitGone(ctx, firstClusterIP, o.ProgramTimeout); err != nil {
		return nil, err
	}
	var have []string
	var pts []ServicePoint
	for _, n := range o.Counts {
		p, ips, err := s.measureCount(ctx, have, n, o)
		if err != nil {
			return pts, fmt.Errorf("%d services: %w", n, err)
		}
		have = ips
		pts = append(pts, p)
		o.Log.Info("bench services", "datapath", dp.Name, "services", n, "p50us", p.Latency.P50Us, "p99us", p.Latency.P99Us,
			"conn/s", int(p.Throughput.PerSecond), "firstConnectMs", p.FirstConnectMs)
	}
	return pts, nil
}

func (s *session) measureCount(ctx context.Context, have []string, n int, o ServicesOptions) (ServicePoint, []string, error) {
	p := ServicePoint{Datapath: s.dp.Name, Services: n, Process: s.dp.Process}
	before, err := readProcStat(ctx, s.nodes, s.dp.Process)
	if err != nil {
		return p, nil, err
	}
	start := time.Now()
	o.Log.Info("bench services: creating", "datapath", s.dp.Name, "from", len(have), "to", n)
	ips, err := s.wl.ensureServices(ctx, have, n, o.Workers)
	if err != nil {
		return p, nil, err
	}
	p.CreateSeconds = time.Since(start).Seconds()
	samples := spread(ips, o.Samples)
	if err := s.waitProgrammed(ctx, samples, o.ProgramTimeout); err != nil {
		return p, nil, err
	}
	p.ProgrammedSeconds = time.Since(start).Seconds()
	if p.FirstConnectMs, err = s.firstConnect(ctx, o.ProgramTimeout); err != nil {
		return p, nil, err
	}
	targets := make([]string, len(samples))
	for i, ip := range samples {
		targets[i] = target(ip)
	}
	if p.Quiet, err = waitQuiet(ctx, o.Quiet); err != nil {
		return p, nil, err
	}
	if !p.Quiet.Reached {
		o.Log.Warn("bench services: the machine did not get quiet, measuring anyway", "datapath", s.dp.Name, "services", n,
			"busy", fmt.Sprintf("%.0f%%", 100*p.Quiet.Busy), "waited", o.Quiet.Timeout)
	}
	d := o.Duration.String()
	if p.Latency, err = s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadConnect, Targets: targets, Duration: d, Concurrency: 1}); err != nil {
		return p, nil, err
	}
	if p.Throughput, err = s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadConnect, Targets: targets, Duration: d, Concurrency: o.Concurrency}); err != nil {
		return p, nil, err
	}
	after, err := readProcStat(ctx, s.nodes, s.dp.Process)
	if err != nil {
		return p, nil, err
	}
	p.CPUSeconds = after.CPUSeconds - before.CPUSeconds
	p.RSSMiB = float64(after.RSSBytes) / (1 << 20)
	return p, ips, nil
}

// spread picks k addresses spread evenly over ips, the last one included.
func spread(ips []string, k int) []string {
	if k >= len(ips) {
		return slices.Clone(ips)
	}
	out := make([]string, 0, k)
	for i := range k {
		out = append(out, ips[(i+1)*len(ips)/k-1])
	}
	return out
}

// waitProgrammed waits until a short load connects to every sampled ClusterIP without a failure.
func (s *session) waitProgrammed(ctx context.Context, samples []string, timeout time.Duration) error {
	targets := make([]string, len(samples))
	for i, ip := range samples {
		targets[i] = target(ip)
	}
	deadline := time.Now().Add(timeout)
	var last demo.LoadResult
	for time.Now().Before(deadline) {
		r, err := s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadConnect, Targets: targets, Duration: "1s", Concurrency: min(8, len(targets)), Timeout: "200ms"})
		if err != nil {
			return err
		}
		if r.Failures == 0 && r.Successes >= int64(len(targets)) {
			return nil
		}
		last = r
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("the sampled ClusterIPs did not all connect within %s (last try: %d ok, %d failed: %s)", timeout, last.Successes, last.Failures, strings.Join(last.Errors, "; "))
}

// firstConnect times one more Service from the apply to its first successful connection, then deletes it
// and waits until its ClusterIP no longer answers.
func (s *session) firstConnect(ctx context.Context, timeout time.Duration) (float64, error) {
	type result struct {
		r   demo.LoadResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadFirst, Targets: []string{target(firstClusterIP)}, Duration: min(timeout, demo.MaxLoadDuration).String(), Timeout: "100ms"})
		done <- result{r, err}
	}()
	time.Sleep(500 * time.Millisecond) // the load is dialing (and failing) before the Service exists
	start := time.Now()
	if _, err := s.wl.applyService(ctx, firstServiceName, firstClusterIP); err != nil {
		return 0, err
	}
	res := <-done
	if res.err != nil {
		return 0, res.err
	}
	if res.r.FirstSuccessUnixNano == 0 {
		return 0, fmt.Errorf("service %s (%s) never connected within %s", firstServiceName, firstClusterIP, timeout)
	}
	ms := float64(res.r.FirstSuccessUnixNano-start.UnixNano()) / 1e6
	if err := s.wl.deleteFirstService(ctx); err != nil {
		return 0, err
	}
	if err := s.waitGone(ctx, firstClusterIP, timeout); err != nil {
		return 0, err
	}
	return ms, nil
}

// waitGone waits until nothing answers at ip's Service port (a deleted Service left the datapath).
func (s *session) waitGone(ctx context.Context, ip string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r, err := s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadConnect, Targets: []string{target(ip)}, Duration: "300ms", Timeout: "100ms"})
		if err != nil {
			return err
		}
		if r.Successes == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s still answers %s after its Service was deleted", ip, timeout)
}

// refuseUnprogrammed adds (or removes) an unreachable route for the service CIDR in every node, so a SYN
// to a ClusterIP no datapath translated yet is refused at the node instead of leaving the lab. Both
// datapaths translate before the routing decision (BPF at the pod's veth, kube-proxy in PREROUTING), so
// translated traffic never meets the route.
func refuseUnprogrammed(ctx context.Context, ns []nodes.Node, add bool) error {
	args := []string{"route", "replace", "unreachable", lab.ServiceSubnet}
	if !add {
		args = []string{"route", "del", "unreachable", lab.ServiceSubnet}
	}
	for _, n := range ns {
		var stderr strings.Builder
		if err := n.CommandContext(ctx, "ip", args...).SetStderr(&stderr).Run(); err != nil {
			if !add && strings.Contains(stderr.String(), "No such process") {
				continue
			}
			return fmt.Errorf("node %s: ip %s: %w: %s", n.String(), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
	}
	return nil
}

func hostInfo() Host {
	h := Host{CPUs: numCPU(), LoadAvgBefore: loadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int { return runtime.NumCPU() }
