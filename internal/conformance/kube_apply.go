package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/lab"
)

// ApplyState moves the cluster from prev (nil: unknown, read it) to next: labels patched, policies
// created, updated or deleted. It returns the highest resourceVersion written (deletions: of their
// DELETED events), for WaitProgrammed, and whether anything changed.
//
// np reads and writes the ClusterNetworkPolicies (labelled ManagedLabel); nil when the cluster has none
// (a state with cluster policies is then an error).
func ApplyState(ctx context.Context, cs kubernetes.Interface, np npclient.Interface, u *Universe, prev *State, next State) (int64, bool, error) {
	var maxRV int64
	changed := false
	note := func(rv string, what string) error {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil {
			return fmt.Errorf("resourceVersion %q of %s is not an integer: %w", rv, what, err)
		}
		maxRV, changed = max(maxRV, n), true
		return nil
	}
	for _, ns := range u.Namespaces {
		want := next.NamespaceLabels[ns]
		if prev != nil && maps.Equal(prev.NamespaceLabels[ns], want) {
			continue
		}
		cur, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return 0, false, fmt.Errorf("get namespace %s: %w", ns, err)
		}
		patch, ok := labelPatch(cur.Labels, want, ManagedLabel, "kubernetes.io/metadata.name")
		if !ok {
			continue
		}
		got, err := cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return 0, false, fmt.Errorf("relabel namespace %s: %w", ns, err)
		}
		if err := note(got.ResourceVersion, "namespace "+ns); err != nil {
			return 0, false, err
		}
	}
	for _, ref := range u.Pods() {
		want := next.PodLabels[ref]
		if prev != nil && maps.Equal(prev.PodLabels[ref], want) {
			continue
		}
		ns, name, _ := strings.Cut(ref, "/")
		cur, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, false, fmt.Errorf("get pod %s: %w", ref, err)
		}
		patch, ok := labelPatch(cur.Labels, want)
		if !ok {
			continue
		}
		got, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil {
			return 0, false, fmt.Errorf("relabel pod %s: %w", ref, err)
		}
		if err := note(got.ResourceVersion, "pod "+ref); err != nil {
			return 0, false, err
		}
	}
	existing, err := currentPolicies(ctx, cs, u, prev)
	if err != nil {
		return 0, false, err
	}
	names := slices.Sorted(maps.Keys(next.Policies))
	for _, name := range names {
		pol := next.Policies[name]
		old, ok := existing[name]
		if ok && equality.Semantic.DeepEqual(old.Spec, pol.Spec) {
			continue
		}
		rv, err := putPolicy(ctx, cs, pol, ok)
		if err != nil {
			return 0, false, err
		}
		if err := note(rv, "networkpolicy "+name); err != nil {
			return 0, false, err
		}
	}
	for name, old := range existing {
		if _, keep := next.Policies[name]; keep {
			continue
		}
		rv, err := deletePolicy(ctx, cs, old.Namespace, old.Name)
		if err != nil {
			return 0, false, err
		}
		if err := note(rv, "deleted networkpolicy "+name); err != nil {
			return 0, false, err
		}
	}
	if err := applyClusterPolicies(ctx, np, prev, next, note); err != nil {
		return 0, false, err
	}
	return maxRV, changed, nil
}

// labelPatch is the JSON merge patch turning cur into want (keys in keep are left alone); false
// when nothing changes.
func labelPatch(cur, want map[string]string, keep ...string) ([]byte, bool) {
	labels := map[string]any{}
	for k, v := range want {
		if cur[k] != v {
			labels[k] = v
		}
	}
	for k := range cur {
		if _, ok := want[k]; !ok && !contains(keep, k) {
			labels[k] = nil
		}
	}
	if len(labels) == 0 {
		return nil, false
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	return b, true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// currentPolicies returns the policies in the universe's namespaces: prev's when known, else read.
func currentPolicies(ctx context.Context, cs kubernetes.Interface, u *Universe, prev *State) (map[string]*networkingv1.NetworkPolicy, error) {
	if prev != nil {
		return prev.Policies, nil
	}
	out := map[string]*networkingv1.NetworkPolicy{}
	for _, ns := range u.Namespaces {
		list, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list networkpolicies in %s: %w", ns, err)
		}
		for i := range list.Items {
			np := &list.Items[i]
			out[np.Namespace+"/"+np.Name] = np
		}
	}
	return out, nil
}

func putPolicy(ctx context.Context, cs kubernetes.Interface, np *networkingv1.NetworkPolicy, exists bool) (string, error) {
	api := cs.NetworkingV1().NetworkPolicies(np.Namespace)
	obj := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: np.Namespace, Name: np.Name}, Spec: np.Spec}
	if !exists {
		got, err := api.Create(ctx, obj, metav1.CreateOptions{})
		if err == nil {
			return got.ResourceVersion, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("create networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
		}
	}
	cur, err := api.Get(ctx, np.Name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("get networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
	cur.Spec = np.Spec
	got, err := api.Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return "", fmt.Errorf("update networkpolicy %s/%s: %w", np.Namespace, np.Name, err)
	}
	return got.ResourceVersion, nil
}

// deletePolicy deletes a policy and returns the resourceVersion of its DELETED event (the revision
// the agents must reach).
func deletePolicy(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	api := cs.NetworkingV1().NetworkPolicies(ns)
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "0", nil
	}
	if err != nil {
		return "", fmt.Errorf("get networkpolicy %s/%s before delete: %w", ns, name, err)
	}
	w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: cur.ResourceVersion})
	if err != nil {
		return "", fmt.Errorf("watch networkpolicy %s/%s for its deletion: %w", ns, name, err)
	}
	defer w.Stop()
	if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete networkpolicy %s/%s: %w", ns, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rv, err := lab.DeletedResourceVersion(ctx, w, fmt.Sprintf("networkpolicy %s/%s", ns, name))
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(rv, 10), nil
}
