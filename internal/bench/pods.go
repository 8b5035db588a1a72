package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/kubeready"
)

// PodsOptions configure RunPods.
type PodsOptions struct {
	// Policies are the numbers of NetworkPolicies selecting the server pod, measured in order on Starlab
	// (the reference lab enforces none and is measured with none).
	Policies []int
	Duration time.Duration
	Workers  int
	Timeout  time.Duration
	// Quiet is the wait for a quiet machine before each measurement.
	Quiet QuietOptions
	Log   *slog.Logger
}

// PodPoint is one datapath with one number of policies.
type PodPoint struct {
	Datapath string          `json:"datapath"`
	Policies int             `json:"policies"`
	Quiet    Quiet           `json:"quiet"`
	RR       demo.LoadResult `json:"rr"`
	Stream   demo.LoadResult `json:"stream"`
}

// PodsReport is the result of RunPods.
type PodsReport struct {
	Started  time.Time  `json:"started"`
	Finished time.Time  `json:"finished"`
	Host     Host       `json:"host"`
	Points   []PodPoint `json:"points"`
}

// peerPod is the server of the pod-to-pod benchmark, on another node than the client.
const peerPod = "bench-peer"

// RunPods measures pod-to-pod TCP_RR and TCP_STREAM from the client pod to a server pod on another node,
// on every datapath (kube-proxy modes are one lab: the first is measured, the pod path has no Service).
func RunPods(ctx context.Context, dps []Datapath, o PodsOptions) (*PodsReport, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &PodsReport{Started: time.Now().UTC(), Host: hostInfo()}
	seen := map[string]bool{}
	for _, dp := range dps {
		if seen[dp.Lab.Name()] {
			continue
		}
		seen[dp.Lab.Name()] = true
		name := dp.Name
		if dp.Name != Starlab {
			name = "reference" // routed pods; kube-proxy plays no part pod to pod
		}
		pts, err := runPodsOn(ctx, dp, name, o)
		r.Points = append(r.Points, pts...)
		if err != nil {
			return r, fmt.Errorf("%s (lab %q): %w", name, dp.Lab.Name(), err)
		}
	}
	r.Host.LoadAvgAfter = loadAvg()
	r.Finished = time.Now().UTC()
	return r, nil
}

func runPodsOn(ctx context.Context, dp Datapath, name string, o PodsOptions) ([]PodPoint, error) {
	s, closeSession, err := openSession(ctx, dp, ServicesOptions{Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer closeSession()
	if dp.Prepare != nil {
		if err := dp.Prepare(ctx); err != nil {
			return nil, err
		}
	}
	ip, err := s.peer(ctx, dp.DemoImage, o.Timeout)
	if err != nil {
		return nil, err
	}
	tgt := []string{net.JoinHostPort(ip, strconv.Itoa(echoPort))}
	counts := o.Policies
	if dp.Name != Starlab {
		counts = []int{0}
	}
	var pts []PodPoint
	for _, n := range counts {
		if err := s.ensurePolicies(ctx, n, o.Workers, dp.Name == Starlab, o.Timeout); err != nil {
			return pts, err
		}
		p := PodPoint{Datapath: name, Policies: n}
		if p.Quiet, err = waitQuiet(ctx, o.Quiet); err != nil {
			return pts, err
		}
		d := o.Duration.String()
		if p.RR, err = s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadRR, Targets: tgt, Duration: d}); err != nil {
			return pts, err
		}
		if p.Stream, err = s.client.run(ctx, demo.LoadRequest{Kind: demo.LoadStream, Targets: tgt, Duration: d}); err != nil {
			return pts, err
		}
		o.Log.Info("bench pods", "datapath", name, "policies", n, "rr/s", int(p.RR.PerSecond), "rr p99us", p.RR.P99Us, "stream Mbit/s", int(p.Stream.BitsPerSecond/1e6))
		pts = append(pts, p)
	}
	if err := s.ensurePolicies(ctx, 0, o.Workers, false, o.Timeout); err != nil {
		return pts, err
	}
	return pts, nil
}

// peer creates the server pod on a node other than the client's and returns its IP.
func (s *session) peer(ctx context.Context, image string, timeout time.Duration) (string, error) {
	client, err := s.cs.CoreV1().Pods(Namespace).Get(ctx, s.wl.clientPod, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get pod %s/%s: %w", Namespace, s.wl.clientPod, err)
	}
	other := ""
	for _, n := range s.nodes {
		if n.String() != client.Spec.NodeName {
			other = n.String()
		}
	}
	if other == "" {
		return "", fmt.Errorf("lab has one node: pod-to-pod across nodes needs --workers 1 or more")
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: peerPod, Namespace: Namespace, Labels: map[string]string{"app": peerPod}},
		Spec: corev1.PodSpec{NodeName: other, Containers: []corev1.Container{probeContainer(image)},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, TerminationGracePeriodSeconds: new(int64),
			EnableServiceLinks: new(false)},
	}
	if old, err := s.cs.CoreV1().Pods(Namespace).Get(ctx, peerPod, metav1.GetOptions{}); err == nil && (!sameProbe(old, p) || old.Spec.NodeName != other) {
		if err := deletePodAndWait(ctx, s.cs, peerPod, timeout); err != nil {
			return "", err
		}
	}
	if _, err := s.cs.CoreV1().Pods(Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create pod %s/%s: %w", Namespace, peerPod, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got, err := s.cs.CoreV1().Pods(Namespace).Get(ctx, peerPod, metav1.GetOptions{})
		if err == nil && kubeready.Pod(got) {
			return got.Status.PodIP, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return "", fmt.Errorf("pod %s/%s not Ready after %s", Namespace, peerPod, timeout)
}

// ensurePolicies makes exactly n NetworkPolicies select the server pod, each allowing TCP to the echo port
// from the client pod (and from one label of its own, so no two compile to the same rule), and with wait
// waits until every Starlab agent has programmed them.
func (s *session) ensurePolicies(ctx context.Context, n, workers int, wait bool, timeout time.Duration) error {
	list, err := s.cs.NetworkingV1().NetworkPolicies(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
	if err != nil {
		return fmt.Errorf("list network policies in %s: %w", Namespace, err)
	}
	for _, p := range list.Items {
		if rest, ok := strings.CutPrefix(p.Name, "bench-np-"); ok {
			if i, err := strconv.Atoi(rest); err == nil && i < n {
				continue
			}
		}
		if err := s.cs.NetworkingV1().NetworkPolicies(Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete network policy %s/%s: %w", Namespace, p.Name, err)
		}
	}
	var mu sync.Mutex
	var rv int64
	var firstErr error
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				got, err := s.cs.NetworkingV1().NetworkPolicies(Namespace).Apply(ctx, policy(i), metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("apply network policy %s/bench-np-%d: %w", Namespace, i, err)
				}
				if err == nil {
					if v, err := strconv.ParseInt(got.ResourceVersion, 10, 64); err == nil && v > rv {
						rv = v
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil || !wait || rv == 0 {
		return firstErr
	}
	_, err = conformance.WaitProgrammed(ctx, s.cs, rv, timeout)
	return err
}

func policy(i int) *networkingv1ac.NetworkPolicyApplyConfiguration {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(echoPort)
	return networkingv1ac.NetworkPolicy("bench-np-"+strconv.Itoa(i), Namespace).WithLabels(map[string]string{"app": "bench"}).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"app": peerPod})).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"app": "bench-client"})),
					networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{"bench-src": "s" + strconv.Itoa(i)}))).
				WithPorts(networkingv1ac.NetworkPolicyPort().WithProtocol(tcp).WithPort(port))))
}

// WritePodsTable prints the pod-to-pod points.
func WritePodsTable(w io.Writer, r *PodsReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "datapath\tpolicies\tTCP_RR/s\tRR p50 µs\tRR p99 µs\tSTREAM Mbit/s\tfailed\tCPUs busy\t")
	for _, p := range r.Points {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%s\t\n", p.Datapath, p.Policies, p.RR.PerSecond, p.RR.P50Us, p.RR.P99Us,
			p.Stream.BitsPerSecond/1e6, p.RR.Failures+p.Stream.Failures, p.Quiet)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhost: %d CPUs, kernel %s, load average %s before, %s after\n", r.Host.CPUs, r.Host.Kernel, r.Host.LoadAvgBefore, r.Host.LoadAvgAfter)
	return nil
}
