// Package kubeclient loads the REST config of the in-cluster components (agent, observer): a
// kubeconfig file when one is given, the pod's service account otherwise.
package kubeclient

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig loads kubeconfig when it is not empty, else the in-cluster config.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("in-cluster config (KUBERNETES_SERVICE_HOST/PORT must name the API server's real address): %w", err)
	}
	return c, nil
}
