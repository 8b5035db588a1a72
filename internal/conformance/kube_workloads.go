package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ManagedLabel marks the namespaces the suite creates (and may delete).
const ManagedLabel = "conformance.starlab.dev/managed"

// podSpec is the demo probe serving TCP and UDP on 80 and 81, /probe/batch on ControlPort.
func podSpec(image string) corev1.PodSpec {
	var ports []corev1.ContainerPort
	for _, cp := range containerPorts() {
		ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.Port, Protocol: cp.Protocol})
	}
	ports = append(ports, corev1.ContainerPort{Name: "control", ContainerPort: ControlPort, Protocol: corev1.ProtocolTCP})
	zero := int64(0)
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: &zero,
		Containers: []corev1.Container{{
			Name:            "probe",
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            []string{"probe", fmt.Sprintf("--port=%d", ControlPort), "--listen=80,81", "--listen-udp=80,81", "--interval=1h"},
			Ports:           ports,
		}},
	}
}

// EnsureWorkloads creates the universe's namespaces and pods (reusing matching ones), waits until
// every pod runs, and records the pod IPs in u. A pod whose image cannot be pulled fails at once,
// naming the image.
func EnsureWorkloads(ctx context.Context, cs kubernetes.Interface, u *Universe, image string, timeout time.Duration) error {
	for _, ns := range u.Namespaces {
		if err := waitNamespaceNotTerminating(ctx, cs, ns); err != nil {
			return err
		}
		labels := u.NamespaceBaseLabels(ns)
		labels[ManagedLabel] = "true"
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	for _, ref := range u.Pods() {
		ns, name, _ := strings.Cut(ref, "/")
		cur, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && cur.DeletionTimestamp == nil && len(cur.Spec.Containers) == 1 && cur.Spec.Containers[0].Image == image {
			continue
		}
		if err == nil {
			if err := deletePodAndWait(ctx, cs, ns, name); err != nil {
				return err
			}
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get pod %s: %w", ref, err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: u.StateOf(Step{}).PodLabels[ref]}, Spec: podSpec(image)}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s: %w", ref, err)
		}
	}
	if err := ensureServices(ctx, cs, u); err != nil {
		return err
	}
	return waitPodsRunning(ctx, cs, u, image, timeout)
}

// ensureServices creates the Service s-<pod> in front of every pod and records its ClusterIP.
func ensureServices(ctx context.Context, cs kubernetes.Interface, u *Universe) error {
	for _, ref := range u.Pods() {
		want := u.service(ref)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: want.Namespace, Name: want.Name}, Spec: corev1.ServiceSpec{Selector: want.Selector}}
		for _, p := range want.Ports {
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol, TargetPort: p.TargetPort})
		}
		got, err := cs.CoreV1().Services(want.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = cs.CoreV1().Services(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		}
		if err != nil {
			return fmt.Errorf("service %s/%s: %w", want.Namespace, want.Name, err)
		}
		ip, err := netip.ParseAddr(got.Spec.ClusterIP)
		if err != nil {
			return fmt.Errorf("service %s/%s has no usable ClusterIP %q: %w", want.Namespace, want.Name, got.Spec.ClusterIP, err)
		}
		u.ServiceIPs[ref] = ip
	}
	return nil
}

// waitNamespaceNotTerminating waits until namespace ns is either gone or not being deleted (a
// previous run's cleanup may still be going on).
func waitNamespaceNotTerminating(ctx context.Context, cs kubernetes.Interface, ns string) error {
	return pollUntil(ctx, 3*time.Minute, 500*time.Millisecond, fmt.Sprintf("namespace %s (deleted by an earlier run) gone", ns), func(ctx context.Context) (bool, string, error) {
		cur, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", fmt.Errorf("get namespace %s: %w", ns, err)
		}
		return cur.DeletionTimestamp == nil, "still terminating", nil
	})
}

func deletePodAndWait(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete stale pod %s/%s: %w", ns, name, err)
	}
	return pollUntil(ctx, time.Minute, 250*time.Millisecond, fmt.Sprintf("stale pod %s/%s gone", ns, name), func(ctx context.Context) (bool, string, error) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, "still there", err
	})
}

// imagePullReasons are the waiting reasons that mean the node cannot get the image.
func imagePullReasons() []string {
	return []string{"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
}

func waitPodsRunning(ctx context.Context, cs kubernetes.Interface, u *Universe, image string, timeout time.Duration) error {
	return pollUntil(ctx, timeout, 500*time.Millisecond, "conformance pods running", func(ctx context.Context) (bool, string, error) {
		var waiting []string
		for _, ref := range u.Pods() {
			ns, name, _ := strings.Cut(ref, "/")
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, "", fmt.Errorf("get pod %s: %w", ref, err)
			}
			for _, st := range p.Status.ContainerStatuses {
				if w := st.State.Waiting; w != nil {
					for _, r := range imagePullReasons() {
						if w.Reason == r {
							return false, "", fmt.Errorf("pod %s on node %s cannot get the probe image %s (%s: %s): push it where the nodes can pull it, or load it into the nodes, and pass it with --image",
								ref, p.Spec.NodeName, image, w.Reason, w.Message)
						}
					}
				}
			}
			ip, _ := netip.ParseAddr(p.Status.PodIP)
			if p.Status.Phase != corev1.PodRunning || !ip.IsValid() || !containersReady(p) {
				waiting = append(waiting, fmt.Sprintf("%s %s", ref, p.Status.Phase))
				continue
			}
			u.IPs[ref] = ip
		}
		return len(waiting) == 0, "waiting for " + strings.Join(waiting, ", "), nil
	})
}

func containersReady(p *corev1.Pod) bool {
	for _, st := range p.Status.ContainerStatuses {
		if !st.Ready {
			return false
		}
	}
	return len(p.Status.ContainerStatuses) > 0
}

// DeleteWorkloads deletes the namespaces the suite created (without waiting).
func DeleteWorkloads(ctx context.Context, cs kubernetes.Interface, u *Universe) error {
	for _, ns := range u.Namespaces {
		cur, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get namespace %s: %w", ns, err)
		}
		if cur.Labels[ManagedLabel] != "true" {
			continue
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete namespace %s: %w", ns, err)
		}
	}
	return nil
}

// pollUntil calls check every interval until done, an error, or timeout; the last "why not yet" is
// in the timeout error.
func pollUntil(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	last := "not checked yet"
	for {
		done, why, err := check(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			return err
		case done:
			return nil
		case why != "":
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not done after %s: %s", what, time.Since(start).Round(time.Millisecond), last)
		case <-time.After(interval):
		}
	}
}
