package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// starlabImageRE matches a Starlab image reference in a manifest: localhost/starlab/<name>[:<tag>].
var starlabImageRE = regexp.MustCompile(`localhost/starlab/([a-z0-9-]+)(:[A-Za-z0-9_.<>${}-]+)?`)

// SubstituteImages rewrites every localhost/starlab/<name>[:<tag>] whose name is in refs to refs[name] (the
// content-hashed reference that was loaded into the nodes).
func SubstituteImages(manifest string, refs map[string]string) string {
	return starlabImageRE.ReplaceAllStringFunc(manifest, func(m string) string {
		name := starlabImageRE.FindStringSubmatch(m)[1]
		if ref, ok := refs[name]; ok {
			return ref
		}
		if ref, ok := refs[strings.TrimPrefix(name, "starlab-")]; ok {
			return ref // localhost/starlab/starlab-demo is the demo image too
		}
		return m
	})
}

// ManifestFiles lists the *.yaml/*.yml files directly in each dir of fsys (not in subdirectories such as
// the demos' policies/), sorted (so numbered files apply in order). A missing dir is skipped.
func ManifestFiles(fsys fs.FS, dirs ...string) ([]string, error) {
	var files []string
	for _, dir := range dirs {
		entries, err := fs.ReadDir(fsys, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list manifests in %s: %w", dir, err)
		}
		for _, e := range entries {
			if ext := path.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, path.Join(dir, e.Name()))
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// DecodeManifests splits multi-document YAML into objects (empty documents skipped). Every object needs
// apiVersion, kind and metadata.name.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decode YAML document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("YAML document %d (name %q): apiVersion, kind and metadata.name are required", i, u.GetName())
		}
		objs = append(objs, u)
	}
}

// Applier server-side applies objects to one cluster with one dynamic client and one discovery-backed
// REST mapper (it caches discovery and refreshes it when a kind is unknown). It is safe for concurrent
// use.
type Applier struct {
	dyn          dynamic.Interface
	mapper       meta.RESTMapper
	fieldManager string
}

// NewApplier returns an Applier for the cluster of cfg that applies as fieldManager.
func NewApplier(cfg *rest.Config, fieldManager string) (*Applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", cfg.Host, err)
	}
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), fieldManager: fieldManager}, nil
}

// Resource returns the dynamic client of o's resource, in o's namespace for a namespaced kind (an
// empty namespace is set to "default").
func (a *Applier) Resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: unknown kind: %w", gvk.Kind, o.GetName(), err)
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return a.dyn.Resource(mapping.Resource), nil
	}
	if o.GetNamespace() == "" {
		o.SetNamespace(metav1.NamespaceDefault)
	}
	return a.dyn.Resource(mapping.Resource).Namespace(o.GetNamespace()), nil
}

// Apply server-side applies (forced) each of objs in order and returns the objects the API server
// stored, one for each applied object. It stops at the first error.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	var applied []*unstructured.Unstructured
	for _, o := range objs {
		ri, err := a.Resource(o)
		if err != nil {
			return applied, fmt.Errorf("apply %w", err)
		}
		data, err := o.MarshalJSON()
		if err != nil {
			return applied, fmt.Errorf("encode %s: %w", ObjectID(o), err)
		}
		force := true
		got, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: a.fieldManager, Force: &force})
		if err != nil {
			return applied, fmt.Errorf("apply %s: %w", ObjectID(o), err)
		}
		applied = append(applied, got)
	}
	return applied, nil
}

// ObjectID names an object in messages: "Kind namespace/name", or "Kind name" without a namespace.
func ObjectID(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + " " + ns + "/" + o.GetName()
	}
	return o.GetKind() + " " + o.GetName()
}

// ApplyManifests server-side applies (field manager "starlab", forced) every YAML file under dirs of fsys,
// with Starlab image references substituted by refs. Idempotent: a rerun changes nothing. It returns the
// applied objects as "Kind namespace/name".
func (l *Lab) ApplyManifests(ctx context.Context, fsys fs.FS, dirs []string, refs map[string]string) ([]string, error) {
	files, err := ManifestFiles(fsys, dirs...)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", f, err)
		}
		docs, err := DecodeManifests([]byte(SubstituteImages(string(data), refs)))
		if err != nil {
			return nil, fmt.Errorf("decode manifest %s: %w", f, err)
		}
		objs = append(objs, docs...)
	}
	if len(objs) == 0 {
		return nil, nil
	}
	// Namespaces first, so objects in them can be created in the same run.
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].GetKind() == "Namespace" && objs[j].GetKind() != "Namespace" })
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	a, err := NewApplier(cfg, fieldManager)
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", l.name, err)
	}
	done, err := a.Apply(ctx, objs)
	applied := make([]string, 0, len(done))
	for _, o := range objs[:len(done)] {
		applied = append(applied, ObjectID(o))
	}
	return applied, err
}

// describe joins object ids for messages.
func describe(ids []string) string {
	if len(ids) > 6 {
		return strings.Join(ids[:6], ", ") + fmt.Sprintf(" and %d more", len(ids)-6)
	}
	return strings.Join(ids, ", ")
}
