package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// controlPlaneComponents are the static pods kubeadm runs on the control-plane node.
var controlPlaneComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// pollInterval is how often the waits below look again.
const pollInterval = 500 * time.Millisecond

// WaitControlPlane waits until the API server answers /readyz with "ok", wantNodes nodes are registered and
// the control-plane pods (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) are Running and
// Ready. Nodes stay NotReady until a CNI is installed, so node readiness is not awaited here (kind's own
// wait needs a CNI). The deadline comes from ctx; on timeout the error says what was still missing.
func (l *Lab) WaitControlPlane(ctx context.Context, wantNodes int) error {
	cs, err := l.Clientset()
	if err != nil {
		return err
	}
	var missing string
	for {
		missing = controlPlaneMissing(ctx, cs, wantNodes)
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab %q control plane not ready: %s (node logs: docker exec %s-control-plane journalctl -u kubelet): %w", l.name, missing, l.name, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// controlPlaneMissing returns what is not ready yet, or "" when everything is.
func controlPlaneMissing(ctx context.Context, cs kubernetes.Interface, wantNodes int) string {
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("/readyz: %v", err)
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Sprintf("/readyz answered %q", body)
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("list nodes: %v", err)
	}
	if len(nodes.Items) < wantNodes {
		return fmt.Sprintf("%d of %d nodes registered", len(nodes.Items), wantNodes)
	}
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "tier=control-plane"})
	if err != nil {
		return fmt.Sprintf("list control-plane pods: %v", err)
	}
	return controlPlanePodsMissing(pods.Items)
}

// controlPlanePodsMissing names the control-plane components without a Running and Ready pod.
func controlPlanePodsMissing(pods []corev1.Pod) string {
	var notReady []string
	for _, comp := range controlPlaneComponents {
		ok := false
		for i := range pods {
			if pods[i].Labels["component"] == comp && podReady(&pods[i]) {
				ok = true
				break
			}
		}
		if !ok {
			notReady = append(notReady, comp)
		}
	}
	if len(notReady) > 0 {
		return "control-plane pods not Running and Ready: " + strings.Join(notReady, ", ")
	}
	return ""
}

// podReady reports whether a pod is Running with condition Ready true.
func podReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && kubeready.Pod(p)
}
