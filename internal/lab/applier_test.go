package lab

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// TestApplierResource checks the kind -> resource mapping the Applier applies through (the fake
// dynamic client cannot server-side apply): namespaced kinds in the object's namespace ("default"
// when empty), cluster-scoped kinds without, unknown kinds an error.
func TestApplierResource(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "Service"}, meta.RESTScopeNamespace)
	objs, err := DecodeManifests([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: t, namespace: a}\n"))
	require.NoError(t, err)
	svc := objs[1].DeepCopy()
	svc.SetNamespace(metav1.NamespaceDefault)
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		{Version: "v1", Resource: "namespaces"}: "NamespaceList",
		{Version: "v1", Resource: "services"}:   "ServiceList",
	}, objs[0].DeepCopy(), svc, objs[2].DeepCopy())
	a := &Applier{dyn: dyn, mapper: mapper, fieldManager: "test"}
	for _, o := range objs {
		ri, err := a.Resource(o)
		require.NoError(t, err, ObjectID(o))
		got, err := ri.Get(context.Background(), o.GetName(), metav1.GetOptions{})
		require.NoError(t, err, ObjectID(o))
		assert.Equal(t, o.GetNamespace(), got.GetNamespace(), ObjectID(o))
	}
	assert.Equal(t, "Service default/s", ObjectID(objs[1]), "a namespaced object without namespace goes to default")
	assert.Equal(t, "Namespace a", ObjectID(objs[0]))

	unknown, err := DecodeManifests([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"))
	require.NoError(t, err)
	_, err = a.Apply(context.Background(), unknown)
	assert.ErrorContains(t, err, "apply ConfigMap c: unknown kind")
}
