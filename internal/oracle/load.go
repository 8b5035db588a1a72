package oracle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// Objects is what manifests hold for the oracle. Add more with Load or Add; later objects replace
// earlier ones of the same kind, namespace and name.
type Objects struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Services   []*corev1.Service
	Workloads  []Workload
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are ClusterNetworkPolicies (policy.networking.k8s.io v1beta1 or v1alpha2).
	ClusterPolicies []*policyv1beta1.ClusterNetworkPolicy
	Nodes           []*corev1.Node
	seen            map[string]int
}

// Workload is a pod template owner (Deployment, StatefulSet, DaemonSet, ReplicaSet) from manifests.
type Workload struct {
	Kind      string
	Namespace string
	Name      string
	Replicas  int32
	Selector  *metav1.LabelSelector
	Template  corev1.PodTemplateSpec
}

// Load reads every *.yaml, *.yml and *.json file under each path (directories recursively, in name
// order). Unknown kinds are skipped; a document that does not parse is an error naming the file.
func Load(paths ...string) (*Objects, error) {
	objs := &Objects{}
	for _, p := range paths {
		if err := objs.LoadPath(p); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// LoadPath reads one file or directory into objs.
func (objs *Objects) LoadPath(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read manifests %s: %w (pass a directory or file of Kubernetes YAML)", path, err)
	}
	if !info.IsDir() {
		return objs.loadFile(path)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isManifest(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read manifests %s: %w", path, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("read manifests %s: no *.yaml, *.yml or *.json files in it", path)
	}
	sort.Strings(files)
	for _, f := range files {
		if err := objs.loadFile(f); err != nil {
			return err
		}
	}
	return nil
}

func isManifest(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

func (objs *Objects) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read manifest %s: %w", path, err)
	}
	return objs.Add(path, data)
}

// Add parses the (multi-document) YAML or JSON data; source names it in errors.
func (objs *Objects) Add(source string, data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w: fix the YAML", source, doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		if err := objs.addDoc(raw); err != nil {
			return fmt.Errorf("%s: document %d: %w", source, doc, err)
		}
	}
}

func (objs *Objects) addDoc(raw []byte) error {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("does not parse as a Kubernetes object: %w: fix the YAML", err)
	}
	if meta.Kind == "" {
		if isComment(raw) {
			return nil
		}
		return fmt.Errorf("no kind: every document needs apiVersion and kind")
	}
	decode := func(into any) error {
		if err := yaml.UnmarshalStrict(raw, into); err != nil {
			return fmt.Errorf("%s does not parse: %w: fix the YAML", meta.Kind, err)
		}
		return nil
	}
	switch meta.Kind {
	case "List":
		var list struct {
			Items []jsonRaw `json:"items"`
		}
		if err := yaml.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("List does not parse: %w", err)
		}
		for i, it := range list.Items {
			if err := objs.addDoc(it); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	case "Namespace":
		o := &corev1.Namespace{}
		if err := decode(o); err != nil {
			return err
		}
		put(objs, "Namespace/"+o.Name, &objs.Namespaces, o)
	case "Pod":
		o := &corev1.Pod{}
		if err := decode(o); err != nil {
			return err
		}
		defaultNS(&o.ObjectMeta)
		put(objs, "Pod/"+o.Namespace+"/"+o.Name, &objs.Pods, o)
	case "Service":
		o := &corev1.Service{}
		if err := decode(o); err != nil {
			return err
		}
		defaultNS(&o.ObjectMeta)
		put(objs, "Service/"+o.Namespace+"/"+o.Name, &objs.Services, o)
	case "NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		if err := decode(o); err != nil {
			return err
		}
		defaultNS(&o.ObjectMeta)
		put(objs, "NetworkPolicy/"+o.Namespace+"/"+o.Name, &objs.Policies, o)
	case "ClusterNetworkPolicy":
		switch meta.APIVersion {
		case policyv1beta1.GroupVersion.String(), "policy.networking.k8s.io/v1alpha2":
		default:
			return fmt.Errorf("ClusterNetworkPolicy apiVersion %q: want policy.networking.k8s.io/v1beta1 (or v1alpha2)", meta.APIVersion)
		}
		o := &policyv1beta1.ClusterNetworkPolicy{}
		if err := decode(o); err != nil {
			return err
		}
		put(objs, "ClusterNetworkPolicy/"+o.Name, &objs.ClusterPolicies, o)
	case "Node":
		o := &corev1.Node{}
		if err := decode(o); err != nil {
			return err
		}
		put(objs, "Node/"+o.Name, &objs.Nodes, o)
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		w, err := workload(meta.Kind, raw, decode)
		if err != nil {
			return err
		}
		put(objs, meta.Kind+"/"+w.Namespace+"/"+w.Name, &objs.Workloads, w)
	default:
		slog.Debug("oracle: skipping an object the policy model does not use", "kind", meta.Kind)
	}
	return nil
}

type jsonRaw []byte

func (j *jsonRaw) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

func isComment(raw []byte) bool {
	for _, l := range strings.Split(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func defaultNS(m *metav1.ObjectMeta) {
	if m.Namespace == "" {
		m.Namespace = metav1.NamespaceDefault
	}
}

// put appends v, or replaces the object with the same key.
func put[T any](objs *Objects, key string, list *[]T, v T) {
	if objs.seen == nil {
		objs.seen = map[string]int{}
	}
	if i, ok := objs.seen[key]; ok {
		(*list)[i] = v
		return
	}
	objs.seen[key] = len(*list)
	*list = append(*list, v)
}

func workload(kind string, raw []byte, decode func(any) error) (Workload, error) {
	w := Workload{Kind: kind, Replicas: 1}
	var meta metav1.ObjectMeta
	switch kind {
	case "Deployment":
		o := &appsv1.Deployment{}
		if err := decode(o); err != nil {
			return w, err
		}
		meta, w.Selector, w.Template = o.ObjectMeta, o.Spec.Selector, o.Spec.Template
		if o.Spec.Replicas != nil {
			w.Replicas = *o.Spec.Replicas
		}
	case "StatefulSet":
		o := &appsv1.StatefulSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		meta, w.Selector, w.Template = o.ObjectMeta, o.Spec.Selector, o.Spec.Template
		if o.Spec.Replicas != nil {
			w.Replicas = *o.Spec.Replicas
		}
	case "DaemonSet":
		o := &appsv1.DaemonSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		meta, w.Selector, w.Template = o.ObjectMeta, o.Spec.Selector, o.Spec.Template
	default:
		o := &appsv1.ReplicaSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		meta, w.Selector, w.Template = o.ObjectMeta, o.Spec.Selector, o.Spec.Template
		if o.Spec.Replicas != nil {
			w.Replicas = *o.Spec.Replicas
		}
	}
	defaultNS(&meta)
	w.Namespace, w.Name = meta.Namespace, meta.Name
	return w, nil
}

// Cluster turns the objects into the oracle's model. A workload whose selector matches no Pod object
// is expanded into its pods, named after it (NAME, or NAME-0 ... NAME-N-1 for several replicas), with
// the template's labels and ports. Pods without status.podIP get made-up addresses from 10.244.0.0/16
// (IPAssigned), Services without clusterIP from 10.96.0.0/16, in name order.
func (objs *Objects) Cluster() (Cluster, error) {
	var c Cluster
	for _, ns := range objs.Namespaces {
		c.Namespaces = append(c.Namespaces, NamespaceFromK8s(ns))
	}
	for _, p := range objs.Pods {
		c.Pods = append(c.Pods, PodFromK8s(p))
	}
	for _, w := range objs.Workloads {
		sel, err := metav1.LabelSelectorAsSelector(w.Selector)
		if err != nil {
			return Cluster{}, fmt.Errorf("%s %s/%s: spec.selector: %w", w.Kind, w.Namespace, w.Name, err)
		}
		if hasPods(objs.Pods, w.Namespace, sel) {
			continue
		}
		n := max(w.Replicas, 1)
		for i := range n {
			name := w.Name
			if n > 1 {
				name = fmt.Sprintf("%s-%d", w.Name, i)
			}
			c.Pods = append(c.Pods, podFromSpec(w.Namespace, name, w.Template.Labels, &w.Template.Spec))
		}
	}
	for _, s := range objs.Services {
		c.Services = append(c.Services, ServiceFromK8s(s))
	}
	c.Policies = objs.Policies
	c.ClusterPolicies = objs.ClusterPolicies
	for _, n := range objs.Nodes {
		c.Nodes = append(c.Nodes, NodeFromK8s(n))
	}
	assignPodIPs(c.Pods)
	assignServiceIPs(c.Services)
	return c, nil
}

func hasPods(pods []*corev1.Pod, ns string, sel labels.Selector) bool {
	for _, p := range pods {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

func assignPodIPs(pods []Pod) {
	used := map[netip.Addr]bool{}
	var need []int
	for i := range pods {
		if pods[i].IP.IsValid() {
			used[pods[i].IP] = true
		} else if !pods[i].HostNetwork {
			need = append(need, i)
		}
	}
	sort.Slice(need, func(a, b int) bool { return pods[need[a]].Ref() < pods[need[b]].Ref() })
	next := netip.MustParseAddr("10.244.0.10")
	for _, i := range need {
		for used[next] {
			next = next.Next()
		}
		pods[i].IP, pods[i].IPAssigned = next, true
		used[next] = true
	}
}

func assignServiceIPs(svcs []Service) {
	used := map[netip.Addr]bool{}
	var need []int
	for i := range svcs {
		if svcs[i].ClusterIP.IsValid() {
			used[svcs[i].ClusterIP] = true
		} else {
			need = append(need, i)
		}
	}
	sort.Slice(need, func(a, b int) bool { return svcs[need[a]].Ref() < svcs[need[b]].Ref() })
	next := netip.MustParseAddr("10.96.0.10")
	for _, i := range need {
		for used[next] {
			next = next.Next()
		}
		svcs[i].ClusterIP = next
		used[next] = true
	}
}
