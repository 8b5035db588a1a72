package bundle

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

const (
	// starlabSelector selects the agent and observer pods (agentapi.PodSelector, observer.PodSelector).
	starlabSelector = "app.kubernetes.io/name in (starlab-agent,starlab-observer)"
	maxLogBytes     = 64 << 20
)

// Version is the starlab build that wrote a bundle (from the Go build info).
type Version struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

// String is e.g. "(devel) da4c4b9e1f2a+dirty".
func (v Version) String() string {
	s := v.Version
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev
		if v.Modified {
			s += "+dirty"
		}
	}
	return s
}

// StarlabVersion reads the running binary's build info.
func StarlabVersion() Version {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Version{Version: "unknown"}
	}
	v := Version{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// collectVersions connects to the API server (the clients every later step uses) and writes version.json.
func (r *run) collectVersions(ctx context.Context, s *stepCtx) error {
	out := map[string]any{"starlab": r.version}
	defer func() { s.addJSON("version.json", out) }()
	if _, err := r.lab.WriteKubeconfig(ctx); err != nil {
		return fmt.Errorf("kubeconfig of lab %q: %w", r.opts.Lab, err)
	}
	cfg, err := r.lab.RESTConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client for lab %q: %w", r.opts.Lab, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client for lab %q: %w", r.opts.Lab, err)
	}
	r.cfg, r.cs, r.dyn = cfg, cs, dyn
	sv, err := cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("kubernetes server version of lab %q: %w", r.opts.Lab, err)
	}
	r.mu.Lock()
	r.kubeVersion = sv.GitVersion
	r.mu.Unlock()
	out["kubernetes"] = sv
	return nil
}

// collectStatus writes status.json: what `starlab status -o json` prints.
func (r *run) collectStatus(ctx context.Context, s *stepCtx) error {
	st, err := r.lab.Status(ctx)
	if err != nil {
		return fmt.Errorf("status of lab %q: %w", r.opts.Lab, err)
	}
	s.addJSON("status.json", st)
	if st.Error != "" {
		s.fail("status.json", fmt.Errorf("lab status reports: %s", st.Error))
	}
	return nil
}

// objectDump is one `kubectl get -o yaml` equivalent.
type objectDump struct {
	file      string
	gvr       schema.GroupVersionResource
	namespace string // "" = all namespaces (or cluster-scoped)
}

func (r *run) objectDumps() []objectDump {
	ns := r.opts.Namespace
	return []objectDump{
		{"k8s/nodes.yaml", schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, ""},
		{"k8s/namespaces.yaml", schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, ""},
		{"k8s/pods.yaml", schema.GroupVersionResource{Version: "v1", Resource: "pods"}, ""},
		{"k8s/services.yaml", schema.GroupVersionResource{Version: "v1", Resource: "services"}, ""},
		{"k8s/endpointslices.yaml", schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}, ""},
		{"k8s/networkpolicies.yaml", schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}, ""},
		{"k8s/events.yaml", schema.GroupVersionResource{Version: "v1", Resource: "events"}, ""},
		{"k8s/" + ns + "/daemonsets.yaml", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, ns},
		{"k8s/" + ns + "/deployments.yaml", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, ns},
		{"k8s/" + ns + "/configmaps.yaml", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, ns},
	}
}

// collectObjects dumps the objects like `kubectl get -o yaml` (a v1 List, managedFields left out).
func (r *run) collectObjects(ctx context.Context, s *stepCtx) error {
	if r.dyn == nil {
		_, err := r.clients()
		return err
	}
	for _, d := range r.objectDumps() {
		data, err := dumpObjects(ctx, r.dyn, d.gvr, d.namespace, r.redact)
		if err != nil {
			s.fail(d.file, err)
			continue
		}
		s.add(d.file, data)
	}
	return nil
}

// dumpObjects lists every object of gvr (paging) and renders them as kubectl's List YAML.
func dumpObjects(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, namespace string, red *Redactor) ([]byte, error) {
	items := []any{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", gvrName(gvr), err)
		}
		for i := range list.Items {
			obj := cleanObject(&list.Items[i])
			red.Object(obj)
			items = append(items, obj)
		}
		if list.GetContinue() == "" {
			break
		}
		opts.Continue = list.GetContinue()
	}
	return RenderList(items)
}

// cleanObject drops what `kubectl get -o yaml` hides by default (managedFields).
func cleanObject(u *unstructured.Unstructured) map[string]any {
	obj := u.UnstructuredContent()
	unstructured.RemoveNestedField(obj, "metadata", "managedFields")
	return obj
}

// RenderList renders objects as the YAML of `kubectl get -o yaml` (kind List).
func RenderList(items []any) ([]byte, error) {
	if items == nil {
		items = []any{}
	}
	list := map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"metadata":   map[string]any{"resourceVersion": ""},
		"items":      items,
	}
	b, err := yaml.Marshal(list)
	if err != nil {
		return nil, fmt.Errorf("render YAML list: %w", err)
	}
	return b, nil
}

func gvrName(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}

// collectLogs writes the logs of every starlab agent and observer container (and of the previous
// instance of a container that restarted).
func (r *run) collectLogs(ctx context.Context, s *stepCtx) error {
	cs, err := r.clients()
	if err != nil {
		return err
	}
	ns := r.opts.Namespace
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: starlabSelector})
	if err != nil {
		return fmt.Errorf("list starlab pods (%s) in %s: %w", starlabSelector, ns, err)
	}
	if len(pods.Items) == 0 {
		return fmt.Errorf("no starlab pods (%s) in namespace %s: is the chart installed?", starlabSelector, ns)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, c := range statuses {
			base := fmt.Sprintf("logs/%s/%s/%s", ns, p.Name, c.Name)
			if c.State.Waiting != nil && c.LastTerminationState.Terminated == nil && c.RestartCount == 0 {
				s.fail(base+".log", fmt.Errorf("container has not started: %s %s", c.State.Waiting.Reason, c.State.Waiting.Message))
				continue
			}
			if c.State.Running != nil || c.State.Terminated != nil {
				data, err := podLog(ctx, cs, ns, p.Name, c.Name, false, r.opts.LogTailLines)
				if err != nil {
					s.fail(base+".log", err)
				} else {
					s.add(base+".log", data)
				}
			}
			if c.RestartCount > 0 || c.LastTerminationState.Terminated != nil {
				data, err := podLog(ctx, cs, ns, p.Name, c.Name, true, r.opts.LogTailLines)
				if err != nil {
					s.fail(base+".previous.log", err)
				} else {
					s.add(base+".previous.log", data)
				}
			}
		}
	}
	return nil
}

// podLog reads the last tail lines of a container's log (with timestamps).
func podLog(ctx context.Context, cs kubernetes.Interface, ns, pod, container string, previous bool, tail int64) ([]byte, error) {
	what := fmt.Sprintf("logs of %s/%s container %s", ns, pod, container)
	if previous {
		what = "previous " + what
	}
	stream, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{
		Container: container, Previous: previous, TailLines: &tail, Timestamps: true,
	}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer stream.Close()
	data, err := io.ReadAll(io.LimitReader(stream, maxLogBytes))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return data, nil
}

// podNode returns the node of a pod, or its name when unscheduled.
func podNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	return p.Name
}
