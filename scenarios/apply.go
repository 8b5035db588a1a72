package scenarios

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/starlab-dev/starlab/internal/lab"
)

// fieldManager names the scenarios in managedFields.
const fieldManager = "starlab-scenarios"

// applier returns the lab's Applier (one dynamic client and REST mapper), made once per Env.
func (e *Env) applier() (*lab.Applier, error) {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	if e.apply != nil {
		return e.apply, nil
	}
	a, err := lab.NewApplier(e.RESTConfig, fieldManager)
	if err != nil {
		return nil, err
	}
	e.apply = a
	return a, nil
}

// Apply server-side-applies every object in data and returns the highest resourceVersion written
// (hand it to WaitProgrammed).
func (e *Env) Apply(ctx context.Context, data []byte) (int64, error) {
	objs, err := lab.DecodeManifests(data)
	if err != nil {
		return 0, err
	}
	a, err := e.applier()
	if err != nil {
		return 0, err
	}
	applied, err := a.Apply(ctx, objs)
	if err != nil {
		return 0, err
	}
	e.applied.add("apply", objs)
	var maxRV int64
	for _, got := range applied {
		rv, err := strconv.ParseInt(got.GetResourceVersion(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("resourceVersion %q of %s is not an integer: %w", got.GetResourceVersion(), lab.ObjectID(got), err)
		}
		e.Log.Debug("applied", "kind", got.GetKind(), "namespace", got.GetNamespace(), "name", got.GetName(), "resourceVersion", rv)
		maxRV = max(maxRV, rv)
	}
	return maxRV, nil
}

// Delete deletes every object in data (missing ones are skipped) and returns the highest
// resourceVersion of the deletions, taken from the DELETED watch events so WaitProgrammed can wait
// for the agents to have programmed them. Objects with finalizers (namespaces) are not waited for:
// their contribution is 0.
func (e *Env) Delete(ctx context.Context, data []byte) (int64, error) {
	return e.eachObject(data, func(ri dynamic.ResourceInterface, u *unstructured.Unstructured) (int64, error) {
		what := fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
		cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("get %s before delete: %w", what, err)
		}
		if u.GetKind() == "Namespace" {
			e.applied.add("delete", []*unstructured.Unstructured{u})
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("delete %s: %w", what, err)
			}
			return 0, nil
		}
		e.applied.add("delete", []*unstructured.Unstructured{u})
		w, err := ri.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", u.GetName()).String(),
			ResourceVersion: cur.GetResourceVersion(),
		})
		if err != nil {
			return 0, fmt.Errorf("watch %s for its deletion: %w", what, err)
		}
		defer w.Stop()
		return deleteAndWait(ctx, ri, u.GetName(), w, what)
	})
}

// eachObject runs fn on every object in data, with the dynamic client for its resource, and returns
// the highest resourceVersion fn returned. It stops at the first error.
func (e *Env) eachObject(data []byte, fn func(dynamic.ResourceInterface, *unstructured.Unstructured) (int64, error)) (int64, error) {
	objs, err := lab.DecodeManifests(data)
	if err != nil {
		return 0, err
	}
	a, err := e.applier()
	if err != nil {
		return 0, err
	}
	var maxRV int64
	for _, u := range objs {
		ri, err := a.Resource(u)
		if err != nil {
			return 0, err
		}
		rv, err := fn(ri, u)
		if err != nil {
			return 0, err
		}
		maxRV = max(maxRV, rv)
	}
	return maxRV, nil
}

func deleteAndWait(ctx context.Context, ri dynamic.ResourceInterface, name string, w watch.Interface, what string) (int64, error) {
	if err := ri.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("delete %s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rv, err := lab.DeletedResourceVersion(ctx, w, what)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return 0, fmt.Errorf("%s not deleted within 1m (finalizers?): %w", what, err)
	}
	return rv, err
}

// DeleteNetworkPolicy deletes the NetworkPolicy namespace/name and waits until every node
// programmed the deletion (a missing policy is no error).
func (e *Env) DeleteNetworkPolicy(ctx context.Context, namespace, name string) error {
	doc := fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: %s, namespace: %s}\n", name, namespace)
	rv, err := e.Delete(ctx, []byte(doc))
	if err != nil {
		return err
	}
	if rv > 0 {
		if _, err := e.WaitProgrammed(ctx, rv); err != nil {
			return err
		}
	}
	return nil
}
