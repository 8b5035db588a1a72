package conformance

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/lab"
)

// applyClusterPolicies moves the cluster policies (those labelled ManagedLabel: cluster scoped, so the
// label is what marks the suite's own) from prev (nil: read them) to next, calling note with each
// resourceVersion written (deletions: of their DELETED events).
func applyClusterPolicies(ctx context.Context, np npclient.Interface, prev *State, next State, note func(rv, what string) error) error {
	existing, err := currentClusterPolicies(ctx, np, prev, next)
	if err != nil || np == nil {
		return err
	}
	api := np.PolicyV1beta1().ClusterNetworkPolicies()
	for _, name := range next.ClusterPolicyNames() {
		want := next.ClusterPolicies[name]
		old, ok := existing[name]
		if ok && equality.Semantic.DeepEqual(old.Spec, want.Spec) {
			continue
		}
		obj := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ManagedLabel: "true"}}, Spec: want.Spec}
		var got *policyv1beta1.ClusterNetworkPolicy
		if !ok {
			got, err = api.Create(ctx, obj, metav1.CreateOptions{})
		}
		if ok || apierrors.IsAlreadyExists(err) {
			cur, gerr := api.Get(ctx, name, metav1.GetOptions{})
			if gerr != nil {
				return fmt.Errorf("get clusternetworkpolicy %s: %w", name, gerr)
			}
			cur.Spec, cur.Labels = want.Spec, obj.Labels
			got, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("put clusternetworkpolicy %s: %w", name, err)
		}
		if err := note(got.ResourceVersion, "clusternetworkpolicy "+name); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(existing))
	for name := range existing {
		if _, keep := next.ClusterPolicies[name]; !keep {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		rv, err := deleteClusterPolicy(ctx, np, name)
		if err != nil {
			return err
		}
		if err := note(rv, "deleted clusternetworkpolicy "+name); err != nil {
			return err
		}
	}
	return nil
}

// currentClusterPolicies returns the suite's cluster policies: prev's when known, else read. Without a
// client a state with cluster policies is an error.
func currentClusterPolicies(ctx context.Context, np npclient.Interface, prev *State, next State) (map[string]*policyv1beta1.ClusterNetworkPolicy, error) {
	if np == nil {
		if len(next.ClusterPolicies) > 0 {
			return nil, fmt.Errorf("the case has ClusterNetworkPolicies but no ClusterNetworkPolicy client was given")
		}
		return nil, nil
	}
	if prev != nil {
		return prev.ClusterPolicies, nil
	}
	list, err := np.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{LabelSelector: ManagedLabel})
	if apierrors.IsNotFound(err) && len(next.ClusterPolicies) == 0 {
		return nil, nil // no CRD, and nothing to apply
	}
	if err != nil {
		return nil, fmt.Errorf("list clusternetworkpolicies (is the CRD installed? the chart installs it): %w", err)
	}
	out := map[string]*policyv1beta1.ClusterNetworkPolicy{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

// deleteClusterPolicy deletes a cluster policy and returns the resourceVersion of its DELETED event.
func deleteClusterPolicy(ctx context.Context, np npclient.Interface, name string) (string, error) {
	api := np.PolicyV1beta1().ClusterNetworkPolicies()
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "0", nil
	}
	if err != nil {
		return "", fmt.Errorf("get clusternetworkpolicy %s before delete: %w", name, err)
	}
	w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: cur.ResourceVersion})
	if err != nil {
		return "", fmt.Errorf("watch clusternetworkpolicy %s for its deletion: %w", name, err)
	}
	defer w.Stop()
	if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("delete clusternetworkpolicy %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rv, err := lab.DeletedResourceVersion(ctx, w, "clusternetworkpolicy "+name)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(rv, 10), nil
}
