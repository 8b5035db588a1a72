// Package kubeready reads the Ready conditions of Kubernetes pods and nodes.
package kubeready

import corev1 "k8s.io/api/core/v1"

// Pod reports whether the pod's Ready condition is true. It does not look at the phase or deletion.
func Pod(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Node reports whether the node's Ready condition is true.
func Node(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
