package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// kprNamespace holds the kube-proxy parity workloads (testdata/kpr.yaml, issue 12).
const kprNamespace = "kpr-e2e"

// kprConverge bounds how long a Service or endpoint change may take to reach every agent's maps.
const kprConverge = 20 * time.Second

// kprSteps lists the kube-proxy parity steps of features/services.feature.
func (s *servicesSteps) kprSteps() []step {
	return []step{
		{`^the kube-proxy parity workloads are running$`, s.kprWorkloadsRunning},
		{`^I scale Deployment "([^"]*)" to 0 replicas while its pod keeps serving$`, s.kprScaleToZeroServing},
		{`^the parity pod "([^"]*)" (reaches|cannot reach|is refused by) "([^"]*)"$`, s.kprPodConnects},
		{`^the "([^"]*)" pod on the node of the "([^"]*)" pod (reaches|is refused by) "([^"]*)"$`, s.kprPodOnNodeOf},
		{`^the "([^"]*)" pod on another node than the "([^"]*)" pod (reaches|is refused by) "([^"]*)"$`, s.kprPodOnOtherNode},
		{`^NodePort (\d+) answers from this host on (the node of|a node other than that of) the "([^"]*)" pod$`, s.kprNodePortOnNodeOf},
		{`^I set the label "([^"]*)" on the Service "([^"]*)"$`, s.kprLabelService},
		{`^I remove the label "([^"]*)" from the Service "([^"]*)"$`, s.kprUnlabelService},
		{`^I recreate the Service "([^"]*)" with a new ClusterIP$`, s.kprRecreateService},
		{`^I scale the parity Deployment "([^"]*)" to (\d+) replicas$`, s.kprScale},
		{`^while the parity pod "([^"]*)" connects to "([^"]*)" continuously, I scale Deployment "([^"]*)" through ([\d, ]+) replicas$`, s.kprSoak},
		{`^the health check port of Service "([^"]*)" answers (\d+) with (\d+) local endpoints? on (the node of|a node other than) the "([^"]*)" pod$`, s.kprHealthCheck},
		{`^every node (reaches|is refused by) the ClusterIP of Service "([^"]*)" on port (\d+)$`, s.kprEveryNodeClusterIP},
		{`^every node reaches NodePort (\d+) on its own address$`, s.kprEveryNodeOwnNodePort},
		{`^(the node of|a node other than that of) the "([^"]*)" pod (reaches|is refused by) the ClusterIP of Service "([^"]*)" on port (\d+)$`, s.kprNodeOfClusterIP},
	}
}

// kprWorkloadsRunning applies testdata/kpr.yaml, resets the scale and waits for the ready pods (the
// "unready" Deployment only needs a running pod: it never gets ready).
func (s *servicesSteps) kprWorkloadsRunning(ctx context.Context) error {
	t := godog.T(ctx)
	_, err := s.e.applyWorkloads(ctx, "kpr.yaml")
	require.NoError(t, err)
	for d, n := range map[string]int{"lbclient": 2, "slow": 1, "unready": 1, "web": 2, "hostnet": 2} {
		require.NoError(t, s.e.scaleDeployment(ctx, kprNamespace, d, n))
	}
	// A pod that is never Ready would hold up the suite's lab readiness check on the next run.
	e := s.e
	s.w.Cleanup(func(ctx context.Context) error { return e.scaleDeployment(ctx, kprNamespace, "unready", 0) })
	// Isolation: no pod of an earlier scenario may still be terminating (a terminating but serving
	// pod is a valid fallback endpoint, and would answer where this scenario expects none).
	require.NoError(t, poll(ctx, 3*time.Minute, 500*time.Millisecond, "kpr-e2e pods up, none terminating", func(ctx context.Context) (bool, string, error) {
		var waiting []string
		for d, n := range map[string]int{"lbclient": 2, "slow": 1, "web": 2, "hostnet": 2} {
			if got := s.kprPods(ctx, d, true); len(got) != n {
				waiting = append(waiting, fmt.Sprintf("%s %d/%d ready", d, len(got), n))
			}
		}
		if got := s.kprPods(ctx, "unready", false); len(got) != 1 {
			waiting = append(waiting, fmt.Sprintf("unready %d/1 running", len(got)))
		}
		term, err := s.kprTerminating(ctx)
		if err != nil {
			return false, "", err
		}
		if len(term) > 0 {
			waiting = append(waiting, "terminating: "+strings.Join(term, " "))
		}
		return len(waiting) == 0, strings.Join(waiting, ", "), nil
	}))
	return nil
}

// kprTerminating names the pods of the parity namespace that are being deleted.
func (s *servicesSteps) kprTerminating(ctx context.Context) ([]string, error) {
	list, err := s.e.Client.CoreV1().Pods(kprNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", kprNamespace, err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			out = append(out, p.Name)
		}
	}
	return out, nil
}

// kprForceDelete deletes the pod at once (grace period 0, past its preStop hook) and waits until
// it is gone, so the next scenario does not meet it as a terminating but serving endpoint.
func (e *Env) kprForceDelete(ctx context.Context, name string) error {
	pods := e.Client.CoreV1().Pods(kprNamespace)
	zero := int64(0)
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("force delete pod %s/%s: %w", kprNamespace, name, err)
	}
	return poll(ctx, time.Minute, 250*time.Millisecond, "pod "+name+" gone", func(ctx context.Context) (bool, string, error) {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}

// kprPods lists the running, not terminating pods of app (ready ones only when ready).
func (s *servicesSteps) kprPods(ctx context.Context, app string, ready bool) []corev1.Pod {
	list, err := s.e.Client.CoreV1().Pods(kprNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" && (!ready || kubeready.Pod(&p)) {
			out = append(out, p)
		}
	}
	return out
}

// kprScaleToZeroServing scales the Deployment to 0 and waits until its pod is terminating and its
// EndpointSlice says so (ready false, serving true, terminating true): the pod is the Service's
// only endpoint and it still serves (preStop sleep). The pod is remembered for the node steps.
func (s *servicesSteps) kprScaleToZeroServing(ctx context.Context, name string) error {
	t := godog.T(ctx)
	pods := s.kprPods(ctx, name, true)
	require.Len(t, pods, 1, "one ready %s pod before scaling to 0", name)
	s.kprPinned = pods[0].DeepCopy()
	e := s.e
	require.NoError(t, e.scaleDeployment(ctx, kprNamespace, name, 0))
	pinned := s.kprPinned.Name
	s.w.Cleanup(func(ctx context.Context) error {
		return errors.Join(e.kprForceDelete(ctx, pinned), e.scaleDeployment(ctx, kprNamespace, name, 1))
	})
	ip := s.kprPinned.Status.PodIP
	require.NoError(t, poll(ctx, time.Minute, 250*time.Millisecond, "endpoint "+ip+" terminating and serving", func(ctx context.Context) (bool, string, error) {
		sls, err := e.Client.DiscoveryV1().EndpointSlices(kprNamespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if err != nil {
			return false, "", err
		}
		for _, sl := range sls.Items {
			for _, ep := range sl.Endpoints {
				if len(ep.Addresses) == 0 || ep.Addresses[0] != ip {
					continue
				}
				c := ep.Conditions
				st := fmt.Sprintf("ready=%v serving=%v terminating=%v", deref(c.Ready), deref(c.Serving), deref(c.Terminating))
				return !deref(c.Ready) && deref(c.Serving) && deref(c.Terminating), st, nil
			}
		}
		return false, "endpoint not in the slices", nil
	}))
	return nil
}

func deref(b *bool) bool { return b != nil && *b }

// kprProbe makes one connection from pod to target and checks the outcome: reaches (connected),
// cannot reach (anything but connected), is refused by (a TCP RST within 500 ms, not a timeout).
// The agents converge on Service changes asynchronously, so the outcome may take kprConverge.
func (s *servicesSteps) kprProbe(ctx context.Context, pod *corev1.Pod, outcome, target string) {
	t := godog.T(ctx)
	var last string
	err := poll(ctx, kprConverge, 250*time.Millisecond, fmt.Sprintf("%s %s %s", pod.Name, outcome, target), func(ctx context.Context) (bool, string, error) {
		res, err := s.e.probeFromPod(ctx, pod, target)
		if err != nil {
			return false, "", err
		}
		last = fmt.Sprintf("reachable=%v error=%q, connect %.0f ms (%.0f ms with the name's resolution)", res.Reachable, res.Error, res.ConnectMs, res.ElapsedMs)
		switch outcome {
		case "reaches":
			return res.Reachable, last, nil
		case "cannot reach":
			return !res.Reachable, last, nil
		default:
			return !res.Reachable && strings.Contains(res.Error, "connection refused") && res.ConnectMs < 500, last, nil
		}
	})
	assert.NoError(t, err, "from %s (%s) on %s: last probe %s", pod.Name, pod.Status.PodIP, pod.Spec.NodeName, last)
}

func (s *servicesSteps) kprPodConnects(ctx context.Context, app, outcome, target string) error {
	pods := s.kprPods(ctx, app, true)
	require.NotEmpty(godog.T(ctx), pods, "no ready %s pod in %s", app, kprNamespace)
	s.kprProbe(ctx, &pods[0], outcome, target)
	return nil
}

// kprNodeOf is the node of the ready pod of app, or of the pod remembered by the scale step.
func (s *servicesSteps) kprNodeOf(ctx context.Context, app string) string {
	t := godog.T(ctx)
	if s.kprPinned != nil && s.kprPinned.Labels["app"] == app {
		return s.kprPinned.Spec.NodeName
	}
	pods := s.kprPods(ctx, app, true)
	require.NotEmpty(t, pods, "no ready %s pod in %s", app, kprNamespace)
	return pods[0].Spec.NodeName
}

func (s *servicesSteps) kprPodOnNodeOf(ctx context.Context, app, of, outcome, target string) error {
	node := s.kprNodeOf(ctx, of)
	for _, p := range s.kprPods(ctx, app, true) {
		if p.Spec.NodeName == node {
			s.kprProbe(ctx, &p, outcome, target)
			return nil
		}
	}
	require.Failf(godog.T(ctx), "no client", "no ready %s pod on node %s", app, node)
	return nil
}

func (s *servicesSteps) kprPodOnOtherNode(ctx context.Context, app, of, outcome, target string) error {
	node := s.kprNodeOf(ctx, of)
	for _, p := range s.kprPods(ctx, app, true) {
		if p.Spec.NodeName != node {
			s.kprProbe(ctx, &p, outcome, target)
			return nil
		}
	}
	require.Failf(godog.T(ctx), "no client", "no ready %s pod on a node other than %s", app, node)
	return nil
}

func (s *servicesSteps) kprNodePortOnNodeOf(ctx context.Context, port int, which, of string) error {
	t := godog.T(ctx)
	pinned := s.kprNodeOf(ctx, of)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	node := ""
	for _, n := range slices.Sorted(maps.Keys(ips)) {
		if (which == "the node of") == (n == pinned) {
			node = n
			break
		}
	}
	require.NotEmpty(t, node, "no node for %q %s", which, pinned)
	u := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(ips[node], strconv.Itoa(port)))
	var last string
	assert.NoError(t, poll(ctx, kprConverge, 250*time.Millisecond, "GET "+u, func(ctx context.Context) (bool, string, error) {
		code, err := httpStatus(ctx, u)
		if err != nil {
			last = err.Error()
			return false, last, nil
		}
		last = strconv.Itoa(code)
		return code == http.StatusOK, last, nil
	}), "GET %s (node %s) from this host: last %s", u, node, last)
	return nil
}

func (s *servicesSteps) kprPatchLabel(ctx context.Context, name, key string, value *string) error {
	v := "null"
	if value != nil {
		v = strconv.Quote(*value)
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%s:%s}}}`, strconv.Quote(key), v)
	_, err := s.e.Client.CoreV1().Services(kprNamespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patch label %s on Service %s/%s: %w", key, kprNamespace, name, err)
	}
	return nil
}

// kprLabelService sets key=value (written "key=value" or "key=") on the Service.
func (s *servicesSteps) kprLabelService(ctx context.Context, kv, name string) error {
	t := godog.T(ctx)
	k, v, _ := strings.Cut(kv, "=")
	require.NoError(t, s.kprPatchLabel(ctx, name, k, &v))
	s.w.Cleanup(func(ctx context.Context) error { return s.kprPatchLabel(ctx, name, k, nil) })
	return nil
}

func (s *servicesSteps) kprUnlabelService(ctx context.Context, key, name string) error {
	require.NoError(godog.T(ctx), s.kprPatchLabel(ctx, name, key, nil))
	return nil
}

// kprRecreateService deletes the Service, waits until it is gone and creates it again from its
// spec without the allocated addresses; the API server gives it a new ClusterIP.
func (s *servicesSteps) kprRecreateService(ctx context.Context, name string) error {
	t := godog.T(ctx)
	svcs := s.e.Client.CoreV1().Services(kprNamespace)
	old, err := svcs.Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NoError(t, svcs.Delete(ctx, name, metav1.DeleteOptions{}))
	require.NoError(t, poll(ctx, 30*time.Second, 100*time.Millisecond, "Service "+name+" gone", func(ctx context.Context) (bool, string, error) {
		_, err := svcs.Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	}))
	fresh := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: kprNamespace, Labels: old.Labels}, Spec: *old.Spec.DeepCopy()}
	fresh.Spec.ClusterIP, fresh.Spec.ClusterIPs = "", nil
	created, err := svcs.Create(ctx, fresh, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NotEqual(t, old.Spec.ClusterIP, created.Spec.ClusterIP, "the recreated Service has a new ClusterIP")
	return nil
}

func (s *servicesSteps) kprScale(ctx context.Context, name string, n int) error {
	t := godog.T(ctx)
	e := s.e
	require.NoError(t, e.scaleDeployment(ctx, kprNamespace, name, n))
	s.w.Cleanup(func(ctx context.Context) error { return e.scaleDeployment(ctx, kprNamespace, name, 2) })
	require.NoError(t, poll(ctx, 2*time.Minute, 250*time.Millisecond, fmt.Sprintf("exactly %d ready %s pods, none terminating", n, name), func(ctx context.Context) (bool, string, error) {
		list, err := e.Client.CoreV1().Pods(kprNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		return len(list.Items) == n && len(s.kprPods(ctx, name, true)) == n, fmt.Sprintf("%d pods", len(list.Items)), nil
	}))
	return nil
}

// kprHealthCheck GETs the Service's healthCheckNodePort on a node from this host and checks the
// status code and kube-proxy's body (service name, localEndpoints).
func (s *servicesSteps) kprHealthCheck(ctx context.Context, name string, code, count int, which, of string) error {
	t := godog.T(ctx)
	svc, err := s.e.Client.CoreV1().Services(kprNamespace).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotZero(t, svc.Spec.HealthCheckNodePort, "Service %s has no healthCheckNodePort", name)
	pinned := s.kprNodeOf(ctx, of)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	node := ""
	for n := range ips {
		if (which == "the node of") == (n == pinned) {
			node = n
			break
		}
	}
	require.NotEmpty(t, node, "no node for %q %s", which, pinned)
	u := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(ips[node], strconv.Itoa(int(svc.Spec.HealthCheckNodePort))))
	var last string
	assert.NoError(t, poll(ctx, kprConverge, 250*time.Millisecond, "GET "+u, func(ctx context.Context) (bool, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false, "", err
		}
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err != nil {
			last = err.Error()
			return false, last, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		var body struct {
			Service struct {
				Namespace, Name string
			} `json:"service"`
			LocalEndpoints int `json:"localEndpoints"`
		}
		if json.Unmarshal(b, &body) != nil {
			return false, last, nil
		}
		return resp.StatusCode == code && body.LocalEndpoints == count && body.Service.Name == name && body.Service.Namespace == kprNamespace, last, nil
	}), "health check of %s on node %s: last answer %s", name, node, last)
	return nil
}

// kprSoak scales the Deployment through the replica counts (waiting at each until exactly that
// many pods are ready and none is left) while one client pod connects to target without pause.
// Every connection must either succeed or be refused at once (a TCP RST within 500 ms of the
// connect, the Service name's DNS lookups not counted): none may hang until the probe's timeout,
// whatever the backends are doing.
func (s *servicesSteps) kprSoak(ctx context.Context, app, target, name, counts string) error {
	t := godog.T(ctx)
	pods := s.kprPods(ctx, app, true)
	require.NotEmpty(t, pods, "no ready %s pod", app)
	client := pods[0]
	var steps []int
	for _, f := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		require.NoError(t, err, "replica count %q", f)
		steps = append(steps, n)
	}
	type outcome struct {
		at         time.Duration
		ok         bool
		err        string
		elapsedMs  float64
		connectMs  float64
		probeError error
	}
	start := time.Now()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan []outcome)
	go func() {
		var out []outcome
		for pctx.Err() == nil {
			res, err := s.e.probeFromPod(pctx, &client, target)
			if pctx.Err() != nil {
				break
			}
			out = append(out, outcome{at: time.Since(start), ok: res.Reachable, err: res.Error, elapsedMs: res.ElapsedMs, connectMs: res.ConnectMs, probeError: err})
		}
		done <- out
	}()
	for _, n := range steps {
		if err := s.kprScale(ctx, name, n); err != nil {
			stop()
			<-done
			return err
		}
		// hold each scale a moment so connections meet the settled state too
		time.Sleep(2 * time.Second)
	}
	stop()
	out := <-done
	var ok, refused int
	var bad []string
	for _, o := range out {
		switch {
		case o.probeError != nil:
			bad = append(bad, fmt.Sprintf("%s: probe failed: %v", o.at.Round(time.Millisecond), o.probeError))
		case o.ok:
			ok++
		case strings.Contains(o.err, "connection refused") && o.connectMs < 500:
			refused++
		default:
			bad = append(bad, fmt.Sprintf("%s: %q, connect %.0f ms (%.0f ms with the name's resolution)", o.at.Round(time.Millisecond), o.err, o.connectMs, o.elapsedMs))
		}
	}
	t.Logf("soak %s -> %s through %v: %d connections, %d succeeded, %d refused at once, %d hung or failed otherwise", client.Name, target, steps, len(out), ok, refused, len(bad))
	assert.Greater(t, len(out), 20, "the client connected continuously")
	assert.Positive(t, ok, "some connections succeeded")
	assert.Positive(t, refused, "some connections met 0 replicas and were refused")
	assert.Empty(t, bad, "connections that neither succeeded nor were refused at once")
	return nil
}

// kprNodeDial makes one HTTP connection from the kind node container (docker exec: the node's
// network namespace and cgroup, as a hostNetwork pod has) to addr and checks the outcome: reaches
// (HTTP 200) or is refused by (curl exit 7, connection refused, within 500 ms). Polled for
// kprConverge like the pod probes.
func (s *servicesSteps) kprNodeDial(ctx context.Context, node, outcome, addr string) {
	t := godog.T(ctx)
	cmd := fmt.Sprintf("curl -s -o /dev/null -m 3 -w '%%{http_code} %%{time_total}' http://%s/healthz; echo \" $?\"", addr)
	var last string
	assert.NoError(t, poll(ctx, kprConverge, 250*time.Millisecond, fmt.Sprintf("node %s %s %s", node, outcome, addr), func(ctx context.Context) (bool, string, error) {
		out, err := nodeExec(ctx, node, cmd)
		if err != nil {
			return false, "", err
		}
		last = strings.TrimSpace(out)
		var code string
		var secs float64
		var rc int
		if _, err := fmt.Sscanf(last, "%s %g %d", &code, &secs, &rc); err != nil {
			return false, last, nil
		}
		if outcome == "reaches" {
			return code == "200", last, nil
		}
		return rc == 7 && secs < 0.5, last, nil
	}), "from node %s to %s: last curl (code seconds exit) %s", node, addr, last)
}

// kprClusterIP is the ClusterIP:port of a parity Service.
func (s *servicesSteps) kprClusterIP(ctx context.Context, name string, port int) string {
	svc, err := s.e.Client.CoreV1().Services(kprNamespace).Get(ctx, name, metav1.GetOptions{})
	require.NoError(godog.T(ctx), err)
	return net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(port))
}

func (s *servicesSteps) kprEveryNodeClusterIP(ctx context.Context, outcome, name string, port int) error {
	addr := s.kprClusterIP(ctx, name, port)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(godog.T(ctx), err)
	for node := range ips {
		s.kprNodeDial(ctx, node, outcome, addr)
	}
	return nil
}

func (s *servicesSteps) kprEveryNodeOwnNodePort(ctx context.Context, port int) error {
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(godog.T(ctx), err)
	for node, ip := range ips {
		s.kprNodeDial(ctx, node, "reaches", net.JoinHostPort(ip, strconv.Itoa(port)))
	}
	return nil
}

func (s *servicesSteps) kprNodeOfClusterIP(ctx context.Context, which, of, outcome, name string, port int) error {
	t := godog.T(ctx)
	addr := s.kprClusterIP(ctx, name, port)
	pinned := s.kprNodeOf(ctx, of)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	for node := range ips {
		if (which == "the node of") == (node == pinned) {
			s.kprNodeDial(ctx, node, outcome, addr)
			return nil
		}
	}
	require.Failf(t, "no node", "no node for %q %s", which, pinned)
	return nil
}
