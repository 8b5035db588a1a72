package oracle

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const loadYAML = `# a comment-only document first
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-live, namespace: shop, labels: {app: db}}
spec: {containers: [{name: db, ports: [{containerPort: 5432}]}]}
status: {podIP: 10.244.0.10}
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: api, namespace: shop}
    spec:
      selector: {app: api}
      ports: [{port: 80, targetPort: http}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: ignored, namespace: shop}
`

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(loadYAML), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "np.yml"), []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: 5432}]}]
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a manifest"), 0o644))

	objs, err := Load(dir)
	require.NoError(t, err)
	c, err := objs.Cluster()
	require.NoError(t, err)
	o, err := New(c)
	require.NoError(t, err)

	refs := []string{}
	for _, p := range c.Pods {
		refs = append(refs, p.Ref())
	}
	assert.ElementsMatch(t, []string{"shop/db-live", "shop/api-0", "shop/api-1"}, refs, "db has a live pod, api is expanded")
	api := o.Pod("shop/api-0")
	require.NotNil(t, api)
	assert.True(t, api.IPAssigned)
	assert.NotEqual(t, "10.244.0.10", api.IP.String(), "made-up addresses avoid real ones")
	require.Len(t, c.Policies, 1)

	v, err := o.Evaluate(PodEndpoint("shop", "api-1"), PodEndpoint("shop", "db-live"), 5432, "")
	require.NoError(t, err)
	assert.True(t, v.Allowed, v.Reason)
	assert.Equal(t, []RuleRef{{Policy: "shop/db", Rule: 0}}, v.Ingress.AllowedBy)

	v, err = o.Evaluate(PodEndpoint("shop", "db-live"), ServiceEndpoint("shop", "api"), 80, "")
	require.NoError(t, err)
	require.Len(t, v.Backends, 2)
	assert.Equal(t, int32(8080), v.Backends[0].Port, "named targetPort resolved on the backend")
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selektor: {a: b}}\n"), 0o644))
	_, err := Load(dir)
	assert.ErrorContains(t, err, bad+": document 1: Service does not parse")
	assert.ErrorContains(t, err, "selektor")

	require.NoError(t, os.WriteFile(bad, []byte("metadata: {name: s}\n"), 0o644))
	_, err = Load(bad)
	assert.ErrorContains(t, err, "no kind: every document needs apiVersion and kind")

	_, err = Load(t.TempDir())
	assert.ErrorContains(t, err, "no *.yaml, *.yml or *.json files in it")
}
