package scenarios

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
