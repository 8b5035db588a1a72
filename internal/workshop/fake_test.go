package workshop

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/observer"
	"github.com/starlab-dev/starlab/internal/oracle"
	"github.com/starlab-dev/starlab/manifests"
)

// fakeCluster is a lab made of the oracle: probes answer what the policies applied so far allow.
type fakeCluster struct {
	manifests fs.FS
	mu        sync.Mutex
	rv        int64
	applied   map[string][]byte // object id -> JSON
	waited    []int64
	// wrong flips the probe of "from->target" (a datapath bug the page must show).
	wrong map[string]bool
	// block, when set, holds WaitProgrammed until closed.
	block chan struct{}
}

func newFake() *fakeCluster {
	return &fakeCluster{manifests: manifests.FS, applied: map[string][]byte{}, wrong: map[string]bool{}}
}

func (f *fakeCluster) Apply(_ context.Context, objs []*unstructured.Unstructured) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		data, err := o.MarshalJSON()
		if err != nil {
			return 0, err
		}
		f.applied[lab.ObjectID(o)] = data
	}
	f.rv++
	return f.rv, nil
}

func (f *fakeCluster) Delete(_ context.Context, objs []*unstructured.Unstructured) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, o := range objs {
		if _, ok := f.applied[lab.ObjectID(o)]; ok {
			delete(f.applied, lab.ObjectID(o))
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	f.rv++
	return f.rv, nil
}

func (f *fakeCluster) WaitProgrammed(ctx context.Context, rv int64) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waited = append(f.waited, rv)
	return nil
}

func (f *fakeCluster) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.applied {
		out = append(out, id)
	}
	return out
}

func (f *fakeCluster) Probe(_ context.Context, from Workload, target string) (ProbeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	objs := &oracle.Objects{}
	for _, dir := range []string{manifests.StarsDir, manifests.APIsDir} {
		files, err := lab.ManifestFiles(f.manifests, dir)
		if err != nil {
			return ProbeResult{}, err
		}
		for _, name := range files {
			data, _ := fs.ReadFile(f.manifests, name)
			if err := objs.Add(name, data); err != nil {
				return ProbeResult{}, err
			}
		}
	}
	for id, data := range f.applied {
		if err := objs.Add(id, data); err != nil {
			return ProbeResult{}, err
		}
	}
	c, err := objs.Cluster()
	if err != nil {
		return ProbeResult{}, err
	}
	o, err := oracle.New(c)
	if err != nil {
		return ProbeResult{}, err
	}
	if o.Pod(from.Namespace+"/"+from.Deployment) == nil {
		return ProbeResult{}, fmt.Errorf("no pod %s/%s", from.Namespace, from.Deployment)
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return ProbeResult{}, err
	}
	svc, ns, _ := strings.Cut(host, ".")
	p, _ := strconv.Atoi(port)
	v, err := o.Evaluate(oracle.PodEndpoint(from.Namespace, from.Deployment), oracle.ServiceEndpoint(ns, svc), int32(p), corev1.ProtocolTCP)
	if err != nil {
		return ProbeResult{}, err
	}
	return ProbeResult{Reachable: v.Allowed != f.wrong[from.Name+"->"+target], ElapsedMs: 1}, nil
}

func (f *fakeCluster) Check(_ context.Context, name string) ([]CheckLine, error) {
	return []CheckLine{{Subject: "starlab-worker", OK: true, Detail: name + " fine"}}, nil
}

func (f *fakeCluster) Flows(_ context.Context, since time.Time, _ []string) ([]*flow.Flow, error) {
	return []*flow.Flow{
		{Time: since.Add(time.Second), Verdict: flow.VerdictDropped, DropReasonDesc: "POLICY_DENIED",
			Source:      flow.Endpoint{Namespace: "client", PodName: "client-abc"},
			Destination: flow.Endpoint{Namespace: "stars", PodName: "backend-xyz"},
			L4:          flow.L4{Protocol: "TCP", DestinationPort: 6379}, TrafficDirection: "INGRESS",
			DeniedBy: []flow.Policy{{Kind: "NetworkPolicy", Namespace: "stars", Name: "default-deny"}}, NodeName: "starlab-worker"},
		{Time: since.Add(time.Second), Verdict: flow.VerdictForwarded, IsReply: true},
	}, nil
}

func (f *fakeCluster) Graph(context.Context, []string) (observer.GraphView, error) {
	var g observer.GraphView
	for _, id := range []string{"shop/shopper", "shop/orders", "shop/inventory", "shop/db", "stranger/stranger",
		"stars/frontend", "stars/backend", "client/client", "management-ui/management-ui", "kube-system/coredns"} {
		ns, name, _ := strings.Cut(id, "/")
		g.Nodes = append(g.Nodes, &observer.GraphNode{ID: id, Namespace: ns, Name: name, Kind: "Deployment"})
	}
	for i, e := range [][3]string{{"shop/shopper", "shop/orders", "forwarded"}, {"shop/shopper", "shop/inventory", "forwarded"},
		{"shop/orders", "shop/db", "forwarded"}, {"shop/inventory", "shop/db", "forwarded"}, {"stranger/stranger", "shop/db", "dropped"},
		{"management-ui/management-ui", "stars/frontend", "forwarded"}, {"client/client", "stars/backend", "mixed"},
		{"stars/frontend", "stars/backend", "forwarded"}, {"client/client", "kube-system/coredns", "forwarded"}} {
		g.Edges = append(g.Edges, &observer.GraphEdge{ID: strconv.Itoa(i), Source: e[0], Target: e[1], Verdict: e[2], Forwarded: uint64(10 + i), Dropped: map[bool]uint64{true: 7}[e[2] != "forwarded"]})
	}
	return g, nil
}

// defaultParts loads the talk's parts.
func defaultParts(t *testing.T) []Part {
	t.Helper()
	sub, err := fs.Sub(DefaultParts, "parts")
	require.NoError(t, err)
	parts, err := LoadParts(sub, manifests.FS)
	require.NoError(t, err)
	return parts
}
