package workshop

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/observer"
)

// Lab checks a step can run instead of applying objects.
const (
	CheckNodesReady        = "nodes-ready-no-kube-proxy"
	CheckNoKubeSvcRules    = "no-kube-svc-rules"
	CheckObserverConnected = "observer-connected"
)

// Checks lists the lab checks a step may name.
func Checks() []string {
	return []string{CheckNodesReady, CheckNoKubeSvcRules, CheckObserverConnected}
}

func knownCheck(name string) bool { return slices.Contains(Checks(), name) }

// CheckLine is one line of a check's answer, e.g. one node.
type CheckLine struct {
	Subject string `json:"subject"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail"`
}

// ProbeResult is one connection made from inside a source pod.
type ProbeResult struct {
	Reachable bool    `json:"reachable"`
	Error     string  `json:"error,omitempty"`
	ElapsedMs float64 `json:"elapsedMs"`
}

// Cluster is what the script needs from a lab. KubeCluster is the real one; tests use fakes.
type Cluster interface {
	// Apply server-side applies objs and returns the highest resourceVersion written.
	Apply(ctx context.Context, objs []*unstructured.Unstructured) (int64, error)
	// Delete deletes objs (missing ones are fine) and returns the highest resourceVersion of the
	// deletions that agents program (0 when there is nothing to wait for).
	Delete(ctx context.Context, objs []*unstructured.Unstructured) (int64, error)
	// WaitProgrammed returns once every node's agent has programmed rv and the observer hears every
	// node; it polls until ctx ends.
	WaitProgrammed(ctx context.Context, rv int64) error
	// Probe connects from inside the pod of from to target (host:port, TCP).
	Probe(ctx context.Context, from Workload, target string) (ProbeResult, error)
	// Check runs a lab check (one of Checks).
	Check(ctx context.Context, name string) ([]CheckLine, error)
	// Flows returns the observer's flows since, touching any of namespaces.
	Flows(ctx context.Context, since time.Time, namespaces []string) ([]*flow.Flow, error)
	// Graph returns the observer's service map of namespaces.
	Graph(ctx context.Context, namespaces []string) (observer.GraphView, error)
}
