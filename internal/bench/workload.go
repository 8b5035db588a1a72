package bench

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryv1ac "k8s.io/client-go/applyconfigurations/discovery/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// Namespace holds everything the benchmark creates in a lab.
const Namespace = "starlab-bench"

// Ports of the benchmark pods (starlab-demo probe): the HTTP port serving POST /load, the echo port the
// Services point at.
const (
	httpPort    = 8080
	echoPort    = 9000
	servicePort = 80
)

const fieldManager = "starlab-bench"

// servicePrefix names the bulk Services: bench-svc-<i>.
const servicePrefix = "bench-svc-"

// firstServiceName is the Service created to time create -> first connection, with firstClusterIP: a
// static address in the low band of the service CIDR that dynamic allocation does not hand out.
const (
	firstServiceName = "bench-first"
	firstClusterIP   = "10.96.0.222"
)

// workload is the client pod and the server pods of one lab.
type workload struct {
	cs        kubernetes.Interface
	clientPod string
	serverIPs []string
}

// benchCPURequest is each benchmark pod's CPU request. Without one a pod is BestEffort, whose CPU weight
// (cgroup cpu.shares 2) loses to every pod with a request whenever the CPUs are contended: on Starlab to the
// agent and the observer (50m and 20m: weights 51 and 20) recording the benchmark's own flows, so the tail
// of the latency measured would be the CPU scheduler's ordering, not the datapath. With 250m each (weight
// 256; four pods, 1 CPU of the 2) the workload is scheduled like a real one on both labs.
const benchCPURequest = "250m"

func probeContainer(image string) corev1.Container {
	return corev1.Container{
		Name: "probe", Image: image, ImagePullPolicy: corev1.PullNever,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(benchCPURequest), corev1.ResourceMemory: resource.MustParse("32Mi")}},
		Args: []string{"probe", "--port", strconv.Itoa(httpPort), "--echo", strconv.Itoa(echoPort), "--interval", "1h"},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(httpPort)}},
			PeriodSeconds: 1},
	}
}

// setupWorkload creates the namespace, two server pods and one client pod (the demo image), and waits
// until they are Ready.
func setupWorkload(ctx context.Context, cs kubernetes.Interface, demoImage string, timeout time.Duration) (*workload, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", Namespace, err)
	}
	pods := []string{"bench-client", "bench-server-0", "bench-server-1"}
	for _, name := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{probeContainer(demoImage)}, TerminationGracePeriodSeconds: new(int64),
				EnableServiceLinks: new(false)},
		}
		if old, err := cs.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil && !sameProbe(old, p) {
			if err := deletePodAndWait(ctx, cs, name, timeout); err != nil {
				return nil, err
			}
		}
		if _, err := cs.CoreV1().Pods(Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create pod %s/%s: %w", Namespace, name, err)
		}
	}
	w := &workload{cs: cs, clientPod: "bench-client"}
	deadline := time.Now().Add(timeout)
	for {
		w.serverIPs = w.serverIPs[:0]
		ready := 0
		for _, name := range pods {
			p, err := cs.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{})
			if err == nil && kubeready.Pod(p) {
				ready++
				if name != w.clientPod {
					w.serverIPs = append(w.serverIPs, p.Status.PodIP)
				}
			}
		}
		if ready == len(pods) {
			return w, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("benchmark pods in %s not Ready after %s (%d of %d): see `kubectl -n %s get pods`", Namespace, timeout, ready, len(pods), Namespace)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// sameProbe reports whether the existing pod old runs the probe container of want (image, requests, no
// Service links): a pod of an earlier version is replaced. Benchmark pods get no Service environment
// variables (EnableServiceLinks false): with 10,000 Services in their namespace those alone overflow the
// kernel's limit on a process's arguments and environment, and the container does not start ("argument
// list too long" from the runtime's hook).
func sameProbe(old, want *corev1.Pod) bool {
	o, w := old.Spec.Containers[0], want.Spec.Containers[0]
	links := func(p *corev1.Pod) bool { return p.Spec.EnableServiceLinks == nil || *p.Spec.EnableServiceLinks }
	return o.Image == w.Image && o.Resources.Requests.Cpu().Equal(*w.Resources.Requests.Cpu()) && links(old) == links(want)
}

func deletePodAndWait(ctx context.Context, cs kubernetes.Interface, name string, timeout time.Duration) error {
	if err := cs.CoreV1().Pods(Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", Namespace, name, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := cs.CoreV1().Pods(Namespace).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("pod %s/%s still there after %s", Namespace, name, timeout)
}

// retryApply retries an apply the API server timed out or throttled (a loaded machine), up to 5 times.
func retryApply(ctx context.Context, f func() error) error {
	var err error
	for i := range 5 {
		if err = f(); err == nil || !(apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err)) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i+1) * time.Second):
		}
	}
	return err
}

// applyService applies one selectorless ClusterIP Service and its EndpointSlice (the server pods at the
// echo port) with server-side apply, and returns the ClusterIP.
func (w *workload) applyService(ctx context.Context, name, clusterIP string) (string, error) {
	svc := corev1ac.Service(name, Namespace).WithLabels(map[string]string{"app": "bench"}).
		WithSpec(corev1ac.ServiceSpec().WithType(corev1.ServiceTypeClusterIP).
			WithPorts(corev1ac.ServicePort().WithName("echo").WithProtocol(corev1.ProtocolTCP).WithPort(servicePort).WithTargetPort(intstr.FromInt32(echoPort))))
	if clusterIP != "" {
		svc.Spec.WithClusterIP(clusterIP)
	}
	var got *corev1.Service
	err := retryApply(ctx, func() (err error) {
		got, err = w.cs.CoreV1().Services(Namespace).Apply(ctx, svc, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("apply service %s/%s: %w", Namespace, name, err)
	}
	var eps []*discoveryv1ac.EndpointApplyConfiguration
	for _, ip := range w.serverIPs {
		eps = append(eps, discoveryv1ac.Endpoint().WithAddresses(ip).WithConditions(discoveryv1ac.EndpointConditions().WithReady(true).WithServing(true).WithTerminating(false)))
	}
	slice := discoveryv1ac.EndpointSlice(name+"-bench", Namespace).
		WithLabels(map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: fieldManager}).
		WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("Service").WithName(name).WithUID(got.UID)).
		WithAddressType(discoveryv1.AddressTypeIPv4).
		WithEndpoints(eps...).
		WithPorts(discoveryv1ac.EndpointPort().WithName("echo").WithProtocol(corev1.ProtocolTCP).WithPort(echoPort))
	if err := retryApply(ctx, func() error {
		_, err := w.cs.DiscoveryV1().EndpointSlices(Namespace).Apply(ctx, slice, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
		return err
	}); err != nil {
		return "", fmt.Errorf("apply endpointslice of %s/%s: %w", Namespace, name, err)
	}
	return got.Spec.ClusterIP, nil
}

// ensureServices makes bench-svc-0 .. bench-svc-<n-1> exist (applying the missing ones with workers in
// parallel) and returns their ClusterIPs in order. have are the IPs of the ones already made.
func (w *workload) ensureServices(ctx context.Context, have []string, n, workers int) ([]string, error) {
	if len(have) >= n {
		return have[:n], nil
	}
	ips := make([]string, n)
	copy(ips, have)
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range workers {
		wg.Go(func() {
			for i := range next {
				ip, err := w.applyService(ctx, servicePrefix+strconv.Itoa(i), "")
				if err != nil {
					errs <- err
					cancel()
					return
				}
				ips[i] = ip
			}
		})
	}
feed:
	for i := len(have); i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return ips, nil
}

// existingServices returns the ClusterIPs of bench-svc-0.. in order, as far as they are contiguous (a
// rerun continues where a previous run stopped).
func (w *workload) existingServices(ctx context.Context) ([]string, error) {
	list, err := w.cs.CoreV1().Services(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
	if err != nil {
		return nil, fmt.Errorf("list services in %s: %w", Namespace, err)
	}
	byIndex := map[int]string{}
	for _, s := range list.Items {
		if rest, ok := strings.CutPrefix(s.Name, servicePrefix); ok {
			if i, err := strconv.Atoi(rest); err == nil {
				byIndex[i] = s.Spec.ClusterIP
			}
		}
	}
	var ips []string
	for i := 0; ; i++ {
		ip, ok := byIndex[i]
		if !ok {
			return ips, nil
		}
		ips = append(ips, ip)
	}
}

// deleteServices deletes every bench Service with workers in parallel (their slices go with them:
// owner references), so a datapath's run starts from none.
func (w *workload) deleteServices(ctx context.Context, workers int) error {
	list, err := w.cs.CoreV1().Services(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=bench"})
	if err != nil {
		return fmt.Errorf("list services in %s: %w", Namespace, err)
	}
	names := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range workers {
		wg.Go(func() {
			for n := range names {
				err := w.cs.CoreV1().Services(Namespace).Delete(ctx, n, metav1.DeleteOptions{})
				if err == nil || apierrors.IsNotFound(err) {
					err = w.cs.DiscoveryV1().EndpointSlices(Namespace).Delete(ctx, n+"-bench", metav1.DeleteOptions{})
				}
				if err != nil && !apierrors.IsNotFound(err) {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("delete service %s/%s: %w", Namespace, n, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, s := range list.Items {
		names <- s.Name
	}
	close(names)
	wg.Wait()
	return firstErr
}

// deleteFirstService removes the create -> first connection Service (and, through its owner, its slice).
func (w *workload) deleteFirstService(ctx context.Context) error {
	err := w.cs.CoreV1().Services(Namespace).Delete(ctx, firstServiceName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete service %s/%s: %w", Namespace, firstServiceName, err)
	}
	_ = w.cs.DiscoveryV1().EndpointSlices(Namespace).Delete(ctx, firstServiceName+"-bench", metav1.DeleteOptions{})
	return nil
}

// target is host:port of a ClusterIP's Service port.
func target(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(servicePort)) }
