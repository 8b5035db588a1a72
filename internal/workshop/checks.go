package workshop

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/starlab-dev/starlab/internal/kubeready"
)

// Check implements Cluster.
func (k *KubeCluster) Check(ctx context.Context, name string) ([]CheckLine, error) {
	switch name {
	case CheckNodesReady:
		return k.checkNodesReady(ctx)
	case CheckNoKubeSvcRules:
		return k.checkNoKubeSvc(ctx)
	case CheckObserverConnected:
		st, err := k.observer.Status(ctx)
		if err != nil {
			return nil, err
		}
		var out []CheckLine
		for _, n := range st.Nodes {
			out = append(out, CheckLine{Subject: n.Name, OK: n.State == "connected", Detail: strings.TrimSpace(string(n.State) + " " + n.Error)})
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown check %q: use one of %v", name, Checks())
}

func (k *KubeCluster) checkNodesReady(ctx context.Context) ([]CheckLine, error) {
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []CheckLine
	for i := range nodes.Items {
		n := &nodes.Items[i]
		ready := kubeready.Node(n)
		out = append(out, CheckLine{Subject: n.Name, OK: ready, Detail: map[bool]string{true: "Ready", false: "not Ready"}[ready]})
	}
	_, err = k.cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		out = append(out, CheckLine{Subject: "kube-proxy", OK: true, Detail: "no DaemonSet kube-system/kube-proxy"})
	case err != nil:
		return nil, fmt.Errorf("look for kube-proxy: %w", err)
	default:
		out = append(out, CheckLine{Subject: "kube-proxy", OK: false, Detail: "DaemonSet kube-system/kube-proxy exists"})
	}
	return out, nil
}

func (k *KubeCluster) checkNoKubeSvc(ctx context.Context) ([]CheckLine, error) {
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var out []CheckLine
	for _, n := range nodes.Items {
		rules, err := k.nodeExec(ctx, n.Name, "iptables-save")
		if err != nil {
			out = append(out, CheckLine{Subject: n.Name, OK: false, Detail: "iptables-save: " + err.Error()})
			continue
		}
		c := 0
		for _, l := range strings.Split(rules, "\n") {
			if strings.Contains(l, "KUBE-SVC") {
				c++
			}
		}
		out = append(out, CheckLine{Subject: n.Name, OK: c == 0, Detail: fmt.Sprintf("%d KUBE-SVC rules", c)})
	}
	return out, nil
}
