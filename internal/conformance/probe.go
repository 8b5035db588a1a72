package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// Prober makes connections from inside one pod (ns/pod) at once and returns one result per target.
type Prober interface {
	Batch(ctx context.Context, from string, targets []demo.BatchTarget, timeout time.Duration) ([]demo.ProbeResult, error)
}

// Forwarder opens a local URL for a pod's control port (a port-forward in a real run).
type Forwarder func(ctx context.Context, namespace, pod string, port int) (base string, closeFn func(), err error)

// DemoProber sends POST /probe/batch to each pod's demo probe through a port-forward opened once
// per pod and kept for the run.
type DemoProber struct {
	// PortOf returns the demo HTTP port of pod ns/pod (nil: ControlPort, the suite's own pods).
	PortOf  func(ref string) int
	forward Forwarder
	client  *http.Client
	mu      sync.Mutex
	bases   map[string]string
	closers []func()
}

// NewDemoProber returns a prober over forward. Close it to stop the forwards.
func NewDemoProber(forward Forwarder) *DemoProber {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true // one stream per batch: idle port-forward streams end in resets that klog prints
	return &DemoProber{forward: forward, client: &http.Client{Transport: tr}, bases: map[string]string{}}
}

// Close stops every port-forward.
func (d *DemoProber) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.closers {
		c()
	}
	d.closers, d.bases = nil, map[string]string{}
}

func (d *DemoProber) base(ctx context.Context, ref string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b, ok := d.bases[ref]; ok {
		return b, nil
	}
	ns, pod, _ := strings.Cut(ref, "/")
	port := ControlPort
	if d.PortOf != nil {
		port = d.PortOf(ref)
	}
	b, closeFn, err := d.forward(ctx, ns, pod, port)
	if err != nil {
		return "", fmt.Errorf("port-forward to pod %s port %d: %w", ref, port, err)
	}
	d.bases[ref] = b
	d.closers = append(d.closers, closeFn)
	return b, nil
}

func (d *DemoProber) drop(ref string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.bases, ref)
}

// Batch implements Prober, retrying once over a fresh port-forward when the first one broke.
func (d *DemoProber) Batch(ctx context.Context, from string, targets []demo.BatchTarget, timeout time.Duration) ([]demo.ProbeResult, error) {
	body, err := json.Marshal(demo.BatchRequest{Timeout: timeout.String(), Probes: targets})
	if err != nil {
		return nil, fmt.Errorf("encode probe batch: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		base, err := d.base(ctx, from)
		if err != nil {
			return nil, err
		}
		res, err := d.post(ctx, base+"/probe/batch", body, timeout)
		if err == nil {
			if len(res) != len(targets) {
				return nil, fmt.Errorf("probe batch from %s: %d results for %d probes", from, len(res), len(targets))
			}
			return res, nil
		}
		lastErr = err
		d.drop(from)
	}
	return nil, fmt.Errorf("probe batch from pod %s: %w (is the demo image new enough to serve POST /probe/batch?)", from, lastErr)
}

func (d *DemoProber) post(ctx context.Context, url string, body []byte, timeout time.Duration) ([]demo.ProbeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("POST /probe/batch answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out demo.BatchResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode /probe/batch answer: %w", err)
	}
	// Read to the end (the trailing newline): closing with unread bytes resets the connection,
	// which the port-forward logs as an error.
	_, _ = io.Copy(io.Discard, resp.Body)
	return out.Results, nil
}

// MatrixProbes is every connection between distinct pods of u on every column, in every mode.
func MatrixProbes(u *Universe, modes []string) []Probe {
	var out []Probe
	for _, mode := range modes {
		for _, from := range u.Pods() {
			for _, to := range u.Pods() {
				if from == to {
					continue
				}
				for _, c := range Columns() {
					out = append(out, Probe{Mode: mode, From: from, To: to, Port: c.Port, Protocol: c.Protocol})
				}
			}
		}
	}
	return out
}

// dialAddr is the address a probe reaches in its mode (for service-name, the ClusterIP the name
// resolves to: flows carry that).
func dialAddr(u *Universe, p Probe) string {
	ip := u.IPs[p.To]
	if serviceMode(p.Mode) {
		ip = u.ServiceIPs[p.To]
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(p.Port)))
}

// dialName is the target a service-name probe dials: the Service's fully qualified name (with the
// root dot, so the resolver's search list is not tried first).
func dialName(p Probe) string {
	ns, name, _ := strings.Cut(p.To, "/")
	return net.JoinHostPort(ServiceName(name)+"."+ns+".svc."+ClusterDomain+".", strconv.Itoa(int(p.Port)))
}

// RunProbes makes every connection of want at once (one batch per source pod) toward the pod IPs of
// u, and fills the results in place. It returns how long the whole matrix took.
func RunProbes(ctx context.Context, p Prober, u *Universe, want []Probe, timeout time.Duration) (time.Duration, error) {
	for i := range want {
		want[i].Dst = dialAddr(u, want[i])
		if want[i].Mode == ModeServiceName {
			want[i].Target = dialName(want[i])
		}
		want[i].Backend = net.JoinHostPort(u.IPs[want[i].To].String(), strconv.Itoa(int(want[i].Port)))
		want[i].SrcIP = u.IPs[want[i].From].String()
	}
	return ProbeAll(ctx, p, want, timeout)
}

// ProbeAll makes every connection of want (Dst or Target, Protocol and SrcIP set) at once, one
// batch per source pod, and fills the results in place. It returns how long the slowest batch took.
func ProbeAll(ctx context.Context, p Prober, want []Probe, timeout time.Duration) (time.Duration, error) {
	bySrc := map[string][]int{}
	for i, pr := range want {
		bySrc[pr.From] = append(bySrc[pr.From], i)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(bySrc))
	for from, idx := range bySrc {
		targets := make([]demo.BatchTarget, len(idx))
		for k, i := range idx {
			target := want[i].Dst
			if want[i].Target != "" {
				target = want[i].Target
			}
			targets[k] = demo.BatchTarget{Target: target, Protocol: strings.ToLower(string(want[i].Protocol))}
		}
		wg.Go(func() {
			res, err := p.Batch(ctx, from, targets, timeout)
			if err != nil {
				errs <- err
				return
			}
			for k, i := range idx {
				fillProbe(&want[i], res[k])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

func fillProbe(p *Probe, r demo.ProbeResult) {
	p.Reachable, p.Error, p.ElapsedMs, p.LocalAddr = r.Reachable, r.Error, r.ElapsedMs, r.LocalAddr
}

// Reconfirm probes once more every connection whose answer differs from the oracle (a lost UDP
// datagram or slow first packet; a new socket that happened to reuse the source port of an
// earlier connection still in conntrack), keeping the second answer.
func Reconfirm(ctx context.Context, p Prober, probes []Probe, o *oracle.Oracle, timeout time.Duration) (int, error) {
	var idx []int
	for i, pr := range probes {
		v, err := expect(o, pr.Mode, pr.From, pr.To, oracle.PortProto{Port: pr.Port, Protocol: pr.Protocol})
		if err != nil {
			return 0, fmt.Errorf("reconfirm: %w", err)
		}
		if v.Allowed != pr.Reachable {
			idx = append(idx, i)
		}
	}
	return ReprobeAt(ctx, p, probes, idx, timeout)
}

// ReprobeAt makes the connections probes[idx] (already probed once, so Dst and SrcIP are set) once
// more and keeps the new answers (marked Reconfirmed). It returns how many it made.
func ReprobeAt(ctx context.Context, p Prober, probes []Probe, idx []int, timeout time.Duration) (int, error) {
	if len(idx) == 0 {
		return 0, nil
	}
	again := make([]Probe, len(idx))
	for k, i := range idx {
		pr := probes[i]
		again[k] = Probe{Mode: pr.Mode, From: pr.From, To: pr.To, Port: pr.Port, Protocol: pr.Protocol,
			Target: pr.Target, Dst: pr.Dst, Backend: pr.Backend, SrcIP: pr.SrcIP, backends: pr.backends}
	}
	if _, err := ProbeAll(ctx, p, again, timeout); err != nil {
		return 0, err
	}
	for k, i := range idx {
		again[k].Reconfirmed = true
		probes[i] = again[k]
	}
	return len(again), nil
}
