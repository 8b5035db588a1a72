package conformance

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/portforward"
)

// Target is the cluster a run talks to.
type Target struct {
	Description string // for reports: `lab "starlab"` or `kubeconfig /path`
	REST        *rest.Config
	Client      kubernetes.Interface
	// Policies reads and writes ClusterNetworkPolicies.
	Policies npclient.Interface
}

// Connect loads kubeconfig and checks the API server answers; errors name the file and the server
// and say what to check. what describes where the file came from.
func Connect(ctx context.Context, kubeconfig, what string) (Target, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return Target{}, fmt.Errorf("%s: load kubeconfig %s: %w", what, kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Target{}, fmt.Errorf("%s: kubernetes client for %s: %w", what, cfg.Host, err)
	}
	probe := *cfg
	probe.Timeout = 10 * time.Second
	pcs, err := kubernetes.NewForConfig(&probe)
	if err != nil {
		return Target{}, fmt.Errorf("%s: kubernetes client for %s: %w", what, cfg.Host, err)
	}
	if _, err := pcs.Discovery().ServerVersion(); err != nil {
		return Target{}, fmt.Errorf("%s: the API server %s (kubeconfig %s) does not answer: %w; check that the cluster runs and the kubeconfig's current context points at it",
			what, cfg.Host, kubeconfig, err)
	}
	np, err := npclient.NewForConfig(cfg)
	if err != nil {
		return Target{}, fmt.Errorf("%s: clusternetworkpolicy client for %s: %w", what, cfg.Host, err)
	}
	return Target{Description: what, REST: cfg, Client: cs, Policies: np}, nil
}

// DiscoverDemoImage returns the Starlab demo image the lab's own demos run (what `starlab up`
// built and loaded into the nodes).
func DiscoverDemoImage(ctx context.Context, cs kubernetes.Interface) (string, error) {
	for _, ns := range []string{"stars", "client", "management-ui", "shop"} {
		deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, d := range deps.Items {
			for _, c := range d.Spec.Template.Spec.Containers {
				if strings.HasPrefix(c.Image, "localhost/starlab/demo:") && !strings.HasSuffix(c.Image, ":TAG") {
					return c.Image, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no deployment runs a localhost/starlab/demo image: pass --image with a starlab-demo image the nodes can pull (or bring the lab up with `starlab up`, which deploys it)")
}

// PortForwarder opens port-forwards through the API server of cfg.
func PortForwarder(cfg *rest.Config) Forwarder {
	return func(ctx context.Context, namespace, pod string, port int) (string, func(), error) {
		f, err := portforward.Open(ctx, cfg, namespace, pod, port, 0)
		if err != nil {
			return "", nil, err
		}
		return f.URL(), f.Close, nil
	}
}
