package scenarios

import (
	"context"
	"fmt"
	"strings"

	"github.com/starlab-dev/starlab/manifests"
)

// applyWorkloads applies test workloads (YAML) with the demo image placeholder replaced by the demo
// image `starlab up` built, and returns the highest resourceVersion written.
func (e *Env) applyWorkloads(ctx context.Context, yaml string) (int64, error) {
	img, err := e.demoImage(ctx)
	if err != nil {
		return 0, err
	}
	return e.Apply(ctx, []byte(strings.ReplaceAll(yaml, manifests.DemoImagePlaceholder, img)))
}

// probeDeployment is a Deployment of the demo image's probe server listening on port, its pods labelled
// app=<name>, the image left as the demo image placeholder (replaced at apply). spread asks the scheduler
// to put the replicas on different nodes.
func probeDeployment(namespace, name string, port, replicas int, spread bool) string {
	var topology string
	if spread {
		topology = fmt.Sprintf(`      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: %[1]s}}}
`, name)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  replicas: %[3]d
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 2
%[4]s      containers:
        - name: %[1]s
          image: %[5]s
          imagePullPolicy: Never
          args: [probe, --port=%[6]d]
          ports: [{name: http, containerPort: %[6]d, protocol: TCP}]
          readinessProbe: {httpGet: {path: /healthz, port: %[6]d}, periodSeconds: 1}
          resources: {requests: {cpu: 5m, memory: 16Mi}, limits: {memory: 64Mi}}
`, name, namespace, replicas, topology, manifests.DemoImagePlaceholder, port)
}

// yamlDocs joins manifests into one multi-document YAML stream.
func yamlDocs(docs ...string) string {
	return strings.Join(docs, "---\n")
}

// namespaceManifest is a Namespace.
func namespaceManifest(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", name)
}
