package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

const fieldManager = "starlab-scenarios"

// DecodeManifests splits multi-document YAML into objects (empty documents skipped).
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decode YAML document %d: %w", i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("YAML document %d: apiVersion, kind and metadata.name are required", i+1)
		}
		out = append(out, u)
	}
}

// dynamicClient returns the dynamic client and a discovery-backed REST mapper, made once per Env
// (the mapper caches discovery and refreshes itself when a kind is unknown).
func (e *Env) dynamicClient() (dynamic.Interface, meta.RESTMapper, error) {
	e.dynMu.Lock()
	defer e.dynMu.Unlock()
	if e.dyn != nil {
		return e.dyn, e.mapper, nil
	}
	dc, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("dynamic client: %w", err)
	}
	e.dyn = dc
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client.Discovery()))
	return e.dyn, e.mapper, nil
}

func resourceFor(dc dynamic.Interface, mapper meta.RESTMapper, u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("resource for %s %s: %w", gvk, u.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		return dc.Resource(m.Resource).Namespace(ns), nil
	}
	return dc.Resource(m.Resource), nil
}

// Apply server-side-applies every object in data and returns the highest resourceVersion written
// (hand it to WaitProgrammed).
func (e *Env) Apply(ctx context.Context, data []byte) (int64, error) {
	return e.eachObject(data, func(ri dynamic.ResourceInterface, u *unstructured.Unstructured) (int64, error) {
		body, err := u.MarshalJSON()
		if err != nil {
			return 0, fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		force := true
		got, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
		if err != nil {
			return 0, fmt.Errorf("apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		rv, err := strconv.ParseInt(got.GetResourceVersion(), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("resourceVersion %q of %s %s is not an integer: %w", got.GetResourceVersion(), u.GetKind(), u.GetName(), err)
		}
		e.Log.Debug("applied", "kind", u.GetKind(), "namespace", u.GetNamespace(), "name", u.GetName(), "resourceVersion", rv)
		return rv, nil
	})
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
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return 0, fmt.Errorf("delete %s: %w", what, err)
			}
			return 0, nil
		}
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
	objs, err := DecodeManifests(data)
	if err != nil {
		return 0, err
	}
	dc, mapper, err := e.dynamicClient()
	if err != nil {
		return 0, err
	}
	var maxRV int64
	for _, u := range objs {
		ri, err := resourceFor(dc, mapper, u)
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
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch of %s ended before its DELETED event", what)
			}
			if ev.Type != watch.Deleted {
				continue
			}
			obj, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				return 0, fmt.Errorf("DELETED event of %s carries %T", what, ev.Object)
			}
			rv, err := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("resourceVersion %q of deleted %s: %w", obj.GetResourceVersion(), what, err)
			}
			return rv, nil
		case <-timeout.C:
			return 0, fmt.Errorf("%s not deleted within 1m (finalizers?)", what)
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for deletion of %s: %w", what, ctx.Err())
		}
	}
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
