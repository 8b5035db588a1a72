package scenarios

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/internal/agentapi"
	"github.com/starlab-dev/starlab/internal/cni"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/internal/kubeready"
)

// svcNamespace holds the services feature's workloads (testdata/services.yaml).
const svcNamespace = "svc-e2e"

// servicesSteps are the steps of features/services.feature, one value per scenario.
type servicesSteps struct {
	w *World
	e *Env
	// chartValues are the values the chart was installed with, read before uninstalling it so the
	// reinstall step (and the cleanup) can put it back.
	chartValues map[string]any
	// kprPinned is the pod a kube-proxy parity step scaled away while it keeps serving.
	kprPinned *corev1.Pod
	// kprOutside are the client containers outside the nodes started in this scenario, by name.
	kprOutside map[string]*kprOutside
	// kprExternal are the external addresses (externalIPs, LoadBalancer ingress) given to Services
	// in this scenario, by Service name.
	kprExternal map[string]string
}

// newServicesSteps returns the steps of features/services.feature for the scenario of w.
func newServicesSteps(w *World) *servicesSteps {
	return &servicesSteps{w: w, e: w.Env}
}

// steps lists the steps of features/services.feature and their methods.
func (s *servicesSteps) steps() []step {
	return append([]step{
		{`^the services test workloads are running$`, s.workloadsRunning},
		{`^every node is Ready$`, s.everyNodeReady},
		{`^CoreDNS is Running and Ready$`, s.coreDNSReady},
		{`^no node has kube-proxy rules$`, s.noKubeProxyRules},
		{`^pod "([^"]*)" reaches "([^"]*)"$`, s.podReaches},
		{`^every "([^"]*)" pod reaches every "([^"]*)" pod on another node by pod IP$`, s.everyPodReachesEveryPodAcrossNodes},
		{`^NodePort (\d+) answers from this host on every node$`, s.nodePortAnswersFromHost},
		{`^NodePort (\d+) answers from every node on every other node$`, s.nodePortAnswersFromNodes},
		{`^I scale Deployment "([^"]*)" to (\d+) replicas$`, s.scaleDeployment},
		{`^connections from "([^"]*)" to "([^"]*)" reach exactly the (\d+) "([^"]*)" pods$`, s.connectionsReachExactly},
		{`^pod "([^"]*)" is refused by "([^"]*)" within (\d+) ms$`, s.podIsRefusedWithin},
		{`^I apply the Service "([^"]*)" with annotation "([^"]*)" set to "([^"]*)"$`, s.applyAnnotatedService},
		{`^(every node reports|a node reports) a Warning Event "([^"]*)" on (Service|NetworkPolicy) "([^"]*)"$`, s.warningEventReported},
		{`^I apply the NetworkPolicy "([^"]*)" that the datapath cannot represent$`, s.applyUnrepresentablePolicy},
		{`^I delete the NetworkPolicy "([^"]*)"$`, s.deleteNetworkPolicy},
		{`^pod "([^"]*)" cannot reach "([^"]*)"$`, s.podCannotReach},
		{`^I restart the starlab agents$`, s.restartAgents},
		{`^every agent reports an endpoint for each pod on its node$`, s.agentsReportEndpoints},
		{`^I uninstall the starlab chart$`, s.uninstallChart},
		{`^no node has the starlab CNI config, CNI plugin or pinned datapath$`, s.nodesHaveNoStarlabFiles},
		{`^I reinstall the starlab chart$`, s.reinstallChart},
	}, append(s.kprSteps(), s.kprOutsideSteps()...)...)
}

func (s *servicesSteps) workloadsRunning(ctx context.Context) error {
	t := godog.T(ctx)
	_, err := s.e.applyWorkloads(ctx, "services.yaml")
	require.NoError(t, err)
	require.NoError(t, s.e.scaleDeployment(ctx, svcNamespace, "web", 2), "reset web to 2 replicas")
	require.NoError(t, s.e.WaitDeploymentsAvailable(ctx, 3*time.Minute, svcNamespace))
	return nil
}

func (s *servicesSteps) everyNodeReady(ctx context.Context) error {
	require.NoError(godog.T(ctx), poll(ctx, 3*time.Minute, 500*time.Millisecond, "every node Ready", func(ctx context.Context) (bool, string, error) {
		nodes, err := s.e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		var notReady []string
		for _, n := range nodes.Items {
			if !kubeready.Node(&n) {
				notReady = append(notReady, n.Name)
			}
		}
		return len(notReady) == 0 && len(nodes.Items) > 0, fmt.Sprintf("not Ready: %v", notReady), nil
	}))
	return nil
}

func (s *servicesSteps) coreDNSReady(ctx context.Context) error {
	require.NoError(godog.T(ctx), poll(ctx, 2*time.Minute, 500*time.Millisecond, "CoreDNS Running and Ready", func(ctx context.Context) (bool, string, error) {
		pods, err := s.e.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && kubeready.Pod(&p) {
				ready++
			}
		}
		return ready > 0 && ready == len(pods.Items), fmt.Sprintf("%d/%d CoreDNS pods ready", ready, len(pods.Items)), nil
	}))
	return nil
}

func (s *servicesSteps) noKubeProxyRules(ctx context.Context) error {
	t := godog.T(ctx)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	for _, n := range nodes {
		out, _ := nodeExec(ctx, n, "iptables-save | grep -c KUBE-SVC")
		assert.Equal(t, "0", strings.TrimSpace(out), "iptables-save | grep -c KUBE-SVC on %s", n)
	}
	return nil
}

func (s *servicesSteps) podReaches(ctx context.Context, app, target string) error {
	t := godog.T(ctx)
	res, err := s.e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
	require.NoError(t, err)
	assert.True(t, res.Reachable, "%s -> %s: %s", app, target, res.Error)
	return nil
}

func (s *servicesSteps) everyPodReachesEveryPodAcrossNodes(ctx context.Context, fromApp, toApp string) error {
	t := godog.T(ctx)
	froms, err := s.e.readyPods(ctx, svcNamespace, "app="+fromApp)
	require.NoError(t, err)
	tos, err := s.e.readyPods(ctx, svcNamespace, "app="+toApp)
	require.NoError(t, err)
	pairs := 0
	for _, f := range froms {
		for _, to := range tos {
			if f.Spec.NodeName == to.Spec.NodeName {
				continue
			}
			port, err := containerPort(&to)
			require.NoError(t, err)
			target := net.JoinHostPort(to.Status.PodIP, strconv.Itoa(port))
			res, err := s.e.probeFromPod(ctx, &f, target)
			require.NoError(t, err)
			assert.True(t, res.Reachable, "%s (%s) -> %s (%s) %s: %s", f.Name, f.Spec.NodeName, to.Name, to.Spec.NodeName, target, res.Error)
			pairs++
		}
	}
	require.Positive(t, pairs, "no %s/%s pod pair on different nodes: the workloads should spread over the workers", fromApp, toApp)
	return nil
}

func (s *servicesSteps) nodePortAnswersFromHost(ctx context.Context, port int) error {
	t := godog.T(ctx)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	for name, ip := range ips {
		u := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(ip, strconv.Itoa(port)))
		code, err := httpStatus(ctx, u)
		if assert.NoError(t, err, "GET %s (node %s) from this host", u, name) {
			assert.Equal(t, http.StatusOK, code, "GET %s (node %s)", u, name)
		}
	}
	return nil
}

func (s *servicesSteps) nodePortAnswersFromNodes(ctx context.Context, port int) error {
	t := godog.T(ctx)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	for from := range ips {
		for to, ip := range ips {
			if from == to {
				continue
			}
			cmd := fmt.Sprintf("curl -s -o /dev/null -m 3 -w %%{http_code} http://%s/healthz", net.JoinHostPort(ip, strconv.Itoa(port)))
			out, err := nodeExec(ctx, from, cmd)
			assert.NoError(t, err, "%s on %s", cmd, from)
			assert.Equal(t, "200", strings.TrimSpace(out), "node %s -> NodePort on %s (%s)", from, to, ip)
		}
	}
	return nil
}

func (s *servicesSteps) scaleDeployment(ctx context.Context, name string, n int) error {
	t := godog.T(ctx)
	e := s.e
	require.NoError(t, e.scaleDeployment(ctx, svcNamespace, name, n))
	s.w.Cleanup(func(ctx context.Context) error { return e.scaleDeployment(ctx, svcNamespace, name, 2) })
	require.NoError(t, e.WaitDeploymentsAvailable(ctx, 2*time.Minute, svcNamespace))
	// Wait until terminated pods are gone so the pod set is exactly the backends.
	require.NoError(t, poll(ctx, time.Minute, 250*time.Millisecond, fmt.Sprintf("exactly %d %s pods", n, name), func(ctx context.Context) (bool, string, error) {
		pods, err := e.Client.CoreV1().Pods(svcNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == n, fmt.Sprintf("%d pods", len(pods.Items)), nil
	}))
	return nil
}

func (s *servicesSteps) connectionsReachExactly(ctx context.Context, fromApp, target string, n int, toApp string) error {
	t := godog.T(ctx)
	want, err := s.e.readyPods(ctx, svcNamespace, "app="+toApp)
	require.NoError(t, err)
	require.Len(t, want, n)
	wantIPs := map[string]bool{}
	for _, p := range want {
		wantIPs[p.Status.PodIP] = true
	}
	require.NoError(t, poll(ctx, time.Minute, 500*time.Millisecond, fmt.Sprintf("connections to %s reach exactly %d backends", target, n), func(ctx context.Context) (bool, string, error) {
		got, err := s.backendsReached(ctx, fromApp, target, 8*n)
		if err != nil {
			return false, "", err
		}
		var gotList []string
		ok := len(got) == n
		for ip := range got {
			gotList = append(gotList, ip)
			if !wantIPs[ip] {
				ok = false
			}
		}
		sort.Strings(gotList)
		return ok, fmt.Sprintf("reached %v, want the pods %v", gotList, sortedKeys(wantIPs)), nil
	}))
	return nil
}

func (s *servicesSteps) podIsRefusedWithin(ctx context.Context, app, target string, ms int) error {
	t := godog.T(ctx)
	res, err := s.e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
	require.NoError(t, err)
	assert.False(t, res.Reachable, "%s -> %s must fail: the Service has no endpoints", app, target)
	assert.Contains(t, res.Error, "connection refused", "refused at once (TCP RST), not a timeout")
	assert.Less(t, res.ConnectMs, float64(ms), "refused within %d ms of the connect (%.0f ms with the name's resolution)", ms, res.ElapsedMs)
	return nil
}

func (s *servicesSteps) applyAnnotatedService(ctx context.Context, name, key, value string) error {
	t := godog.T(ctx)
	e := s.e
	doc, err := renderTestdata("annotated-service.yaml", map[string]string{"Name": name, "Namespace": svcNamespace, "Key": key, "Value": value})
	require.NoError(t, err)
	_, err = e.Apply(ctx, doc)
	require.NoError(t, err)
	s.w.Cleanup(func(ctx context.Context) error {
		err := e.Client.CoreV1().Services(svcNamespace).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	return nil
}

func (s *servicesSteps) warningEventReported(ctx context.Context, who, reason, kind, name string) error {
	t := godog.T(ctx)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	require.NoError(t, poll(ctx, 30*time.Second, 250*time.Millisecond, fmt.Sprintf("Warning %s on %s %s", reason, kind, name), func(ctx context.Context) (bool, string, error) {
		evs, err := s.e.Client.CoreV1().Events(svcNamespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, "", err
		}
		from := map[string]bool{}
		for _, ev := range evs.Items {
			if ev.Type == corev1.EventTypeWarning && ev.Reason == reason && ev.InvolvedObject.Kind == kind && ev.Source.Component == "starlab-agent" {
				from[ev.Source.Host] = true
			}
		}
		if who == "a node reports" {
			return len(from) > 0, "no event yet", nil
		}
		return len(from) == len(nodes), fmt.Sprintf("events from %v of %v", sortedKeys(from), nodes), nil
	}))
	return nil
}

func (s *servicesSteps) applyUnrepresentablePolicy(ctx context.Context, name string) error {
	t := godog.T(ctx)
	e := s.e
	doc, err := renderTestdata("unrepresentable-policy.yaml", map[string]string{"Name": name, "Namespace": svcNamespace})
	require.NoError(t, err)
	rv, err := e.Apply(ctx, doc)
	require.NoError(t, err)
	s.w.Cleanup(func(ctx context.Context) error { return e.DeleteNetworkPolicy(ctx, svcNamespace, name) })
	_, err = e.WaitProgrammed(ctx, rv)
	require.NoError(t, err)
	return nil
}

func (s *servicesSteps) deleteNetworkPolicy(ctx context.Context, name string) error {
	require.NoError(godog.T(ctx), s.e.DeleteNetworkPolicy(ctx, svcNamespace, name))
	return nil
}

func (s *servicesSteps) podCannotReach(ctx context.Context, app, target string) error {
	t := godog.T(ctx)
	res, err := s.e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
	require.NoError(t, err)
	assert.False(t, res.Reachable, "%s -> %s must be denied", app, target)
	return nil
}

func (s *servicesSteps) restartAgents(ctx context.Context) error {
	t := godog.T(ctx)
	pods := s.e.Client.CoreV1().Pods(helmrelease.DefaultNamespace)
	before, err := pods.List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
	require.NoError(t, err)
	require.NotEmpty(t, before.Items, "no agent pods in %s", helmrelease.DefaultNamespace)
	old := map[types.UID]bool{}
	for _, p := range before.Items {
		old[p.UID] = true
		require.NoError(t, pods.Delete(ctx, p.Name, metav1.DeleteOptions{}))
	}
	require.NoError(t, poll(ctx, 2*time.Minute, 250*time.Millisecond, "new agent pods ready on every node", func(ctx context.Context) (bool, string, error) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for _, p := range list.Items {
			if !old[p.UID] && p.DeletionTimestamp == nil && kubeready.Pod(&p) {
				ready++
			}
		}
		return ready == len(before.Items) && len(list.Items) == len(before.Items), fmt.Sprintf("%d/%d new agents ready", ready, len(before.Items)), nil
	}))
	return nil
}

func (s *servicesSteps) agentsReportEndpoints(ctx context.Context) error {
	t := godog.T(ctx)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	pods, err := s.e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	want := map[string][]string{}
	for _, p := range pods.Items {
		if p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		want[p.Spec.NodeName] = append(want[p.Spec.NodeName], p.Namespace+"/"+p.Name)
	}
	for node, ip := range ips {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := agentClient(ip).Status(sctx)
		cancel()
		require.NoError(t, err)
		var got []string
		for _, ep := range st.Endpoints {
			got = append(got, ep.Pod)
		}
		assert.ElementsMatch(t, want[node], got, "endpoints the agent on %s restored", node)
	}
	return nil
}

func (s *servicesSteps) uninstallChart(ctx context.Context) error {
	t := godog.T(ctx)
	e := s.e
	vals, err := e.currentChartValues(ctx)
	require.NoError(t, err)
	s.chartValues = vals
	// Whatever happens next, leave the shared lab with the chart installed.
	s.w.Cleanup(func(ctx context.Context) error { return e.reinstallChart(ctx, vals) })
	require.NoError(t, helmrelease.Uninstall(ctx, helmrelease.Options{Kubeconfig: e.Kubeconfig, Wait: true, Timeout: 2 * time.Minute, Logger: e.Log}))
	require.NoError(t, poll(ctx, time.Minute, 250*time.Millisecond, "agent pods gone", func(ctx context.Context) (bool, string, error) {
		pods, err := e.Client.CoreV1().Pods(helmrelease.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: agentapi.PodSelector})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 0, fmt.Sprintf("%d agent pods left", len(pods.Items)), nil
	}))
	return nil
}

// starlabNodeFiles are what the agent installs on a node: the CNI config, the CNI plugin and the
// pinned datapath.
func starlabNodeFiles() []string {
	return []string{
		path.Join(cni.DefaultConfDir, cni.ConflistName),
		path.Join(cni.DefaultBinDir, cni.BinaryName),
		agentapi.PinDir,
	}
}

func (s *servicesSteps) nodesHaveNoStarlabFiles(ctx context.Context) error {
	t := godog.T(ctx)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	for _, n := range nodes {
		for _, p := range starlabNodeFiles() {
			out, err := nodeExec(ctx, n, "test -e "+p+" && echo present || echo absent")
			require.NoError(t, err)
			assert.Equal(t, "absent", strings.TrimSpace(out), "%s on node %s", p, n)
		}
	}
	return nil
}

func (s *servicesSteps) reinstallChart(ctx context.Context) error {
	t := godog.T(ctx)
	require.NotNil(t, s.chartValues, "uninstall step must run first")
	require.NoError(t, s.e.reinstallChart(ctx, s.chartValues))
	return nil
}

// backendsReached makes count connections from the fromApp pod to target and returns the backend
// pod IPs they were translated to, read from the flows of the agent on the client's node.
func (s *servicesSteps) backendsReached(ctx context.Context, fromApp, target string, count int) (map[string]bool, error) {
	pods, err := s.e.readyPods(ctx, svcNamespace, "app="+fromApp)
	if err != nil {
		return nil, err
	}
	pod := pods[0]
	ports := map[uint16]bool{}
	for i := 0; i < count; i++ {
		res, err := s.e.probeFromPod(ctx, &pod, target)
		if err != nil {
			return nil, err
		}
		if !res.Reachable {
			return nil, fmt.Errorf("%s -> %s: %s", pod.Name, target, res.Error)
		}
		_, p, err := net.SplitHostPort(res.LocalAddr)
		if err != nil {
			return nil, fmt.Errorf("probe local address %q: %w", res.LocalAddr, err)
		}
		n, _ := strconv.Atoi(p)
		ports[uint16(n)] = true
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	flows, err := agentClient(pod.Status.HostIP).AllFlows(fctx, flow.Query{Last: 5000,
		Allow: []flow.Filter{{SourceIP: []string{pod.Status.PodIP}}}})
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	matched := 0
	for _, f := range flows {
		if f.IP.Source != pod.Status.PodIP || !ports[f.L4.SourcePort] || f.IP.OrigDestination == "" || f.IsReply {
			continue
		}
		matched++
		got[f.IP.Destination] = true
	}
	if matched == 0 {
		return nil, fmt.Errorf("the agent on %s recorded no translated flow for the %d connections of %s", pod.Spec.NodeName, count, pod.Name)
	}
	return got, nil
}
