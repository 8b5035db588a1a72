package conformance

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/oracle"
)

// ReadCluster reads the live cluster as the oracle's input: every namespace, the nodes, the pods that
// have not finished, the Services, the NetworkPolicies and, when np is not nil, the
// ClusterNetworkPolicies (none when their CRD is not installed).
func ReadCluster(ctx context.Context, cs kubernetes.Interface, np npclient.Interface) (oracle.Cluster, error) {
	var c oracle.Cluster
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("list nodes: %w", err)
	}
	for i := range nodes.Items {
		c.Nodes = append(c.Nodes, oracle.NodeFromK8s(&nodes.Items[i]))
	}
	if c.ClusterPolicies, err = ReadClusterPolicies(ctx, np); err != nil {
		return c, err
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("list namespaces: %w", err)
	}
	for i := range nss.Items {
		c.Namespaces = append(c.Namespaces, oracle.NamespaceFromK8s(&nss.Items[i]))
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("list pods: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		c.Pods = append(c.Pods, oracle.PodFromK8s(p))
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		c.Services = append(c.Services, oracle.ServiceFromK8s(&svcs.Items[i]))
	}
	nps, err := cs.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return c, fmt.Errorf("list networkpolicies: %w", err)
	}
	for i := range nps.Items {
		c.Policies = append(c.Policies, &nps.Items[i])
	}
	return c, nil
}

// ReadClusterPolicies lists the ClusterNetworkPolicies; none when np is nil or the CRD is not installed.
func ReadClusterPolicies(ctx context.Context, np npclient.Interface) ([]*policyv1beta1.ClusterNetworkPolicy, error) {
	if np == nil {
		return nil, nil
	}
	list, err := np.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list clusternetworkpolicies: %w", err)
	}
	out := make([]*policyv1beta1.ClusterNetworkPolicy, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// DemoControlPort is the port of pod p where the demo serves POST /probe/batch: the container
// port named control, http or probe (in that order), else its first TCP port.
func DemoControlPort(p *oracle.Pod) (int, bool) {
	for _, name := range []string{"control", "http", "probe"} {
		for _, cp := range p.Ports {
			if cp.Name == name && cp.Protocol == corev1.ProtocolTCP {
				return int(cp.Port), true
			}
		}
	}
	for _, cp := range p.Ports {
		if cp.Protocol == corev1.ProtocolTCP {
			return int(cp.Port), true
		}
	}
	return 0, false
}

// LivePlan is what a live check probes: from every pod of the scope to every other pod of the
// scope on each port it declares (pod-ip), and to each Service of the scope on each of its ports
// (service-ip), with the oracle's verdict for each connection.
type LivePlan struct {
	Probes   []Probe
	Verdicts []oracle.Verdict // one per probe
	// Ports are the demo control ports of the source pods (ns/pod -> port).
	Ports map[string]int
	// Skipped says what the plan leaves out and why (SCTP ports, Services without backends).
	Skipped []string
}

// probedProtocols are what the live check probes. The demo probe also dials SCTP (protocol sctp,
// ListenSCTP), but SCTP stays out until the datapath parses SCTP ports and the nodes' kernels
// have SCTP.
func probedProtocols() []corev1.Protocol {
	return []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}
}

// PlanLive plans a live check of the pods and Services in namespaces, in modes (pod-ip,
// service-ip). Pods without an IP (pending) or on the host network are left out.
func PlanLive(o *oracle.Oracle, namespaces, modes []string) (*LivePlan, error) {
	for _, ns := range namespaces {
		if !o.HasNamespace(ns) {
			return nil, fmt.Errorf("namespace %s does not exist in the cluster", ns)
		}
	}
	c := o.Cluster()
	var pods []*oracle.Pod
	for i := range c.Pods {
		p := &c.Pods[i]
		if slices.Contains(namespaces, p.Namespace) && p.IP.IsValid() && !p.IPAssigned && !p.HostNetwork {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Ref() < pods[j].Ref() })
	var svcs []*oracle.Service
	for i := range c.Services {
		s := &c.Services[i]
		if slices.Contains(namespaces, s.Namespace) && s.ClusterIP.IsValid() {
			svcs = append(svcs, s)
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Ref() < svcs[j].Ref() })
	if len(pods) < 2 {
		return nil, fmt.Errorf("namespaces %v hold %d running pods with an IP: a reachability check needs at least two", namespaces, len(pods))
	}
	plan := &LivePlan{Ports: map[string]int{}}
	skipped := map[string]bool{}
	skip := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !skipped[msg] {
			skipped[msg] = true
			plan.Skipped = append(plan.Skipped, msg)
		}
	}
	add := func(p Probe) error {
		sns, sname := splitRef(p.From)
		dst := oracle.PodEndpoint(splitRef(p.To))
		if p.Mode == ModeServiceIP {
			dst = oracle.ServiceEndpoint(splitRef(p.To))
		}
		v, err := o.Evaluate(oracle.PodEndpoint(sns, sname), dst, p.Port, p.Protocol)
		if err != nil {
			return fmt.Errorf("oracle %s -> %s %s/%d: %w", p.From, p.To, p.Protocol, p.Port, err)
		}
		plan.Probes = append(plan.Probes, p)
		plan.Verdicts = append(plan.Verdicts, v)
		return nil
	}
	for _, src := range pods {
		port, ok := DemoControlPort(src)
		if !ok {
			return nil, fmt.Errorf("pod %s declares no TCP container port: the reachability check probes from inside each pod through the Starlab demo's POST /probe/batch, so every pod of %v must run the demo image", src.Ref(), namespaces)
		}
		plan.Ports[src.Ref()] = port
		for _, mode := range modes {
			switch mode {
			case ModePodIP:
				for _, dst := range pods {
					if dst.Ref() == src.Ref() {
						continue
					}
					for _, cp := range dst.Ports {
						if !slices.Contains(probedProtocols(), cp.Protocol) {
							skip("%s %s/%d: %s is not probed yet", dst.Ref(), cp.Protocol, cp.Port, cp.Protocol)
							continue
						}
						addr := net.JoinHostPort(dst.IP.String(), strconv.Itoa(int(cp.Port)))
						if err := add(Probe{Mode: mode, From: src.Ref(), To: dst.Ref(), Port: cp.Port, Protocol: cp.Protocol, Dst: addr, Backend: addr, SrcIP: src.IP.String()}); err != nil {
							return nil, err
						}
					}
				}
			case ModeServiceIP:
				for _, svc := range svcs {
					backends := o.Backends(svc)
					if len(backends) == 0 {
						skip("service %s has no backend pods", svc.Ref())
						continue
					}
					if slices.ContainsFunc(backends, func(b *oracle.Pod) bool { return b.Ref() == src.Ref() }) {
						continue // a pod reaching itself through its Service
					}
					for _, sp := range svc.Ports {
						if !slices.Contains(probedProtocols(), sp.Protocol) {
							skip("service %s %s/%d: %s is not probed yet", svc.Ref(), sp.Protocol, sp.Port, sp.Protocol)
							continue
						}
						p := Probe{Mode: mode, From: src.Ref(), To: svc.Ref(), Port: sp.Port, Protocol: sp.Protocol,
							Dst: net.JoinHostPort(svc.ClusterIP.String(), strconv.Itoa(int(sp.Port))), SrcIP: src.IP.String()}
						for _, b := range backends {
							if tp, ok := serviceTargetPort(sp, b); ok {
								p.backends = append(p.backends, net.JoinHostPort(b.IP.String(), strconv.Itoa(int(tp))))
							}
						}
						if len(p.backends) == 1 {
							p.Backend, p.backends = p.backends[0], nil
						}
						if err := add(p); err != nil {
							return nil, err
						}
					}
				}
			default:
				return nil, fmt.Errorf("probe mode %q: a live check uses %s or %s", mode, ModePodIP, ModeServiceIP)
			}
		}
	}
	return plan, nil
}

// serviceTargetPort is the port of backend b that Service port sp forwards to.
func serviceTargetPort(sp oracle.ServicePort, b *oracle.Pod) (int32, bool) {
	switch {
	case sp.TargetPort.StrVal != "":
		for _, cp := range b.Ports {
			if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
				return cp.Port, true
			}
		}
		return 0, false
	case sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal, true
	}
	return sp.Port, true
}

func splitRef(ref string) (string, string) {
	ns, name, _ := strings.Cut(ref, "/")
	return ns, name
}

// LiveCheck checks the reachability of the pods and Services of some namespaces of a live cluster
// against the policies it holds: the oracle's expectation, real probes from inside the pods, and
// (with Flows) the observer's flows of exactly those connections.
type LiveCheck struct {
	Client kubernetes.Interface
	// PolicyClient reads ClusterNetworkPolicies (nil: the oracle sees NetworkPolicies only).
	PolicyClient npclient.Interface
	Namespaces   []string
	Modes        []string // default pod-ip and service-ip
	// Forward opens the port-forwards to the pods' demo control ports; Prober, when set, is used
	// instead (tests).
	Forward  Forwarder
	Prober   Prober
	Flows    FlowSource // nil: probes only
	Timeout  time.Duration
	FlowWait time.Duration
}

// LiveResult is one live check.
type LiveResult struct {
	Policies  []string      `json:"policies"`
	Cells     []Cell        `json:"cells"`
	Wrong     int           `json:"wrong"`
	Probes    int           `json:"probes"`
	ProbeTime time.Duration `json:"probeTimeNs"`
	Skipped   []string      `json:"skipped,omitempty"`
}

// Run reads the cluster, plans, probes, confirms every disagreeing probe once more, reads the flows
// and compares.
func (c *LiveCheck) Run(ctx context.Context) (*LiveResult, error) {
	cl, err := ReadCluster(ctx, c.Client, c.PolicyClient)
	if err != nil {
		return nil, err
	}
	o, err := oracle.New(cl)
	if err != nil {
		return nil, fmt.Errorf("oracle of the live cluster: %w", err)
	}
	modes := c.Modes
	if len(modes) == 0 {
		modes = AllModes()
	}
	plan, err := PlanLive(o, c.Namespaces, modes)
	if err != nil {
		return nil, err
	}
	res := &LiveResult{Skipped: plan.Skipped}
	for _, np := range cl.Policies {
		if slices.Contains(c.Namespaces, np.Namespace) {
			res.Policies = append(res.Policies, np.Namespace+"/"+np.Name)
		}
	}
	sort.Strings(res.Policies)
	prober := c.Prober
	if prober == nil {
		dp := NewDemoProber(c.Forward)
		dp.PortOf = func(ref string) int { return plan.Ports[ref] }
		defer dp.Close()
		prober = dp
	}
	probes := plan.Probes
	start := time.Now()
	if res.ProbeTime, err = ProbeAll(ctx, prober, probes, c.Timeout); err != nil {
		return nil, err
	}
	var idx []int
	for i := range probes {
		if probes[i].Reachable != plan.Verdicts[i].Allowed {
			idx = append(idx, i)
		}
	}
	n, err := ReprobeAt(ctx, prober, probes, idx, c.Timeout)
	if err != nil {
		return nil, err
	}
	res.Probes = len(probes) + n
	var obs map[cellKey]Observation
	if c.Flows != nil {
		if obs, err = ObserveProbes(ctx, prober, c.Flows, c.Namespaces, probes, start, c.FlowWait, c.Timeout); err != nil {
			return nil, err
		}
	}
	for i := range probes {
		p := &probes[i]
		v := plan.Verdicts[i]
		cell := Cell{Mode: p.Mode, From: p.From, To: p.To, Port: p.Port, Protocol: p.Protocol, Expected: v.Allowed, Reason: v.Reason, Probe: p}
		if obs != nil {
			if ob, ok := obs[keyOf(p.Mode, p.From, p.To, oracle.PortProto{Port: p.Port, Protocol: p.Protocol})]; ok {
				cell.Observed = &ob
			}
		}
		cell.Why = judgeCell(v, p, cell.Observed, obs != nil)
		cell.Wrong = len(cell.Why) > 0
		if cell.Wrong {
			res.Wrong++
		}
		res.Cells = append(res.Cells, cell)
	}
	return res, nil
}
