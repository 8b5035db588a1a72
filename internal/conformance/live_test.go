package conformance

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// liveCluster is namespace shop with pods web (control port http 8080) and db (db 7000/TCP, http
// 8080), a Service db, and a policy letting only web reach db on 7000; namespace other has one pod
// that is out of scope.
func liveCluster() *fake.Clientset {
	pod := func(ns, name, ip string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	}
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	tcp := corev1.ProtocolTCP
	return fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
		pod("shop", "web", "10.244.1.5", map[string]string{"app": "web"}, http),
		pod("shop", "db", "10.244.2.6", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "db", ContainerPort: 7000, Protocol: tcp}, http),
		pod("other", "x", "10.244.1.9", map[string]string{"app": "x"}, http),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "db"}, ClusterIP: "10.96.0.70",
			Ports: []corev1.ServicePort{{Name: "db", Port: 7000, Protocol: tcp, TargetPort: intstr.FromString("db")}}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-only-web"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: 7000}}},
			}}}},
	)
}

// answerProber answers each target with reach(from, target); the local port is unique per probe.
type answerProber struct {
	reach func(from, target string) bool
	next  int
	calls map[string]int
}

func (a *answerProber) Batch(_ context.Context, from string, targets []demo.BatchTarget, _ time.Duration) ([]demo.ProbeResult, error) {
	out := make([]demo.ProbeResult, len(targets))
	for i, t := range targets {
		a.next++
		a.calls[from+" "+t.Target]++
		out[i] = demo.ProbeResult{Target: t.Target, Protocol: t.Protocol, Reachable: a.reach(from, t.Target), LocalAddr: "0.0.0.0:" + strconv.Itoa(40000+a.next)}
	}
	return out, nil
}

// serialProber wraps answerProber for ProbeAll's concurrent batches.
type serialProber struct {
	mu chan struct{}
	p  *answerProber
}

func (s serialProber) Batch(ctx context.Context, from string, targets []demo.BatchTarget, timeout time.Duration) ([]demo.ProbeResult, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.p.Batch(ctx, from, targets, timeout)
}

func TestPlanLiveScopeAndPorts(t *testing.T) {
	cl, err := ReadCluster(context.Background(), liveCluster(), nil)
	require.NoError(t, err)
	o, err := oracle.New(cl)
	require.NoError(t, err)
	plan, err := PlanLive(o, []string{"shop"}, AllModes())
	require.NoError(t, err)
	var got []string
	for i, p := range plan.Probes {
		got = append(got, p.Mode+" "+p.From+" -> "+p.To+" "+string(p.Protocol)+"/"+strconv.Itoa(int(p.Port))+" "+p.Dst+" "+p.Backend+" "+strconv.FormatBool(plan.Verdicts[i].Allowed))
	}
	assert.Equal(t, []string{
		"pod-ip shop/db -> shop/web TCP/8080 10.244.1.5:8080 10.244.1.5:8080 true",
		"pod-ip shop/web -> shop/db TCP/7000 10.244.2.6:7000 10.244.2.6:7000 true",
		"pod-ip shop/web -> shop/db TCP/8080 10.244.2.6:8080 10.244.2.6:8080 false",
		"service-ip shop/web -> shop/db TCP/7000 10.96.0.70:7000 10.244.2.6:7000 true",
	}, got, "the pod of namespace other is out of scope; db does not probe its own Service")
	assert.Equal(t, map[string]int{"shop/web": 8080, "shop/db": 8080}, plan.Ports, "the port named http, not db's first port")

	_, err = PlanLive(o, []string{"nope"}, AllModes())
	require.ErrorContains(t, err, "namespace nope does not exist")
}

func TestLiveCheckNamesEveryWrongCell(t *testing.T) {
	// A CNI that enforces nothing: every connection succeeds.
	ap := &answerProber{reach: func(string, string) bool { return true }, calls: map[string]int{}}
	c := &LiveCheck{Client: liveCluster(), Namespaces: []string{"shop"}, Prober: serialProber{make(chan struct{}, 1), ap}, Timeout: time.Second}
	res, err := c.Run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, []string{"shop/db-only-web"}, res.Policies)
	require.Equal(t, 1, res.Wrong)
	assert.Equal(t, 5, res.Probes, "4 connections and the wrong one confirmed once more")
	assert.Equal(t, 2, ap.calls["shop/web 10.244.2.6:8080"])
	var b bytes.Buffer
	WriteLiveTables(&b, res)
	out := b.String()
	assert.Contains(t, out, "WRONG pod-ip shop/web -> shop/db TCP/8080: probe: allowed, expected denied")
	assert.Contains(t, out, "(confirmed by a second try)")
	assert.Contains(t, out, "oracle: ")
	assert.Contains(t, out, "default deny")
	// the table row of web in the TCP/8080 table marks db's cell wrong: expected X, probed .
	assert.Regexp(t, `shop/web\s+X\.-\*`, out)
}

// flowsFor fabricates the flows the Starlab observer reports for the probes the prober made: an
// allowed connection is forwarded at both ends, a denied one dropped at the destination's ingress
// naming the policies that select it.
type fakeFlows struct {
	flows []*flow.Flow
}

func (f *fakeFlows) Flows(_ context.Context, _ flow.Query, emit func(*flow.Flow) error) error {
	for _, fl := range f.flows {
		if err := emit(fl); err != nil {
			return err
		}
	}
	return nil
}

func TestLiveCheckWithFlows(t *testing.T) {
	cs := liveCluster()
	ff := &fakeFlows{}
	denied := map[string]bool{"10.244.2.6:8080": true}
	ap := &answerProber{calls: map[string]int{}}
	ips := map[string]string{"shop/web": "10.244.1.5", "shop/db": "10.244.2.6"}
	ap.reach = func(from, target string) bool {
		// record the flows of the probe about to be answered (its local port is 40000+next)
		sport := uint16(40000 + ap.next)
		host, port, _ := net.SplitHostPort(target)
		dport, _ := strconv.Atoi(port)
		backend, bport := host, uint16(dport)
		if strings.HasPrefix(host, "10.96.") {
			backend, bport = "10.244.2.6", 7000
		}
		mk := func(dir flow.TrafficDirection, v flow.Verdict, by ...flow.Policy) *flow.Flow {
			f := &flow.Flow{IP: flow.IP{Source: ips[from], Destination: backend, OrigDestination: host}, L4: flow.L4{Protocol: "TCP", SourcePort: sport, DestinationPort: bport, OrigDestinationPort: uint16(dport)},
				TrafficDirection: dir, Verdict: v}
			if v == flow.VerdictDropped {
				f.DropReasonDesc, f.DeniedBy = flow.DropPolicyDenied, by
			} else {
				f.AllowedBy = by
			}
			return f
		}
		if denied[target] {
			ff.flows = append(ff.flows, mk(flow.DirectionEgress, flow.VerdictForwarded),
				mk(flow.DirectionIngress, flow.VerdictDropped, flow.Policy{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "db-only-web"}))
			return false
		}
		var by []flow.Policy
		if backend == "10.244.2.6" {
			by = []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "db-only-web"}}
		}
		ff.flows = append(ff.flows, mk(flow.DirectionEgress, flow.VerdictForwarded), mk(flow.DirectionIngress, flow.VerdictForwarded, by...))
		return true
	}
	c := &LiveCheck{Client: cs, Namespaces: []string{"shop"}, Prober: serialProber{make(chan struct{}, 1), ap}, Flows: ff, Timeout: time.Second, FlowWait: time.Second}
	res, err := c.Run(context.Background())
	require.NoError(t, err)
	var b bytes.Buffer
	WriteLiveTables(&b, res)
	assert.Zero(t, res.Wrong, b.String())
	for _, cell := range res.Cells {
		require.NotNil(t, cell.Observed, "%s -> %s", cell.From, cell.To)
	}

	// Flows naming a policy the oracle does not name as allowing are wrong cells.
	for _, f := range ff.flows {
		for i := range f.AllowedBy {
			f.AllowedBy[i].Name = "someone-else"
		}
	}
	ff.flows, ap.reach = nil, func(from, target string) bool {
		ok := !denied[target]
		sport := uint16(40000 + ap.next)
		host, port, _ := net.SplitHostPort(target)
		dport, _ := strconv.Atoi(port)
		f := &flow.Flow{IP: flow.IP{Source: ips[from], Destination: host}, L4: flow.L4{Protocol: "TCP", SourcePort: sport, DestinationPort: uint16(dport)},
			TrafficDirection: flow.DirectionIngress, Verdict: flow.VerdictForwarded,
			AllowedBy: []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "shop", Name: "someone-else"}}}
		if ok && !strings.HasPrefix(host, "10.96.") {
			ff.flows = append(ff.flows, f)
		}
		return ok
	}
	res, err = c.Run(context.Background())
	require.NoError(t, err)
	b.Reset()
	WriteLiveTables(&b, res)
	out := b.String()
	assert.Contains(t, out, "WRONG pod-ip shop/web -> shop/db TCP/7000: flows: allowed_by shop/someone-else, the oracle's allowing rules are in [shop/db-only-web]")
	assert.Contains(t, out, "WRONG service-ip shop/web -> shop/db TCP/7000: flows: unknown, expected allowed")
	assert.Contains(t, out, "WRONG pod-ip shop/web -> shop/db TCP/8080: flows: unknown, expected denied")
}
