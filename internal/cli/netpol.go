package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/internal/conformance"
	"github.com/starlab-dev/starlab/internal/lab"
	"github.com/starlab-dev/starlab/internal/oracle"
)

// Shared by `explain`, `predict` and `diff`: where the policy model comes from.

// manifestOracle builds the oracle from manifest files or directories (read recursively).
func manifestOracle(paths ...string) (*oracle.Oracle, error) {
	objs, err := oracle.Load(paths...)
	if err != nil {
		return nil, err
	}
	return oracleFromObjects(objs, strings.Join(paths, ", "))
}

func oracleFromObjects(objs *oracle.Objects, what string) (*oracle.Oracle, error) {
	c, err := objs.Cluster()
	if err != nil {
		return nil, fmt.Errorf("manifests %s: %w", what, err)
	}
	o, err := oracle.New(c)
	if err != nil {
		return nil, fmt.Errorf("manifests %s: %w", what, err)
	}
	for _, w := range o.Warnings() {
		slog.Warn("policy the API server would reject", "manifests", what, "warning", w)
	}
	return o, nil
}

// liveOracle builds the oracle from the lab's API server: namespaces, running pods, services and
// network policies.
func liveOracle(ctx context.Context, g *globalOptions) (*oracle.Oracle, error) {
	l, err := lab.Open(g.clusterName)
	if err != nil {
		return nil, err
	}
	cs, err := l.Clientset()
	if err != nil {
		return nil, fmt.Errorf("%w (or explain offline with -f DIR)", err)
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, fmt.Errorf("%w (or explain offline with -f DIR)", err)
	}
	np, err := npclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clusternetworkpolicy client for lab %q: %w", g.clusterName, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hint := fmt.Sprintf("is the lab up? `starlab status --name %s`, or explain offline with -f DIR", g.clusterName)
	c, err := clusterFromAPI(ctx, cs, np)
	if err != nil {
		return nil, fmt.Errorf("lab %q (%s): %w", g.clusterName, hint, err)
	}
	o, err := oracle.New(c)
	if err != nil {
		return nil, fmt.Errorf("lab %q: %w", g.clusterName, err)
	}
	return o, nil
}

// clusterFromAPI reads namespaces, nodes, pods that have not finished, services, network policies and
// cluster network policies (conformance.ReadCluster, shared with the reachability check).
func clusterFromAPI(ctx context.Context, cs kubernetes.Interface, np npclient.Interface) (oracle.Cluster, error) {
	return conformance.ReadCluster(ctx, cs, np)
}

// portFlags turns --port/--protocol into the truth-table columns; none means the ports the pods serve.
func portFlags(ports []int, protocol string) ([]oracle.PortProto, error) {
	proto, err := protocolFlag(protocol)
	if err != nil {
		return nil, err
	}
	var out []oracle.PortProto
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("invalid --port %d: use 1-65535", p)
		}
		out = append(out, oracle.PortProto{Port: int32(p), Protocol: proto})
	}
	return out, nil
}

func protocolFlag(s string) (corev1.Protocol, error) {
	switch p := corev1.Protocol(strings.ToUpper(s)); p {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return p, nil
	}
	return "", fmt.Errorf("invalid --protocol %q: use TCP, UDP or SCTP", s)
}

// verdictWord is how tables print a verdict.
func verdictWord(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// mdEscape keeps a cell from breaking a Markdown table.
func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
