package lab

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/exec"
)

// bpffsPath is where the agent pins maps and links, in every node.
const bpffsPath = "/sys/fs/bpf"

// EnsureBPFFS makes sure bpffs is mounted at /sys/fs/bpf in every node. The node image ships a mount unit,
// so normally nothing is mounted here; it returns the nodes it had to mount (and logs a warning for them).
func (l *Lab) EnsureBPFFS(ctx context.Context) (mounted []string, err error) {
	ns, err := l.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		ok, err := bpffsMounted(ctx, n)
		if err != nil {
			return mounted, err
		}
		if ok {
			continue
		}
		if _, err := nodeOutput(ctx, n, "mount", "-t", "bpf", "bpf", bpffsPath); err != nil {
			return mounted, fmt.Errorf("mount bpffs in node %s: %w", n.String(), err)
		}
		if ok, err := bpffsMounted(ctx, n); err != nil || !ok {
			return mounted, fmt.Errorf("bpffs still not mounted at %s in node %s after mount (err %v)", bpffsPath, n.String(), err)
		}
		l.log.Warn("bpffs was not mounted in the node; mounted it (the node image should carry a sys-fs-bpf.mount unit)", "node", n.String())
		mounted = append(mounted, n.String())
	}
	return mounted, nil
}

// bpffsMounted reports whether /sys/fs/bpf in node n is a bpf filesystem.
func bpffsMounted(ctx context.Context, n nodes.Node) (bool, error) {
	out, err := nodeOutput(ctx, n, "stat", "-f", "-c", "%T", bpffsPath)
	if err != nil {
		return false, fmt.Errorf("check bpffs in node %s: %w", n.String(), err)
	}
	return strings.TrimSpace(out) == "bpf_fs", nil
}

// nodeOutput runs a command in a node (docker exec) and returns its stdout; stderr goes into the error.
func nodeOutput(ctx context.Context, n nodes.Node, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := n.CommandContext(ctx, name, args...).SetStdout(&stdout).SetStderr(&stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", exec.PrettyCommand(name, args...), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// PatchCoreDNS removes the `forward` and `loop` plugins from CoreDNS's Corefile so DNS never goes to an
// upstream server (there is none: the lab is offline). Idempotent; CoreDNS's reload plugin picks it up.
func (l *Lab) PatchCoreDNS(ctx context.Context) error {
	cs, err := l.Clientset()
	if err != nil {
		return err
	}
	cms := cs.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get CoreDNS ConfigMap of lab %q: %w", l.name, err)
	}
	corefile, ok := cm.Data["Corefile"]
	if !ok {
		return fmt.Errorf("CoreDNS ConfigMap of lab %q has no Corefile", l.name)
	}
	patched := RemoveCorefilePlugins(corefile, "forward", "loop")
	if patched == corefile {
		return nil
	}
	cm.Data["Corefile"] = patched
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("update CoreDNS ConfigMap of lab %q: %w", l.name, err)
	}
	return nil
}

// fieldManager names Starlab in managedFields.
const fieldManager = "starlab"

// RemoveCorefilePlugins drops every directive named in plugins from a Corefile, including a directive's
// `{ ... }` block (e.g. `forward . /etc/resolv.conf {\n max_concurrent 1000\n}`).
func RemoveCorefilePlugins(corefile string, plugins ...string) string {
	drop := map[string]bool{}
	for _, p := range plugins {
		drop[p] = true
	}
	lines := strings.SplitAfter(corefile, "\n")
	var b strings.Builder
	skipDepth := 0 // > 0 while inside the block of a dropped directive
	for _, line := range lines {
		trimmed := strings.TrimSpace(line)
		if skipDepth > 0 {
			skipDepth += strings.Count(trimmed, "{") - strings.Count(trimmed, "}")
			continue
		}
		fields := strings.Fields(trimmed)
		if len(fields) > 0 && drop[fields[0]] {
			skipDepth = strings.Count(trimmed, "{") - strings.Count(trimmed, "}")
			if skipDepth < 0 {
				skipDepth = 0
			}
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// VerifyNoKubeProxy fails when kube-proxy or kindnet runs in the lab: Starlab's datapath replaces both.
func (l *Lab) VerifyNoKubeProxy(ctx context.Context) error {
	cs, err := l.Clientset()
	if err != nil {
		return err
	}
	dss, err := cs.AppsV1().DaemonSets("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list DaemonSets of lab %q: %w", l.name, err)
	}
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list kube-system pods of lab %q: %w", l.name, err)
	}
	var found []string
	for _, ds := range dss.Items {
		if isProxyOrKindnet(ds.Name) {
			found = append(found, "daemonset/"+ds.Name)
		}
	}
	for _, p := range pods.Items {
		if isProxyOrKindnet(p.Name) {
			found = append(found, "pod/"+p.Name)
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("lab %q runs %s: the cluster was not created with kubeProxyMode none and disableDefaultCNI (run `starlab down --name %s` and `starlab up` again)", l.name, strings.Join(found, ", "), l.name)
	}
	return nil
}

func isProxyOrKindnet(name string) bool {
	return strings.HasPrefix(name, "kube-proxy") || strings.HasPrefix(name, "kindnet")
}
