package lab

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// Status is what `starlab status` shows (and prints with -o json).
type Status struct {
	Name          string       `json:"name"`
	State         State        `json:"state"`
	Kubeconfig    string       `json:"kubeconfig"`
	APIServer     string       `json:"apiServer,omitempty"` // control-plane node address:6443
	ServerVersion string       `json:"serverVersion,omitempty"`
	NodeImage     string       `json:"nodeImage,omitempty"`
	Nodes         []NodeStatus `json:"nodes"`
	Pods          []PodStatus  `json:"pods"` // kube-system
	// Error is set when docker holds the lab but its API server could not be asked.
	Error string `json:"error,omitempty"`
}

// NodeStatus is one node of a lab.
type NodeStatus struct {
	Name           string `json:"name"`
	Role           string `json:"role"`
	Container      string `json:"container"` // docker state of the node container
	Ready          bool   `json:"ready"`
	InternalIP     string `json:"internalIP,omitempty"`
	PodCIDR        string `json:"podCIDR,omitempty"`
	KubeletVersion string `json:"kubeletVersion,omitempty"`
	Runtime        string `json:"containerRuntime,omitempty"`
}

// PodStatus is one pod of kube-system.
type PodStatus struct {
	Name     string `json:"name"`
	Node     string `json:"node,omitempty"`
	Phase    string `json:"phase"`
	Ready    bool   `json:"ready"`
	Restarts int32  `json:"restarts"`
	IP       string `json:"ip,omitempty"`
}

// Status reports the lab's nodes (roles, Ready, IPs, pod CIDRs, versions) and kube-system pods. An absent
// lab is a Status with State "absent", not an error.
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	cs, err := kindContainers(ctx, l.name)
	if err != nil {
		return nil, err
	}
	ex := summarize(cs)
	st := &Status{Name: l.name, State: ex.State, Kubeconfig: l.kubeconfig, Nodes: []NodeStatus{}, Pods: []PodStatus{}}
	if ex.State == StateAbsent {
		return st, nil
	}
	st.NodeImage = strings.Join(ex.Images, ",")
	byName := map[string]*NodeStatus{}
	for _, c := range cs {
		st.Nodes = append(st.Nodes, NodeStatus{Name: c.Name, Role: c.Role, Container: c.State})
	}
	for i := range st.Nodes {
		byName[st.Nodes[i].Name] = &st.Nodes[i]
	}
	if ex.State != StateRunning {
		st.Error = "node containers not running: " + strings.Join(ex.NotRunning, ", ")
		return st, nil
	}
	if host, port, err := l.APIServerAddress(ctx); err == nil {
		st.APIServer = fmt.Sprintf("%s:%d", host, port)
	}
	if err := l.fillFromAPI(ctx, st, byName); err != nil {
		st.Error = err.Error()
	}
	return st, nil
}

// fillFromAPI adds what the API server knows: versions, node conditions and addresses, kube-system pods.
func (l *Lab) fillFromAPI(ctx context.Context, st *Status, byName map[string]*NodeStatus) error {
	if _, err := l.WriteKubeconfig(ctx); err != nil {
		return err
	}
	client, err := l.Clientset()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := client.Discovery().ServerVersion(); err == nil {
		st.ServerVersion = v.GitVersion
	}
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes of lab %q: %w", l.name, err)
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		ns, ok := byName[n.Name]
		if !ok {
			st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name, Container: "unknown"})
			ns = &st.Nodes[len(st.Nodes)-1]
			// the slice may have moved: rebuild the index
			for j := range st.Nodes {
				byName[st.Nodes[j].Name] = &st.Nodes[j]
			}
		}
		ns.Ready = kubeready.Node(n)
		ns.PodCIDR = n.Spec.PodCIDR
		ns.KubeletVersion = n.Status.NodeInfo.KubeletVersion
		ns.Runtime = n.Status.NodeInfo.ContainerRuntimeVersion
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ns.InternalIP = a.Address
			}
		}
	}
	pods, err := client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list kube-system pods of lab %q: %w", l.name, err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		ps := PodStatus{Name: p.Name, Node: p.Spec.NodeName, Phase: string(p.Status.Phase), Ready: podReady(p), IP: p.Status.PodIP}
		for _, c := range p.Status.ContainerStatuses {
			ps.Restarts += c.RestartCount
		}
		st.Pods = append(st.Pods, ps)
	}
	sort.Slice(st.Pods, func(i, j int) bool { return st.Pods[i].Name < st.Pods[j].Name })
	return nil
}
