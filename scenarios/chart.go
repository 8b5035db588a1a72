package scenarios

import (
	"context"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/charts"
	"github.com/starlab-dev/starlab/internal/helmrelease"
)

// currentChartValues rebuilds the values the lab installed the chart with, from the running objects
// (the agent DaemonSet's image and API server address, the observer Deployment's image).
func (e *Env) currentChartValues(ctx context.Context) (map[string]any, error) {
	ds, err := e.Client.AppsV1().DaemonSets(helmrelease.DefaultNamespace).Get(ctx, "starlab-agent", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the starlab-agent DaemonSet: %w", err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	agent := map[string]any{"image": c.Image}
	api := map[string]any{}
	for _, env := range c.Env {
		switch env.Name {
		case "KUBERNETES_SERVICE_HOST":
			api["host"] = env.Value
		case "KUBERNETES_SERVICE_PORT":
			p, err := strconv.Atoi(env.Value)
			if err != nil {
				return nil, fmt.Errorf("KUBERNETES_SERVICE_PORT %q: %w", env.Value, err)
			}
			api["port"] = p
		}
	}
	if len(api) > 0 {
		agent["apiServer"] = api
	}
	vals := map[string]any{"agent": agent}
	if d, err := e.Client.AppsV1().Deployments(helmrelease.DefaultNamespace).Get(ctx, "starlab-observer", metav1.GetOptions{}); err == nil {
		vals["observer"] = map[string]any{"image": d.Spec.Template.Spec.Containers[0].Image}
	}
	return vals, nil
}

// reinstallChart installs the starlab chart with vals and waits for it.
func (e *Env) reinstallChart(ctx context.Context, vals map[string]any) error {
	_, err := helmrelease.InstallOrUpgrade(ctx, helmrelease.Options{
		Kubeconfig: e.Kubeconfig, Chart: charts.Starlab, ChartDir: "starlab", Values: vals,
		Wait: true, Timeout: 3 * time.Minute, Logger: e.Log,
	})
	if err != nil {
		return fmt.Errorf("reinstall the starlab chart: %w", err)
	}
	return nil
}
