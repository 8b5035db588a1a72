package observer

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/starlab-dev/starlab/internal/agentapi"
)

// Discovery keeps the observer's node set equal to the cluster's nodes, each pointed at the agent pod
// running on it (hostNetwork: the pod IP is the node IP).
type Discovery struct {
	Client    kubernetes.Interface
	Namespace string // where the agent pods run
	Selector  string // default agentapi.PodSelector
	AgentPort int    // default agentapi.Port
	Observer  *Observer
}

// Run watches nodes and agent pods until ctx ends.
func (d *Discovery) Run(ctx context.Context) error {
	if d.Selector == "" {
		d.Selector = agentapi.PodSelector
	}
	if d.AgentPort == 0 {
		d.AgentPort = agentapi.Port
	}
	sel, err := labels.Parse(d.Selector)
	if err != nil {
		return fmt.Errorf("agent selector %q: %w", d.Selector, err)
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(d.Client, 10*time.Minute,
		informers.WithNamespace(d.Namespace))
	nodeFactory := informers.NewSharedInformerFactory(d.Client, 10*time.Minute)
	pods := podFactory.Core().V1().Pods()
	nodes := nodeFactory.Core().V1().Nodes()
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	if _, err := pods.Informer().AddEventHandler(h); err != nil {
		return fmt.Errorf("watch agent pods: %w", err)
	}
	if _, err := nodes.Informer().AddEventHandler(h); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	podFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer nodeFactory.Shutdown()
	for typ, ok := range podFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v informer in namespace %s: %w", typ, d.Namespace, context.Cause(ctx))
		}
	}
	for typ, ok := range nodeFactory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v informer: %w", typ, context.Cause(ctx))
		}
	}
	known := map[string]bool{}
	for {
		nodeList, err := nodes.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("list nodes: %w", err)
		}
		podList, err := pods.Lister().Pods(d.Namespace).List(sel)
		if err != nil {
			return fmt.Errorf("list agent pods: %w", err)
		}
		want := AgentTargets(nodeList, podList, d.AgentPort)
		for node, t := range want {
			if err := d.Observer.SetAgent(node, t.Addr, t.Why); err != nil {
				return err
			}
			known[node] = true
		}
		for node := range known {
			if _, ok := want[node]; !ok {
				d.Observer.RemoveNode(node)
				delete(known, node)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		}
	}
}

// AgentTarget is where a node's agent answers, or why it does not.
type AgentTarget struct {
	Addr string // host:port, "" when unavailable
	Why  string
}

// AgentTargets maps every node to its agent pod's address: the newest running, non-terminating agent
// pod with an IP scheduled on it.
func AgentTargets(nodes []*corev1.Node, pods []*corev1.Pod, port int) map[string]AgentTarget {
	out := make(map[string]AgentTarget, len(nodes))
	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
	}
	for _, n := range nodes {
		ps := byNode[n.Name]
		sort.Slice(ps, func(i, j int) bool { return ps[i].CreationTimestamp.After(ps[j].CreationTimestamp.Time) })
		t := AgentTarget{Why: "no starlab-agent pod on this node"}
		for _, p := range ps {
			switch {
			case p.DeletionTimestamp != nil:
				t.Why = "agent pod " + p.Name + " is terminating"
				continue
			case p.Status.Phase != corev1.PodRunning:
				t.Why = "agent pod " + p.Name + " is " + string(p.Status.Phase)
				continue
			case p.Status.PodIP == "":
				t.Why = "agent pod " + p.Name + " has no IP yet"
				continue
			}
			t = AgentTarget{Addr: net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))}
			break
		}
		out[n.Name] = t
	}
	return out
}
