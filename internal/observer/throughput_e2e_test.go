//go:build e2e

package observer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/kubeready"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
)

// The load of BenchmarkFlowThroughput: its own namespace; pods on one node (ARCHITECTURE.md
// "Flow events": a new pod-to-pod flow on one node is two NEW events there, from-container and
// to-container), so per-node rates are exact.
const (
	loadNamespace = "flowload"
	loadSinkPort  = 9000
	loadSinkPorts = 64
	loadSockets   = 4096 // x 64 ports = 262,144 tuples (4 conntrack entries each): more than sl_ct keeps
)

// BenchmarkFlowThroughput measures the flow pipeline on a running lab (STARLAB_LAB), end to end: the
// demo image's load mode sends new UDP flows pod to pod on one node at 10k, 50k and 100k flow
// events/s (STARLAB_FLOWBENCH_RATES, comma-separated; each for STARLAB_FLOWBENCH_SECONDS, default 60)
// and a follow client in the lab (the load pod, wire form from the observer's /api/v1/flows) counts what
// arrives. Per rate it reports the events/s at each stage (datapath -> agent ring buffer read -> agent
// store -> observer -> follow client), the loss at each stage (agent flow_stages, observer
// lost_by_stage), and CPU and peak RSS of the node's agent and of the observer (their process
// metrics). The table goes to the log and to $STARLAB_REPORT_DIR/flow-throughput.md.
func BenchmarkFlowThroughput(b *testing.B) {
	name := os.Getenv("STARLAB_LAB")
	if name == "" {
		b.Fatal("STARLAB_LAB is not set: name a running lab (bin/starlab up --name X), e.g. make bench-lab STARLAB_LAB=X")
	}
	seconds := 60
	if s := os.Getenv("STARLAB_FLOWBENCH_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("STARLAB_FLOWBENCH_SECONDS=%q: want a positive number of seconds", s)
		}
		seconds = n
	}
	senders := 2 // sending goroutines in the generator pod: one CPU sends ~21k datagrams/s (42k events/s)
	if s := os.Getenv("STARLAB_FLOWBENCH_SENDERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > demo.MaxFlowLoadSenders {
			b.Fatalf("STARLAB_FLOWBENCH_SENDERS=%q: want 1-%d sending goroutines", s, demo.MaxFlowLoadSenders)
		}
		senders = n
	}
	// The load pods are BestEffort (cgroup v1 cpu.shares 2: the agent and observer under test get the
	// CPU they ask for first, the load what is left); STARLAB_FLOWBENCH_LOAD_CPU=500m makes them Burstable
	// with that CPU request for the generator and half of it for the sink.
	var loadCPU *resource.Quantity
	if s := os.Getenv("STARLAB_FLOWBENCH_LOAD_CPU"); s != "" {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			b.Fatalf("STARLAB_FLOWBENCH_LOAD_CPU=%q: want a CPU quantity such as 500m", s)
		}
		loadCPU = &q
	}
	rates := []int{10000, 50000, 100000}
	if s := os.Getenv("STARLAB_FLOWBENCH_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("STARLAB_FLOWBENCH_RATES=%q: want comma-separated events/s", s)
			}
			rates = append(rates, n)
		}
	}
	l, err := lab.Open(name)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(rates)*(seconds+60)+300)*time.Second)
	defer cancel()
	env := setupLoad(ctx, b, cfg, cs, loadCPU)
	env.senders = senders
	defer env.close()

	report := []string{
		fmt.Sprintf("lab %s, node %s, %d s per rate, load: %d sockets x %d ports (UDP, new flows) from %d sending goroutines, two NEW events per datagram on the node, load CPU request %s", name, env.node, seconds, loadSockets, loadSinkPorts, senders, loadCPUText(loadCPU)),
		"",
		"| target events/s | datapath events/s | agent read/s | agent stored/s | observer from node/s | client/s | lost ringbuf | lost agent queue | lost agent subscriber | lost observer subscriber | agent CPU | agent RSS | observer CPU | observer RSS |",
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
	}
	for _, rate := range rates {
		b.Run(fmt.Sprintf("%dk", rate/1000), func(b *testing.B) {
			row := env.run(ctx, b, rate, seconds)
			report = append(report, row)
		})
	}
	out := strings.Join(report, "\n") + "\n"
	b.Log("\n" + out)
	if dir := os.Getenv("STARLAB_REPORT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "flow-throughput.md"), []byte(out), 0o644)
		}
	}
}

func loadCPUText(q *resource.Quantity) string {
	if q == nil {
		return "none (BestEffort)"
	}
	return q.String() + " (sink half)"
}

type loadEnv struct {
	node     string
	sinkIP   string
	gen      *portforward.Forward // the generator pod's control port (also the follow client)
	agent    *portforward.Forward
	observer *observer.Forward
	obsURL   string // the observer's flow stream as the follow client in the lab dials it
	senders  int    // sending goroutines of the generator
	cs       kubernetes.Interface
}

func (e *loadEnv) close() {
	e.gen.Close()
	e.agent.Close()
	e.observer.Close()
}

// setupLoad creates the load namespace with a sink pod and a generator pod on the first worker node
// (the demo image of the stars pods), and port-forwards to the generator, that node's agent and the observer.
func setupLoad(ctx context.Context, b *testing.B, cfg *rest.Config, cs kubernetes.Interface, loadCPU *resource.Quantity) *loadEnv {
	b.Helper()
	stars, err := cs.CoreV1().Pods("stars").List(ctx, metav1.ListOptions{})
	if err != nil || len(stars.Items) == 0 {
		b.Fatalf("no stars pods to take the demo image from (starlab up deploys them): %v", err)
	}
	image := stars.Items[0].Spec.Containers[0].Image
	agents, err := cs.CoreV1().Pods("starlab-system").List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
	if err != nil {
		b.Fatal(err)
	}
	var node, agentPod string
	for _, p := range agents.Items {
		if strings.Contains(p.Spec.NodeName, "control-plane") || !kubeready.Pod(&p) {
			continue
		}
		node, agentPod = p.Spec.NodeName, p.Name
		break
	}
	if node == "" {
		b.Fatal("no ready agent on a worker node")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: loadNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), loadNamespace, metav1.DeleteOptions{})
	})
	// Pods are refused until the controller manager has made the namespace's default service account.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if _, err := cs.CoreV1().ServiceAccounts(loadNamespace).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("namespace %s has no default service account after 1 min", loadNamespace)
		}
	}
	pod := func(name string) *corev1.Pod {
		var res corev1.ResourceRequirements
		if loadCPU != nil {
			cpu := loadCPU.DeepCopy()
			if name == "sink" {
				cpu = *resource.NewMilliQuantity(cpu.MilliValue()/2, resource.DecimalSI)
			}
			res.Requests = corev1.ResourceList{corev1.ResourceCPU: cpu}
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: loadNamespace, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
				Name: "load", Image: image, ImagePullPolicy: corev1.PullNever,
				Args:      []string{"load", "--port", "8080", "--sink-port", strconv.Itoa(loadSinkPort), "--sink-ports", strconv.Itoa(loadSinkPorts)},
				Resources: res,
				// Running is not listening: the port-forward to the control port needs it open.
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}}},
		}
	}
	for _, n := range []string{"sink", "gen"} {
		if _, err := cs.CoreV1().Pods(loadNamespace).Create(ctx, pod(n), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			b.Fatal(err)
		}
	}
	var sinkIP, genPod string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods, err := cs.CoreV1().Pods(loadNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		ready := 0
		for _, p := range pods.Items {
			if kubeready.Pod(&p) {
				ready++
				if p.Name == "sink" {
					sinkIP = p.Status.PodIP
				} else {
					genPod = p.Name
				}
			}
		}
		if ready == 2 && sinkIP != "" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("load pods not ready (control port 8080 open) on %s after 2 min", node)
		}
		time.Sleep(time.Second)
	}
	svc, err := cs.CoreV1().Services("starlab-system").Get(ctx, "starlab-observer", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	env := &loadEnv{node: node, sinkIP: sinkIP, cs: cs,
		obsURL: fmt.Sprintf("http://%s:%d/api/v1/flows?follow=true&no-history=true", svc.Spec.ClusterIP, observer.Port)}
	if env.gen, err = portforward.Open(ctx, cfg, loadNamespace, genPod, 8080, 0); err != nil {
		b.Fatal(err)
	}
	if env.agent, err = portforward.Open(ctx, cfg, "starlab-system", agentPod, agentapi.Port, 0); err != nil {
		b.Fatal(err)
	}
	if env.observer, err = observer.PortForward(ctx, cfg, "starlab-system", 0); err != nil {
		b.Fatal(err)
	}
	return env
}

// sample is every counter of one instant.
type sample struct {
	at          time.Time
	stages      agentapi.FlowStages
	fromNode    uint64 // flows the observer received from the node
	lostObs     uint64 // observer subscriber losses
	client      uint64 // flows the follow client decoded
	agentCPU    float64
	agentRSS    float64
	observerCPU float64
	observerRSS float64
}

func (e *loadEnv) sample(ctx context.Context, b *testing.B) sample {
	b.Helper()
	s := sample{at: time.Now()}
	ac := agentapi.NewClient(strings.TrimPrefix(e.agent.URL(), "http://"), nil)
	st, err := ac.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	s.stages = st.FlowStages
	am, err := ac.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	s.agentCPU, s.agentRSS = metric(am, "process_cpu_seconds_total"), metric(am, "process_resident_memory_bytes")
	oc := &observer.Client{Base: e.observer.URL()}
	ost, err := oc.Status(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range ost.Nodes {
		if n.Name == e.node {
			s.fromNode = n.Flows
		}
	}
	s.lostObs = ost.LostByStage[observer.StageObserverSubscriber]
	om, err := oc.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	s.observerCPU, s.observerRSS = metric(om, "process_cpu_seconds_total"), metric(om, "process_resident_memory_bytes")
	var fs demo.FollowStats
	if err := e.call(ctx, http.MethodGet, "/follow", nil, &fs); err != nil {
		b.Fatal(err)
	}
	if fs.Error != "" {
		b.Fatalf("follow client: %s", fs.Error)
	}
	s.client = fs.Flows
	return s
}

// metric reads an unlabelled sample from Prometheus text.
func metric(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

func (e *loadEnv) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		bs, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(bs)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.gen.URL()+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	bs, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bs)
	}
	if out != nil {
		return json.Unmarshal(bs, out)
	}
	return nil
}

// run sends rate events/s (rate/2 datagrams/s) for seconds and returns the report row.
func (e *loadEnv) run(ctx context.Context, b *testing.B, rate, seconds int) string {
	if err := e.call(ctx, http.MethodPost, "/follow", demo.FollowRequest{URL: e.obsURL}, nil); err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the follower subscribed
	before := e.sample(ctx, b)
	var res demo.FlowLoadResult
	req := demo.FlowLoadRequest{Target: e.sinkIP, Port: loadSinkPort, Ports: loadSinkPorts, Sockets: loadSockets,
		Rate: rate / 2, Duration: fmt.Sprintf("%ds", seconds), Senders: e.senders}
	peak := before
	done := make(chan error, 1)
	go func() { done <- e.call(ctx, http.MethodPost, "/flowload", req, &res) }()
	tick := time.NewTicker(5 * time.Second)
	var loadErr error
wait:
	for {
		select {
		case loadErr = <-done:
			break wait
		case <-tick.C:
			s := e.sample(ctx, b)
			peak.agentRSS, peak.observerRSS = max(peak.agentRSS, s.agentRSS), max(peak.observerRSS, s.observerRSS)
		}
	}
	tick.Stop()
	if loadErr != nil {
		b.Fatal(loadErr)
	}
	// Let the stages drain: the counters stop moving (the lab's own flows go on at a few per second).
	prev := e.sample(ctx, b)
	for range 30 {
		time.Sleep(2 * time.Second)
		s := e.sample(ctx, b)
		if s.client-prev.client < 1000 && s.fromNode-prev.fromNode < 1000 && s.stages.Stored-prev.stages.Stored < 1000 {
			break
		}
		prev = s
	}
	var after sample
	time.Sleep(3 * time.Second)
	after = e.sample(ctx, b)
	_ = e.call(ctx, http.MethodDelete, "/follow", nil, nil)
	wall := res.Seconds
	per := func(d uint64) float64 { return float64(d) / wall }
	produced := (after.stages.RingbufRead + after.stages.RingbufLost) - (before.stages.RingbufRead + before.stages.RingbufLost)
	lostRB := after.stages.RingbufLost - before.stages.RingbufLost
	lostQ := after.stages.QueueLost - before.stages.QueueLost
	lostSub := after.stages.SubscriberLost - before.stages.SubscriberLost
	lostObs := after.lostObs - before.lostObs
	window := after.at.Sub(before.at).Seconds()
	agentCPU := (after.agentCPU - before.agentCPU) / window
	obsCPU := (after.observerCPU - before.observerCPU) / window
	b.ReportMetric(per(produced), "datapath-events/s")
	b.ReportMetric(per(after.client-before.client), "client-flows/s")
	b.ReportMetric(float64(lostRB+lostQ+lostSub+lostObs), "lost")
	b.ReportMetric(agentCPU, "agent-cores")
	b.ReportMetric(obsCPU, "observer-cores")
	return fmt.Sprintf("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %d | %.2f cores | %.0f MiB | %.2f cores | %.0f MiB |",
		rate, per(produced), per(after.stages.RingbufRead-before.stages.RingbufRead), per(after.stages.Stored-before.stages.Stored),
		per(after.fromNode-before.fromNode), per(after.client-before.client), lostRB, lostQ, lostSub, lostObs,
		agentCPU, max(peak.agentRSS, after.agentRSS)/(1<<20), obsCPU, max(peak.observerRSS, after.observerRSS)/(1<<20))
}
