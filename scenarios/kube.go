package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// PodRef names a workload's pod by namespace and label selector (e.g. stars, role=backend).
type PodRef struct {
	Namespace string
	Selector  string
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Selector }

// Pod returns the running, ready-to-serve pod of ref (the newest if several run).
func (e *Env) Pod(ctx context.Context, ref PodRef) (*corev1.Pod, error) {
	list, err := e.Client.CoreV1().Pods(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ref.Selector})
	if err != nil {
		return nil, fmt.Errorf("list pods %s: %w", ref, err)
	}
	var running []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil, fmt.Errorf("no running pod matches %s (%d pods listed): is the demo deployed and the datapath up?", ref, len(list.Items))
	}
	sort.Slice(running, func(i, j int) bool {
		return running[i].CreationTimestamp.After(running[j].CreationTimestamp.Time)
	})
	return &running[0], nil
}

// containerPort returns the first declared container port of pod (the demo's HTTP port).
func containerPort(pod *corev1.Pod) (int, error) {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			return int(p.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("pod %s/%s declares no container port to reach its /probe endpoint", pod.Namespace, pod.Name)
}

// readyPods returns the running, ready pods of namespace matching selector (at least one).
func (e *Env) readyPods(ctx context.Context, namespace, selector string) ([]corev1.Pod, error) {
	list, err := e.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods %s in %s: %w", selector, namespace, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && p.Status.PodIP != "" && kubeready.Pod(&p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ready pod matches %s in %s", selector, namespace)
	}
	return out, nil
}

// scaleDeployment sets the replicas of namespace/name (a missing Deployment is no error).
func (e *Env) scaleDeployment(ctx context.Context, namespace, name string, n int) error {
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
	_, err := e.Client.AppsV1().Deployments(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", namespace, name, n, err)
	}
	return nil
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

// nodeNames lists the cluster's nodes with an InternalIP (kind node container names), sorted.
func (e *Env) nodeNames(ctx context.Context) ([]string, error) {
	ips, err := e.nodeIPs(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(ips)), nil
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

// sortedKeys returns the keys of a set, sorted.
func sortedKeys(m map[string]bool) []string {
	return slices.Sorted(maps.Keys(m))
}
