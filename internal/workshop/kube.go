package workshop

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/starlab-dev/starlab/internal/demo"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/kubeready"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/portforward"
	"github.com/starlab-dev/starlab/manifests"
)

// PolicyRevisionAnnotation is the annotation each agent keeps on its Node: the highest
// resourceVersion of the Pod/Namespace/NetworkPolicy events it has programmed.
const PolicyRevisionAnnotation = "starlab.dev/policy-revision"

// fieldManager names the workshop in managedFields.
const fieldManager = "starlab-workshop"

// probeTimeout is one probe connection's timeout: a denied connection costs this much, and it is the
// floor of every policy step on stage. 600 ms is far above an allowed connect inside a kind cluster
// (a few ms, under load tens) and below the 1 s SYN retransmission, after which a connect whose first
// SYN was lost would answer too late for a 1 s timeout as well. The conformance suite keeps 1 s.
const probeTimeout = 600 * time.Millisecond

// KubeCluster is the Cluster of a running lab: the API server, the pods' /probe endpoints through
// port-forwards, the node containers (docker) and the observer.
type KubeCluster struct {
	cfg      *rest.Config
	cs       kubernetes.Interface
	applier  *lab.Applier
	observer *observer.Client
	// nodeExec runs a command in a node container (docker exec).
	nodeExec func(ctx context.Context, node string, argv ...string) (string, error)
	log      *slog.Logger

	mu       sync.Mutex
	forwards map[string]*portforward.Forward // namespace/pod:port
}

// NewKubeCluster returns the Cluster of the lab whose API server cfg reaches, with the observer at
// obs and nodeExec to run commands on nodes.
func NewKubeCluster(cfg *rest.Config, obs *observer.Client, nodeExec func(ctx context.Context, node string, argv ...string) (string, error), log *slog.Logger) (*KubeCluster, error) {
	// A step probes every cell at once; client-go's default 5 requests/s would queue them.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	a, err := lab.NewApplier(cfg, fieldManager)
	if err != nil {
		return nil, err
	}
	return &KubeCluster{cfg: cfg, cs: cs, applier: a, observer: obs, nodeExec: nodeExec, log: log, forwards: map[string]*portforward.Forward{}}, nil
}

// Close ends every port-forward.
func (k *KubeCluster) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, f := range k.forwards {
		f.Close()
		delete(k.forwards, key)
	}
}

// Apply implements Cluster. The demo image placeholder is replaced by the image the lab's demo
// workloads run (the shop's db).
func (k *KubeCluster) Apply(ctx context.Context, objs []*unstructured.Unstructured) (int64, error) {
	img, err := k.demoImage(ctx)
	if err != nil {
		return 0, err
	}
	var subst []*unstructured.Unstructured
	for _, o := range objs {
		data, err := o.MarshalJSON()
		if err != nil {
			return 0, fmt.Errorf("encode %s: %w", lab.ObjectID(o), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON([]byte(strings.ReplaceAll(string(data), manifests.DemoImagePlaceholder, img))); err != nil {
			return 0, fmt.Errorf("decode %s: %w", lab.ObjectID(o), err)
		}
		subst = append(subst, u)
	}
	for _, o := range subst {
		if o.GetKind() == "Namespace" {
			if err := k.waitNamespaceGone(ctx, o.GetName()); err != nil {
				return 0, err
			}
		}
	}
	applied, err := k.applier.Apply(ctx, subst)
	if err != nil {
		return 0, err
	}
	var maxRV int64
	for _, got := range applied {
		rv, err := strconv.ParseInt(got.GetResourceVersion(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("resourceVersion %q of %s: %w", got.GetResourceVersion(), lab.ObjectID(got), err)
		}
		maxRV = max(maxRV, rv)
	}
	return maxRV, nil
}

// demoImage is the image of the lab's demo workloads (deployment shop/db, else stars/backend).
func (k *KubeCluster) demoImage(ctx context.Context) (string, error) {
	for _, ref := range [][2]string{{"shop", "db"}, {"stars", "backend"}} {
		d, err := k.cs.AppsV1().Deployments(ref[0]).Get(ctx, ref[1], metav1.GetOptions{})
		if err == nil && len(d.Spec.Template.Spec.Containers) > 0 {
			return d.Spec.Template.Spec.Containers[0].Image, nil
		}
	}
	return "", fmt.Errorf("no demo deployment (shop/db or stars/backend) to take the demo image from: run starlab up")
}

// waitNamespaceGone waits while namespace name is being deleted (an undo or an earlier walk's clean-up
// deleted it): nothing can be created in a terminating namespace.
func (k *KubeCluster) waitNamespaceGone(ctx context.Context, name string) error {
	for {
		ns, err := k.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && ns.DeletionTimestamp == nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("look at namespace %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s is still being deleted (an earlier step's undo): %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Delete implements Cluster: each object is deleted and its DELETED event's resourceVersion is
// what agents program. Namespaces are not waited for (finalizers); deleting one deletes its pods.
func (k *KubeCluster) Delete(ctx context.Context, objs []*unstructured.Unstructured) (int64, error) {
	var maxRV int64
	for _, u := range objs {
		ri, err := k.applier.Resource(u)
		if err != nil {
			return 0, err
		}
		what := lab.ObjectID(u)
		cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("get %s before delete: %w", what, err)
		}
		if u.GetKind() == "Namespace" {
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("delete %s: %w", what, err)
			}
			continue
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", u.GetName()).String(), ResourceVersion: cur.GetResourceVersion()})
		if err != nil {
			return 0, fmt.Errorf("watch %s for its deletion: %w", what, err)
		}
		rv, err := func() (int64, error) {
			defer w.Stop()
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("delete %s: %w", what, err)
			}
			return lab.DeletedResourceVersion(ctx, w, what)
		}()
		if err != nil {
			return 0, err
		}
		maxRV = max(maxRV, rv)
	}
	return maxRV, nil
}

// WaitProgrammed implements Cluster: every node's policy-revision annotation >= rv and the observer
// connected to every node, polled every 100 ms.
func (k *KubeCluster) WaitProgrammed(ctx context.Context, rv int64) error {
	last := "not checked yet"
	for {
		ok, why, err := k.programmed(ctx, rv)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		if why != "" {
			last = why
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("revision %d: %w: %s", rv, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (k *KubeCluster) programmed(ctx context.Context, rv int64) (bool, string, error) {
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, "", fmt.Errorf("list nodes: %w", err)
	}
	var behind []string
	for _, n := range nodes.Items {
		got, err := strconv.ParseInt(n.Annotations[PolicyRevisionAnnotation], 10, 64)
		if err != nil || got < rv {
			behind = append(behind, fmt.Sprintf("%s at %q", n.Name, n.Annotations[PolicyRevisionAnnotation]))
		}
	}
	if len(behind) > 0 {
		return false, "nodes behind: " + strings.Join(behind, ", "), nil
	}
	st, err := k.observer.Status(ctx)
	if err != nil {
		return false, "", err
	}
	if st.Unavailable > 0 || st.Connected < len(nodes.Items) {
		return false, fmt.Sprintf("observer connected to %d of %d nodes", st.Connected, len(nodes.Items)), nil
	}
	return true, "", nil
}

// Probe implements Cluster through the source pod's /probe endpoint (port-forwarded). It waits for
// a ready source pod (a step may have just created it) and for its own programming.
func (k *KubeCluster) Probe(ctx context.Context, from Workload, target string) (ProbeResult, error) {
	pod, err := k.readyPod(ctx, from)
	if err != nil {
		return ProbeResult{}, err
	}
	for attempt := 0; ; attempt++ {
		f, err := k.forward(ctx, pod, from.ProbePort)
		if err != nil {
			return ProbeResult{}, err
		}
		res, err := demo.RequestProbe(ctx, f.URL(), target, "tcp", probeTimeout)
		if err == nil {
			return ProbeResult{Reachable: res.Reachable, Error: res.Error, ElapsedMs: res.ElapsedMs}, nil
		}
		k.dropForward(pod, from.ProbePort)
		if attempt == 1 || ctx.Err() != nil {
			return ProbeResult{}, fmt.Errorf("probe %s from pod %s/%s: %w", target, pod.Namespace, pod.Name, err)
		}
	}
}

func (k *KubeCluster) readyPod(ctx context.Context, w Workload) (*corev1.Pod, error) {
	for {
		pods, err := k.cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: w.Selector})
		if err != nil {
			return nil, fmt.Errorf("list pods %s in %s: %w", w.Selector, w.Namespace, err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && kubeready.Pod(p) {
				rv, _ := strconv.ParseInt(p.ResourceVersion, 10, 64)
				if err := k.WaitProgrammed(ctx, rv); err != nil {
					return nil, err
				}
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no ready pod %s in namespace %s: %w (kubectl -n %s get pods)", w.Selector, w.Namespace, ctx.Err(), w.Namespace)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (k *KubeCluster) forward(ctx context.Context, pod *corev1.Pod, port int) (*portforward.Forward, error) {
	key := fmt.Sprintf("%s/%s:%d", pod.Namespace, pod.Name, port)
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, ok := k.forwards[key]; ok {
		select {
		case <-f.Done():
		default:
			return f, nil
		}
	}
	f, err := portforward.Open(ctx, k.cfg, pod.Namespace, pod.Name, port, 0)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", key, err)
	}
	k.forwards[key] = f
	return f, nil
}

func (k *KubeCluster) dropForward(pod *corev1.Pod, port int) {
	key := fmt.Sprintf("%s/%s:%d", pod.Namespace, pod.Name, port)
	k.mu.Lock()
	defer k.mu.Unlock()
	if f, ok := k.forwards[key]; ok {
		f.Close()
		delete(k.forwards, key)
	}
}

// Flows implements Cluster.
func (k *KubeCluster) Flows(ctx context.Context, since time.Time, namespaces []string) ([]*flow.Flow, error) {
	// DNS lookups would drown the step's connections.
	q := flow.Query{Since: since, Last: maxFlows * 4, Deny: []flow.Filter{{Port: []uint16{53}}}}
	if len(namespaces) > 0 {
		q.Allow = []flow.Filter{{Namespace: namespaces}}
	}
	var out []*flow.Flow
	err := k.observer.Flows(ctx, q, func(f *flow.Flow) error {
		out = append(out, f)
		return nil
	})
	return out, err
}

// Graph implements Cluster.
func (k *KubeCluster) Graph(ctx context.Context, namespaces []string) (observer.GraphView, error) {
	q := url.Values{}
	if len(namespaces) > 0 {
		q.Set("namespace", strings.Join(namespaces, ","))
	}
	return k.observer.Graph(ctx, q)
}
