package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cucumber/godog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/internal/flow"
)

// kindNetwork is the docker network kind puts every lab's nodes on.
const kindNetwork = "kind"

// kprOutside is a client outside the nodes: a container of this test on the kind network, with
// routes of its own to a Service's external addresses through a node (as a router in front of a
// cluster would have).
type kprOutside struct {
	container string
	ip        string
	created   time.Time
}

// kprOutsideSteps lists the steps of the external address, session affinity and hostNetwork
// scenarios of features/services.feature.
func (s *servicesSteps) kprOutsideSteps() []step {
	return []step{
		{`^a client container "([^"]*)" on the kind network$`, s.kprOutsideClient},
		{`^I set an external IP of the kind network on the Service "([^"]*)"$`, s.kprSetExternalIP},
		{`^a LoadBalancer controller gives the Service "([^"]*)" an ingress IP of the kind network$`, s.kprSetLBIngress},
		{`^I set loadBalancerSourceRanges of the Service "([^"]*)" to the address of the client container "([^"]*)"$`, s.kprSetSourceRanges},
		{`^the client container "([^"]*)" (reaches|cannot reach) the external address of Service "([^"]*)" on port (\d+) through every node$`, s.kprOutsideDial},
		{`^the observer shows a DROPPED flow from the client container "([^"]*)" to the external address of Service "([^"]*)" with drop reason ([A-Z_]+)$`, s.kprOutsideDropFlow},
		{`^connections from the parity pod "([^"]*)" to the ClusterIP of Service "([^"]*)" (within|each after) its affinity timeout reach (one backend|more than one backend)$`, s.kprAffinityFromPod},
		{`^connections from this host to the NodePort of Service "([^"]*)" (within|each after) its affinity timeout reach (one backend|more than one backend)$`, s.kprAffinityFromHost},
		{`^connections from each "([^"]*)" pod to "([^"]*)" reach only the "([^"]*)" pod on its own node$`, s.kprOnlyLocalBackend},
	}
}

// docker runs the docker CLI and returns its trimmed standard output.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// kprOutsideClient starts a container on the kind network from the lab's node image (it has ip
// and curl) that only sleeps, with NET_ADMIN for its routes, and deletes it at the scenario's end.
func (s *servicesSteps) kprOutsideClient(ctx context.Context, name string) error {
	t := godog.T(ctx)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	image, err := docker(ctx, "inspect", "-f", "{{.Config.Image}}", nodes[0])
	require.NoError(t, err, "the node image of node %s", nodes[0])
	ctr := s.e.LabName + "-kpr-" + name
	// a container left behind by an interrupted run
	if _, err := docker(ctx, "rm", "-f", ctr); err != nil {
		return fmt.Errorf("remove an old client container: %w", err)
	}
	_, err = docker(ctx, "run", "-d", "--name", ctr, "--network", kindNetwork, "--cap-add", "NET_ADMIN",
		"--label", "starlab.dev/scenario-client="+s.e.LabName, "--entrypoint", "sleep", image, "infinity")
	require.NoError(t, err)
	s.w.Cleanup(func(ctx context.Context) error {
		_, err := docker(ctx, "rm", "-f", ctr)
		return err
	})
	ip, err := docker(ctx, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+kindNetwork+`").IPAddress}}`, ctr)
	require.NoError(t, err)
	_, err = netip.ParseAddr(ip)
	require.NoError(t, err, "address of container %s on the %s network", ctr, kindNetwork)
	if s.kprOutside == nil {
		s.kprOutside = map[string]*kprOutside{}
	}
	s.kprOutside[name] = &kprOutside{container: ctr, ip: ip, created: time.Now()}
	return nil
}

// kprKindAddress returns an address of the kind network's IPv4 subnet that docker will not hand
// out soon (counted down from the end of the subnet, as a LoadBalancer controller on kind takes
// addresses of that network), the n-th of this scenario. Traffic to it stays on the kind network:
// a node that does not serve it has only the on-link route for it.
func kprKindAddress(ctx context.Context, n int) (string, error) {
	out, err := docker(ctx, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", kindNetwork)
	if err != nil {
		return "", err
	}
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			a, err := kprAddressFromEnd(p, n)
			if err != nil {
				return "", fmt.Errorf("the %s network: %w", kindNetwork, err)
			}
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("the %s network has no IPv4 subnet (subnets: %q)", kindNetwork, out)
}

// kprAddressFromEnd is the (10+n)-th address before the broadcast address of p, an IPv4 subnet of
// /24 or larger (docker allocates from its start).
func kprAddressFromEnd(p netip.Prefix, n int) (netip.Addr, error) {
	if !p.Addr().Is4() || p.Bits() > 24 || n < 0 || n > 200 {
		return netip.Addr{}, fmt.Errorf("subnet %s, address %d: want an IPv4 subnet of /24 or larger and up to 200 addresses", p, n)
	}
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(1)<<(32-p.Bits()) - 1 - 10 - uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// kprNewExternal picks the next external address of the scenario for Service name.
func (s *servicesSteps) kprNewExternal(ctx context.Context, name string) string {
	t := godog.T(ctx)
	if s.kprExternal == nil {
		s.kprExternal = map[string]string{}
	}
	ip, err := kprKindAddress(ctx, len(s.kprExternal))
	require.NoError(t, err)
	s.kprExternal[name] = ip
	return ip
}

func (s *servicesSteps) kprPatchService(ctx context.Context, name, patch string, subresources ...string) error {
	_, err := s.e.Client.CoreV1().Services(kprNamespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, subresources...)
	if err != nil {
		return fmt.Errorf("patch Service %s/%s with %s: %w", kprNamespace, name, patch, err)
	}
	return nil
}

func (s *servicesSteps) kprSetExternalIP(ctx context.Context, name string) error {
	ip := s.kprNewExternal(ctx, name)
	require.NoError(godog.T(ctx), s.kprPatchService(ctx, name, fmt.Sprintf(`{"spec":{"externalIPs":[%q]}}`, ip)))
	s.w.Cleanup(func(ctx context.Context) error { return s.kprPatchService(ctx, name, `{"spec":{"externalIPs":null}}`) })
	return nil
}

// kprSetLBIngress does what a LoadBalancer controller does: writes the address it gave the
// Service into status.loadBalancer.ingress (the status subresource).
func (s *servicesSteps) kprSetLBIngress(ctx context.Context, name string) error {
	t := godog.T(ctx)
	svc, err := s.e.Client.CoreV1().Services(kprNamespace).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, corev1.ServiceTypeLoadBalancer, svc.Spec.Type, "Service %s", name)
	ip := s.kprNewExternal(ctx, name)
	require.NoError(t, s.kprPatchService(ctx, name, fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"}]}}}`, ip), "status"))
	s.w.Cleanup(func(ctx context.Context) error {
		return s.kprPatchService(ctx, name, `{"status":{"loadBalancer":{"ingress":null}}}`, "status")
	})
	return nil
}

func (s *servicesSteps) kprOutsideOf(ctx context.Context, name string) *kprOutside {
	c := s.kprOutside[name]
	require.NotNil(godog.T(ctx), c, "no client container %q was started in this scenario", name)
	return c
}

func (s *servicesSteps) kprExternalOf(ctx context.Context, name string) string {
	ip := s.kprExternal[name]
	require.NotEmpty(godog.T(ctx), ip, "Service %q got no external address in this scenario", name)
	return ip
}

func (s *servicesSteps) kprSetSourceRanges(ctx context.Context, name, client string) error {
	c := s.kprOutsideOf(ctx, client)
	require.NoError(godog.T(ctx), s.kprPatchService(ctx, name, fmt.Sprintf(`{"spec":{"loadBalancerSourceRanges":[%q]}}`, c.ip+"/32")))
	s.w.Cleanup(func(ctx context.Context) error {
		return s.kprPatchService(ctx, name, `{"spec":{"loadBalancerSourceRanges":null}}`)
	})
	return nil
}

// kprOutsideDial routes the Service's external address through each node in turn in the client
// container and makes an HTTP request to it: reaches (HTTP 200) or cannot reach (curl times out:
// the packets are dropped, nothing answers, not even a refusal). Polled for kprConverge, as the
// agents take the Service change asynchronously.
func (s *servicesSteps) kprOutsideDial(ctx context.Context, client, outcome, name string, port int) error {
	t := godog.T(ctx)
	c := s.kprOutsideOf(ctx, client)
	vip := s.kprExternalOf(ctx, name)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	addr := net.JoinHostPort(vip, strconv.Itoa(port))
	for _, node := range nodes {
		cmd := fmt.Sprintf("ip route replace %s/32 via %s && curl -s -o /dev/null -m 2 -w '%%{http_code} %%{time_total}' http://%s/healthz; echo \" $?\"", vip, ips[node], addr)
		var last string
		assert.NoError(t, poll(ctx, kprConverge, 250*time.Millisecond, fmt.Sprintf("%s %s %s via %s", client, outcome, addr, node), func(ctx context.Context) (bool, string, error) {
			out, err := docker(ctx, "exec", c.container, "sh", "-c", cmd)
			if err != nil {
				return false, "", err
			}
			last = out
			var code string
			var secs float64
			var rc int
			if _, err := fmt.Sscanf(out, "%s %g %d", &code, &secs, &rc); err != nil {
				return false, out, nil
			}
			if outcome == "reaches" {
				return code == "200", out, nil
			}
			return rc == 28, out, nil // CURLE_OPERATION_TIMEDOUT
		}), "from %s (%s) to %s of Service %s routed through node %s (%s): last curl (code seconds exit) %s", client, c.ip, addr, name, node, ips[node], last)
	}
	return nil
}

// kprOutsideDropFlow looks for the flow of a dropped packet from the client container to the
// Service's external address in the observer (merged from every agent).
func (s *servicesSteps) kprOutsideDropFlow(ctx context.Context, client, name, reason string) error {
	t := godog.T(ctx)
	c := s.kprOutsideOf(ctx, client)
	vip := s.kprExternalOf(ctx, name)
	q := flow.Query{Since: c.created, Allow: []flow.Filter{{SourceIP: []string{c.ip}}}}
	var seen []string
	var found *flow.Flow
	err := poll(ctx, 15*time.Second, 500*time.Millisecond, "a DROPPED flow "+reason+" from "+c.ip, func(ctx context.Context) (bool, string, error) {
		fl, err := s.e.Observe(ctx, q)
		if err != nil {
			return false, "", err
		}
		seen = seen[:0]
		for _, f := range fl {
			seen = append(seen, FormatFlow(f))
			if f.Verdict == flow.VerdictDropped && f.DropReasonDesc == reason && (f.IP.Destination == vip || f.IP.OrigDestination == vip) {
				found = f
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("%d flows from %s", len(fl), c.ip), nil
	})
	assert.NoError(t, err, "flows from %s (%s) since it started:\n%s", client, c.ip, strings.Join(seen, "\n"))
	if found != nil {
		t.Logf("dropped: %s", FormatFlow(found))
	}
	return nil
}

// kprServiceBackends returns the Service's ready pods (its selector) and its affinity timeout.
func (s *servicesSteps) kprServiceBackends(ctx context.Context, name string) (*corev1.Service, []corev1.Pod, time.Duration) {
	t := godog.T(ctx)
	svc, err := s.e.Client.CoreV1().Services(kprNamespace).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, corev1.ServiceAffinityClientIP, svc.Spec.SessionAffinity, "Service %s has no session affinity", name)
	cfg := svc.Spec.SessionAffinityConfig
	require.True(t, cfg != nil && cfg.ClientIP != nil && cfg.ClientIP.TimeoutSeconds != nil, "Service %s sets no affinity timeoutSeconds", name)
	pods, err := s.e.readyPods(ctx, kprNamespace, labels.SelectorFromSet(svc.Spec.Selector).String())
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(pods), 3, "Service %s needs a few ready backends to show a new choice", name)
	return svc, pods, time.Duration(*cfg.ClientIP.TimeoutSeconds) * time.Second
}

// kprAffinityConnects makes the connections of an affinity check and returns the backend of each.
// connect makes one connection and returns a key; resolve turns keys into backends (at once for a
// client that learns its backend, from flows for a pod). within: 8 connections back to back, each
// started less than the timeout after the one before (checked); each after: up to 12 connections,
// each started more than the timeout (plus half of it, at most 1 s) after the one before, until two
// backends differ.
func kprAffinityConnects(ctx context.Context, mode string, timeout time.Duration, connect func(context.Context) (string, error),
	resolve func(context.Context, []string) ([]string, error)) ([]string, error) {
	if mode == "within" {
		var keys []string
		var prev time.Time
		for i := 0; i < 8; i++ {
			start := time.Now()
			if i > 0 && start.Sub(prev) >= timeout {
				return nil, fmt.Errorf("connection %d started %s after the one before, not within the affinity timeout %s (machine too slow?)", i+1, start.Sub(prev).Round(time.Millisecond), timeout)
			}
			prev = start
			k, err := connect(ctx)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		return resolve(ctx, keys)
	}
	var got []string
	for i := 0; i < 12; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return got, ctx.Err()
			case <-time.After(timeout + min(time.Second, timeout/2)):
			}
		}
		k, err := connect(ctx)
		if err != nil {
			return got, err
		}
		b, err := resolve(ctx, []string{k})
		if err != nil {
			return got, err
		}
		got = append(got, b...)
		if len(distinct(got)) > 1 {
			break
		}
	}
	return got, nil
}

func distinct(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// kprAffinityVerdict checks the backends the connections reached: all of them one of want
// ("one backend"), or more than one, each of want.
func kprAffinityVerdict(t godog.TestingT, got []string, want map[string]bool, outcome, what string) {
	for _, b := range got {
		assert.True(t, want[b], "%s: backend %s is not one of the Service's ready pods %v", what, b, sortedKeys(want))
	}
	if outcome == "one backend" {
		assert.Len(t, distinct(got), 1, "%s: the connections reached %v", what, got)
	} else {
		assert.Greater(t, len(distinct(got)), 1, "%s: the connections reached %v", what, got)
	}
}

// kprAffinityFromPod connects from the client pod to the Service's ClusterIP; the backend of each
// connection is read from the flows of the client's agent (its translated destination).
func (s *servicesSteps) kprAffinityFromPod(ctx context.Context, app, name, mode, outcome string) error {
	t := godog.T(ctx)
	svc, backends, timeout := s.kprServiceBackends(ctx, name)
	pods := s.kprPods(ctx, app, true)
	require.NotEmpty(t, pods, "no ready %s pod", app)
	client := pods[0]
	target := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	s.kprProbe(ctx, &client, "reaches", target)
	want := map[string]bool{}
	for _, p := range backends {
		want[p.Status.PodIP] = true
	}
	connect := func(ctx context.Context) (string, error) {
		res, err := s.e.probeFromPod(ctx, &client, target)
		if err != nil {
			return "", err
		}
		if !res.Reachable {
			return "", fmt.Errorf("%s -> %s: %s", client.Name, target, res.Error)
		}
		_, port, err := net.SplitHostPort(res.LocalAddr)
		if err != nil {
			return "", fmt.Errorf("probe local address %q: %w", res.LocalAddr, err)
		}
		return port, nil
	}
	resolve := func(ctx context.Context, keys []string) ([]string, error) {
		ports := make([]uint16, len(keys))
		for i, k := range keys {
			n, err := strconv.ParseUint(k, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("source port %q: %w", k, err)
			}
			ports[i] = uint16(n)
		}
		dst, err := s.e.translatedDestinations(ctx, &client, ports)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(ports))
		for i, p := range ports {
			out[i] = dst[p]
		}
		return out, nil
	}
	got, err := kprAffinityConnects(ctx, mode, timeout, connect, resolve)
	require.NoError(t, err)
	kprAffinityVerdict(t, got, want, outcome, fmt.Sprintf("%s -> %s (timeout %s) %s", client.Name, target, timeout, mode))
	return nil
}

// kprAffinityFromHost makes HTTP requests from this host to the Service's NodePort on one node
// (the first by name: the control plane, so that every backend is on another node), each on a
// new connection; the backend answers its name (GET /hostname).
func (s *servicesSteps) kprAffinityFromHost(ctx context.Context, name, mode, outcome string) error {
	t := godog.T(ctx)
	svc, backends, timeout := s.kprServiceBackends(ctx, name)
	require.NotZero(t, svc.Spec.Ports[0].NodePort, "Service %s has no NodePort", name)
	nodes, err := s.e.nodeNames(ctx)
	require.NoError(t, err)
	ips, err := s.e.nodeIPs(ctx)
	require.NoError(t, err)
	u := fmt.Sprintf("http://%s/hostname", net.JoinHostPort(ips[nodes[0]], strconv.Itoa(int(svc.Spec.Ports[0].NodePort))))
	want := map[string]bool{}
	for _, p := range backends {
		want[p.Name] = true
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	hc := &http.Client{Timeout: 3 * time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	connect := func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", fmt.Errorf("request %s: %w", u, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", u, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: status %d, body %q, %v", u, resp.StatusCode, b, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	require.NoError(t, poll(ctx, kprConverge, 250*time.Millisecond, "GET "+u, func(ctx context.Context) (bool, string, error) {
		_, err := connect(ctx)
		return err == nil, fmt.Sprint(err), nil
	}))
	same := func(_ context.Context, keys []string) ([]string, error) { return keys, nil }
	got, err := kprAffinityConnects(ctx, mode, timeout, connect, same)
	require.NoError(t, err)
	kprAffinityVerdict(t, got, want, outcome, fmt.Sprintf("this host -> %s (node %s, timeout %s) %s", u, nodes[0], timeout, mode))
	return nil
}

// kprOnlyLocalBackend makes connections from each client pod to target and checks, from the flows
// of the client's agent, that every one went to the pod of app on the client's own node (for
// hostNetwork backends: the node's address).
func (s *servicesSteps) kprOnlyLocalBackend(ctx context.Context, app, target, backendApp string) error {
	t := godog.T(ctx)
	clients := s.kprPods(ctx, app, true)
	require.NotEmpty(t, clients, "no ready %s pod", app)
	local := map[string]string{}
	for _, p := range s.kprPods(ctx, backendApp, true) {
		local[p.Spec.NodeName] = p.Status.PodIP
	}
	for _, c := range clients {
		want := local[c.Spec.NodeName]
		require.NotEmpty(t, want, "no ready %s pod on node %s, next to %s", backendApp, c.Spec.NodeName, c.Name)
		s.kprProbe(ctx, &c, "reaches", target)
		var ports []uint16
		for i := 0; i < 6; i++ {
			res, err := s.e.probeFromPod(ctx, &c, target)
			require.NoError(t, err)
			require.True(t, res.Reachable, "%s -> %s: %s", c.Name, target, res.Error)
			_, port, err := net.SplitHostPort(res.LocalAddr)
			require.NoError(t, err, "probe local address %q", res.LocalAddr)
			n, err := strconv.ParseUint(port, 10, 16)
			require.NoError(t, err)
			ports = append(ports, uint16(n))
		}
		dst, err := s.e.translatedDestinations(ctx, &c, ports)
		require.NoError(t, err)
		for _, p := range ports {
			assert.Equal(t, want, dst[p], "%s (node %s) -> %s, source port %d: the %s pod of its own node is %s", c.Name, c.Spec.NodeName, target, p, backendApp, want)
		}
	}
	return nil
}

// translatedDestinations reads, from the flows of the agent on pod's node, the translated
// destination (the Service backend) of each TCP connection pod made from the given source ports,
// waiting up to 10 s for every one to be recorded.
func (e *Env) translatedDestinations(ctx context.Context, pod *corev1.Pod, ports []uint16) (map[uint16]string, error) {
	want := map[uint16]bool{}
	for _, p := range ports {
		want[p] = true
	}
	got := map[uint16]string{}
	err := poll(ctx, 10*time.Second, 250*time.Millisecond, fmt.Sprintf("translated flows of %d connections of %s", len(ports), pod.Name), func(ctx context.Context) (bool, string, error) {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		flows, err := agentClient(pod.Status.HostIP).AllFlows(fctx, flow.Query{Last: 5000,
			Allow: []flow.Filter{{SourceIP: []string{pod.Status.PodIP}, Protocol: []string{flow.ProtoTCP}}}})
		if err != nil {
			return false, "", err
		}
		for _, f := range flows {
			if f.IP.Source != pod.Status.PodIP || !want[f.L4.SourcePort] || f.IP.OrigDestination == "" || f.IsReply {
				continue
			}
			got[f.L4.SourcePort] = f.IP.Destination
		}
		return len(got) == len(want), fmt.Sprintf("%d of %d connections found", len(got), len(want)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("the agent on %s: %w", pod.Spec.NodeName, err)
	}
	return got, nil
}
