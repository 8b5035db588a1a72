package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
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

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/internal/kubeready"
	"github.com/starlab-dev/starlab/manifests"
)

// svcNamespace holds the services feature's workloads.
const svcNamespace = "svc-e2e"

// svcWorkloads are the services feature's test workloads (demo image placeholder replaced at apply).
func svcWorkloads() string {
	return yamlDocs(
		namespaceManifest(svcNamespace),
		probeDeployment(svcNamespace, "web", 8080, 2, true),
		probeDeployment(svcNamespace, "client", 9000, 2, true),
		`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: svc-e2e
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {name: http, port: 8080, targetPort: http, nodePort: 30080, protocol: TCP}
`,
		`apiVersion: v1
kind: Service
metadata:
  name: empty
  namespace: svc-e2e
spec:
  selector: {app: nothing-selects-this}
  ports:
    - {name: http, port: 80, targetPort: 8080, protocol: TCP}
`,
	)
}

// registerServicesSteps holds the steps of features/services.feature.
func registerServicesSteps(sc *godog.ScenarioContext, w *World) {
	e := w.Env
	sc.Step(`^the services test workloads are running$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		_, err := e.applyWorkloads(ctx, svcWorkloads())
		require.NoError(t, err)
		require.NoError(t, e.scaleDeployment(ctx, "web", 2), "reset web to 2 replicas")
		require.NoError(t, e.WaitDeploymentsAvailable(ctx, 3*time.Minute, svcNamespace))
		return nil
	})
	sc.Step(`^every node is Ready$`, func(ctx context.Context) error {
		require.NoError(godog.T(ctx), poll(ctx, 3*time.Minute, 500*time.Millisecond, "every node Ready", func(ctx context.Context) (bool, string, error) {
			nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
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
	})
	sc.Step(`^CoreDNS is Running and Ready$`, func(ctx context.Context) error {
		require.NoError(godog.T(ctx), poll(ctx, 2*time.Minute, 500*time.Millisecond, "CoreDNS Running and Ready", func(ctx context.Context) (bool, string, error) {
			pods, err := e.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
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
	})
	sc.Step(`^no node has kube-proxy rules$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		nodes, err := e.nodeNames(ctx)
		require.NoError(t, err)
		for _, n := range nodes {
			out, _ := nodeExec(ctx, n, "iptables-save | grep -c KUBE-SVC")
			assert.Equal(t, "0", strings.TrimSpace(out), "iptables-save | grep -c KUBE-SVC on %s", n)
		}
		return nil
	})
	sc.Step(`^pod "([^"]*)" reaches "([^"]*)"$`, func(ctx context.Context, app, target string) error {
		t := godog.T(ctx)
		res, err := e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
		require.NoError(t, err)
		assert.True(t, res.Reachable, "%s -> %s: %s", app, target, res.Error)
		return nil
	})
	sc.Step(`^every "([^"]*)" pod reaches every "([^"]*)" pod on another node by pod IP$`, func(ctx context.Context, fromApp, toApp string) error {
		t := godog.T(ctx)
		froms, err := e.runningPods(ctx, "app="+fromApp)
		require.NoError(t, err)
		tos, err := e.runningPods(ctx, "app="+toApp)
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
				res, err := e.probeFromPod(ctx, &f, target)
				require.NoError(t, err)
				assert.True(t, res.Reachable, "%s (%s) -> %s (%s) %s: %s", f.Name, f.Spec.NodeName, to.Name, to.Spec.NodeName, target, res.Error)
				pairs++
			}
		}
		require.Positive(t, pairs, "no %s/%s pod pair on different nodes: the workloads should spread over the workers", fromApp, toApp)
		return nil
	})
	sc.Step(`^NodePort (\d+) answers from this host on every node$`, func(ctx context.Context, port int) error {
		t := godog.T(ctx)
		ips, err := e.nodeIPs(ctx)
		require.NoError(t, err)
		for name, ip := range ips {
			u := fmt.Sprintf("http://%s/healthz", net.JoinHostPort(ip, strconv.Itoa(port)))
			code, err := httpStatus(ctx, u)
			if assert.NoError(t, err, "GET %s (node %s) from this host", u, name) {
				assert.Equal(t, http.StatusOK, code, "GET %s (node %s)", u, name)
			}
		}
		return nil
	})
	sc.Step(`^NodePort (\d+) answers from every node on every other node$`, func(ctx context.Context, port int) error {
		t := godog.T(ctx)
		ips, err := e.nodeIPs(ctx)
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
	})
	sc.Step(`^I scale Deployment "([^"]*)" to (\d+) replicas$`, func(ctx context.Context, name string, n int) error {
		t := godog.T(ctx)
		require.NoError(t, e.scaleDeployment(ctx, name, n))
		w.Cleanup(func(ctx context.Context) error { return e.scaleDeployment(ctx, name, 2) })
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
	})
	sc.Step(`^connections from "([^"]*)" to "([^"]*)" reach exactly the (\d+) "([^"]*)" pods$`, func(ctx context.Context, fromApp, target string, n int, toApp string) error {
		t := godog.T(ctx)
		want, err := e.runningPods(ctx, "app="+toApp)
		require.NoError(t, err)
		require.Len(t, want, n)
		wantIPs := map[string]bool{}
		for _, p := range want {
			wantIPs[p.Status.PodIP] = true
		}
		require.NoError(t, poll(ctx, time.Minute, 500*time.Millisecond, fmt.Sprintf("connections to %s reach exactly %d backends", target, n), func(ctx context.Context) (bool, string, error) {
			got, err := e.backendsReached(ctx, fromApp, target, 8*n)
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
			return ok, fmt.Sprintf("reached %v, want the pods %v", gotList, keys(wantIPs)), nil
		}))
		return nil
	})
	sc.Step(`^pod "([^"]*)" is refused by "([^"]*)" within (\d+) ms$`, func(ctx context.Context, app, target string, ms int) error {
		t := godog.T(ctx)
		res, err := e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
		require.NoError(t, err)
		assert.False(t, res.Reachable, "%s -> %s must fail: the Service has no endpoints", app, target)
		assert.Contains(t, res.Error, "connection refused", "refused at once (TCP RST), not a timeout")
		assert.Less(t, res.ElapsedMs, float64(ms), "refused within %d ms", ms)
		return nil
	})
	sc.Step(`^I apply the Service "([^"]*)" with annotation "([^"]*)" set to "([^"]*)"$`, func(ctx context.Context, name, key, value string) error {
		t := godog.T(ctx)
		doc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: %s
  annotations: {%q: %q}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: 8080, protocol: TCP}]
`, name, svcNamespace, key, value)
		_, err := e.Apply(ctx, []byte(doc))
		require.NoError(t, err)
		w.Cleanup(func(ctx context.Context) error {
			err := e.Client.CoreV1().Services(svcNamespace).Delete(ctx, name, metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
		return nil
	})
	sc.Step(`^(every node reports|a node reports) a Warning Event "([^"]*)" on (Service|NetworkPolicy) "([^"]*)"$`, func(ctx context.Context, who, reason, kind, name string) error {
		t := godog.T(ctx)
		nodes, err := e.nodeNames(ctx)
		require.NoError(t, err)
		require.NoError(t, poll(ctx, 30*time.Second, 250*time.Millisecond, fmt.Sprintf("Warning %s on %s %s", reason, kind, name), func(ctx context.Context) (bool, string, error) {
			evs, err := e.Client.CoreV1().Events(svcNamespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
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
			return len(from) == len(nodes), fmt.Sprintf("events from %v of %v", keys(from), nodes), nil
		}))
		return nil
	})
	sc.Step(`^I apply the NetworkPolicy "([^"]*)" that the datapath cannot represent$`, func(ctx context.Context, name string) error {
		t := godog.T(ctx)
		// An ipBlock peer with a 1001-port range: wider than the compiler expands into exact CIDR
		// entries, so every pod it selects must deny everything (POLICY_UNREPRESENTABLE).
		doc := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: %s, namespace: %s}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
      ports: [{protocol: TCP, port: 1000, endPort: 2000}]
`, name, svcNamespace)
		rv, err := e.Apply(ctx, []byte(doc))
		require.NoError(t, err)
		w.Cleanup(func(ctx context.Context) error { return e.deleteNetworkPolicy(ctx, name) })
		_, err = e.WaitProgrammed(ctx, rv)
		require.NoError(t, err)
		return nil
	})
	sc.Step(`^I delete the NetworkPolicy "([^"]*)"$`, func(ctx context.Context, name string) error {
		t := godog.T(ctx)
		require.NoError(t, e.deleteNetworkPolicy(ctx, name))
		return nil
	})
	sc.Step(`^pod "([^"]*)" cannot reach "([^"]*)"$`, func(ctx context.Context, app, target string) error {
		t := godog.T(ctx)
		res, err := e.Probe(ctx, PodRef{Namespace: svcNamespace, Selector: "app=" + app}, target, "tcp")
		require.NoError(t, err)
		assert.False(t, res.Reachable, "%s -> %s must be denied", app, target)
		return nil
	})
	sc.Step(`^I restart the starlab agents$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		ns := helmrelease.DefaultNamespace
		before, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=starlab-agent"})
		require.NoError(t, err)
		require.NotEmpty(t, before.Items, "no agent pods in %s", ns)
		old := map[types.UID]bool{}
		for _, p := range before.Items {
			old[p.UID] = true
			require.NoError(t, e.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}))
		}
		require.NoError(t, poll(ctx, 2*time.Minute, 250*time.Millisecond, "new agent pods ready on every node", func(ctx context.Context) (bool, string, error) {
			pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=starlab-agent"})
			if err != nil {
				return false, "", err
			}
			ready := 0
			for _, p := range pods.Items {
				if !old[p.UID] && p.DeletionTimestamp == nil && kubeready.Pod(&p) {
					ready++
				}
			}
			return ready == len(before.Items) && len(pods.Items) == len(before.Items), fmt.Sprintf("%d/%d new agents ready", ready, len(before.Items)), nil
		}))
		return nil
	})
	sc.Step(`^every agent reports an endpoint for each pod on its node$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		ips, err := e.nodeIPs(ctx)
		require.NoError(t, err)
		pods, err := e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		want := map[string][]string{}
		for _, p := range pods.Items {
			if p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || p.Status.PodIP == "" {
				continue
			}
			want[p.Spec.NodeName] = append(want[p.Spec.NodeName], p.Namespace+"/"+p.Name)
		}
		for node, ip := range ips {
			st, err := agentStatus(ctx, ip)
			require.NoError(t, err)
			var got []string
			for _, ep := range st.Endpoints {
				got = append(got, ep.Pod)
			}
			assert.ElementsMatch(t, want[node], got, "endpoints the agent on %s restored", node)
		}
		return nil
	})
	sc.Step(`^I uninstall the starlab chart$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		vals, err := e.currentChartValues(ctx)
		require.NoError(t, err)
		w.Values["services.chartValues"] = vals
		// Whatever happens next, leave the shared lab with the chart installed.
		w.Cleanup(func(ctx context.Context) error { return e.reinstallChart(ctx, vals) })
		require.NoError(t, helmrelease.Uninstall(ctx, helmrelease.Options{Kubeconfig: e.Kubeconfig, Wait: true, Timeout: 2 * time.Minute, Logger: e.Log}))
		require.NoError(t, poll(ctx, time.Minute, 250*time.Millisecond, "agent pods gone", func(ctx context.Context) (bool, string, error) {
			pods, err := e.Client.CoreV1().Pods(helmrelease.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=starlab-agent"})
			if err != nil {
				return false, "", err
			}
			return len(pods.Items) == 0, fmt.Sprintf("%d agent pods left", len(pods.Items)), nil
		}))
		return nil
	})
	sc.Step(`^no node has the starlab CNI config, CNI plugin or pinned datapath$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		nodes, err := e.nodeNames(ctx)
		require.NoError(t, err)
		for _, n := range nodes {
			for _, p := range []string{"/etc/cni/net.d/05-starlab.conflist", "/opt/cni/bin/starlab-cni", "/sys/fs/bpf/starlab"} {
				out, err := nodeExec(ctx, n, "test -e "+p+" && echo present || echo absent")
				require.NoError(t, err)
				assert.Equal(t, "absent", strings.TrimSpace(out), "%s on node %s", p, n)
			}
		}
		return nil
	})
	sc.Step(`^I reinstall the starlab chart$`, func(ctx context.Context) error {
		t := godog.T(ctx)
		vals, ok := w.Values["services.chartValues"].(map[string]any)
		require.True(t, ok, "uninstall step must run first")
		require.NoError(t, e.reinstallChart(ctx, vals))
		return nil
	})
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// demoImage is the demo image `starlab up` built, read from the deployed stars demo.
func (e *Env) demoImage(ctx context.Context) (string, error) {
	for _, ns := range []string{"stars", "client", "management-ui", "shop", svcNamespace} {
		deps, err := e.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, d := range deps.Items {
			for _, c := range d.Spec.Template.Spec.Containers {
				if strings.HasPrefix(c.Image, "localhost/starlab/demo:") && c.Image != manifests.DemoImagePlaceholder {
					return c.Image, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no deployment uses a localhost/starlab/demo image: bring the lab up with `starlab up` (it deploys the demos)")
}

func (e *Env) scaleDeployment(ctx context.Context, name string, n int) error {
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
	_, err := e.Client.AppsV1().Deployments(svcNamespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", svcNamespace, name, n, err)
	}
	return nil
}

func (e *Env) runningPods(ctx context.Context, selector string) ([]corev1.Pod, error) {
	list, err := e.Client.CoreV1().Pods(svcNamespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods %s in %s: %w", selector, svcNamespace, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" && kubeready.Pod(&p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ready pod matches %s in %s", selector, svcNamespace)
	}
	return out, nil
}

// probeFromPod makes one connection from inside pod (its demo /probe endpoint).
func (e *Env) probeFromPod(ctx context.Context, pod *corev1.Pod, target string) (demo.ProbeResult, error) {
	port, err := containerPort(pod)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	local, err := e.PortForward(ctx, pod, port)
	if err != nil {
		return demo.ProbeResult{}, err
	}
	q := url.Values{"target": {target}, "protocol": {"tcp"}, "timeout": {ProbeTimeout.String()}}
	res, err := getProbe(ctx, fmt.Sprintf("http://127.0.0.1:%d/probe?%s", local, q.Encode()))
	if err != nil {
		e.dropForward(pod, port)
	}
	return res, err
}

// nodeNames lists the cluster's nodes (kind node container names).
func (e *Env) nodeNames(ctx context.Context) ([]string, error) {
	ips, err := e.nodeIPs(ctx)
	if err != nil {
		return nil, err
	}
	return keys(boolSet(ips)), nil
}

func boolSet(m map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// nodeIPs maps node name -> InternalIP.
func (e *Env) nodeIPs(ctx context.Context) (map[string]string, error) {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := map[string]string{}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out[n.Name] = a.Address
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no node has an InternalIP")
	}
	return out, nil
}

// nodeExec runs a shell command inside a kind node container.
func nodeExec(ctx context.Context, node, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "exec", node, "sh", "-c", command)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker exec %s sh -c %q: %w: %s", node, command, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func httpStatus(ctx context.Context, u string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// backendsReached makes count connections from the fromApp pod to target and returns the backend
// pod IPs they were translated to, read from the flows of the agent on the client's node.
func (e *Env) backendsReached(ctx context.Context, fromApp, target string, count int) (map[string]bool, error) {
	pods, err := e.runningPods(ctx, "app="+fromApp)
	if err != nil {
		return nil, err
	}
	pod := pods[0]
	ports := map[uint16]bool{}
	for i := 0; i < count; i++ {
		res, err := e.probeFromPod(ctx, &pod, target)
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
	flows, err := agentFlows(ctx, pod.Status.HostIP, pod.Status.PodIP)
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

// agentFlows reads the recent flows of the agent at nodeIP:4245 from source ip.
func agentFlows(ctx context.Context, nodeIP, srcIP string) ([]*flow.Flow, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := fmt.Sprintf("http://%s/v1/flows?last=5000&from-ip=%s", net.JoinHostPort(nodeIP, "4245"), url.QueryEscape(srcIP))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var out []*flow.Flow
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		f := &flow.Flow{}
		if err := dec.Decode(f); err != nil {
			return nil, fmt.Errorf("decode flows from %s: %w", u, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// currentChartValues rebuilds the values the lab installed the chart with, from the running objects.
func (e *Env) currentChartValues(ctx context.Context) (map[string]any, error) {
	ds, err := e.Client.AppsV1().DaemonSets(helmrelease.DefaultNamespace).Get(ctx, "starlab-agent", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the starlab-agent DaemonSet: %w", err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	agent := map[string]any{"image": c.Image}
	api := map[string]any{}
	for _, env := range c.Env {
		switch env.Name {
		case "KUBERNETES_SERVICE_HOST":
			api["host"] = env.Value
		case "KUBERNETES_SERVICE_PORT":
			p, err := strconv.Atoi(env.Value)
			if err != nil {
				return nil, fmt.Errorf("KUBERNETES_SERVICE_PORT %q: %w", env.Value, err)
			}
			api["port"] = p
		}
	}
	if len(api) > 0 {
		agent["apiServer"] = api
	}
	vals := map[string]any{"agent": agent}
	if d, err := e.Client.AppsV1().Deployments(helmrelease.DefaultNamespace).Get(ctx, "starlab-observer", metav1.GetOptions{}); err == nil {
		vals["observer"] = map[string]any{"image": d.Spec.Template.Spec.Containers[0].Image}
	}
	return vals, nil
}

func (e *Env) reinstallChart(ctx context.Context, vals map[string]any) error {
	_, err := helmrelease.InstallOrUpgrade(ctx, helmrelease.Options{
		Kubeconfig: e.Kubeconfig, Chart: charts.Starlab, ChartDir: "starlab", Values: vals,
		Wait: true, Timeout: 3 * time.Minute, Logger: e.Log,
	})
	if err != nil {
		return fmt.Errorf("reinstall the starlab chart: %w", err)
	}
	return nil
}

// agentStatusDoc is the part of the agent's GET /v1/status these steps read.
type agentStatusDoc struct {
	Node      string `json:"node"`
	Endpoints []struct {
		Pod string `json:"pod"`
		IP  string `json:"ip"`
	} `json:"endpoints"`
}

func agentStatus(ctx context.Context, nodeIP string) (agentStatusDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := "http://" + net.JoinHostPort(nodeIP, "4245") + "/v1/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return agentStatusDoc{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return agentStatusDoc{}, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	var st agentStatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode %s: %w", u, err)
	}
	return st, nil
}

// deleteNetworkPolicy deletes a NetworkPolicy of the services namespace and waits until every node
// programmed the deletion.
func (e *Env) deleteNetworkPolicy(ctx context.Context, name string) error {
	doc := fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\n", name, svcNamespace)
	rv, err := e.Delete(ctx, []byte(doc))
	if err != nil {
		return err
	}
	if rv > 0 {
		if _, err := e.WaitProgrammed(ctx, rv); err != nil {
			return err
		}
	}
	return nil
}
