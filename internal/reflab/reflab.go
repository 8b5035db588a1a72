// Package reflab turns a plain lab cluster (kind, kubeProxyMode none, no CNI: `lab.Up` with ClusterOnly)
// into the benchmark's reference: upstream kube-proxy (iptables or nftables mode) with plain routed pod
// networking and no NetworkPolicy enforcement.
//
//   - Pod networking: starlab-cni in its routed mode (a veth per pod, the pod's /32 routed to it, a default
//     route through 169.254.1.1; no agent, no BPF), written into every node with its conflist, and one route
//     per other node's pod CIDR via that node's IP (what kindnet does with ptp and host-local).
//   - kube-proxy: the binary nodeimage.BuildKubeProxy built from the node image's Kubernetes module, packed
//     as localhost/starlab/kube-proxy:<hash>, loaded into this lab's nodes only, run as the DaemonSet
//     kube-system/kube-proxy. The image holds kube-proxy alone: iptables, nft and conntrack are the node's
//     (the Debian packages of the node image), mounted read-only from the node.
package reflab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/lab"
)

// Proxy modes of kube-proxy the reference lab runs.
const (
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
)

// ImageName is the kube-proxy image's name under localhost/starlab/.
const ImageName = "kube-proxy"

// Namespace and DaemonSet of kube-proxy.
const (
	Namespace     = "kube-system"
	DaemonSetName = "kube-proxy"
)

// ValidMode fails on a proxy mode the reference lab does not run.
func ValidMode(mode string) error {
	if mode != ModeIPTables && mode != ModeNFTables {
		return fmt.Errorf("kube-proxy mode %q: use %s or %s", mode, ModeIPTables, ModeNFTables)
	}
	return nil
}

// node is one node of the lab: its kind handle, IP and pod CIDR.
type node struct {
	kind    nodes.Node
	name    string
	ip      string
	podCIDR netip.Prefix
}

func labNodes(ctx context.Context, l *lab.Lab) ([]node, error) {
	kns, err := l.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := l.Clientset()
	if err != nil {
		return nil, err
	}
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes of lab %q: %w", l.Name(), err)
	}
	byName := map[string]nodes.Node{}
	for _, n := range kns {
		byName[n.String()] = n
	}
	var out []node
	for _, n := range list.Items {
		kn, ok := byName[n.Name]
		if !ok {
			return nil, fmt.Errorf("node %s of lab %q has no kind container", n.Name, l.Name())
		}
		p, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			return nil, fmt.Errorf("node %s of lab %q: pod CIDR %q: %w (the controller-manager allocates it)", n.Name, l.Name(), n.Spec.PodCIDR, err)
		}
		ip := ""
		for _, a := range n.Status.Addresses {
			if a.Type == "InternalIP" {
				ip = a.Address
			}
		}
		if ip == "" {
			return nil, fmt.Errorf("node %s of lab %q has no InternalIP", n.Name, l.Name())
		}
		out = append(out, node{kind: kn, name: n.Name, ip: ip, podCIDR: p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lab %q has no nodes", l.Name())
	}
	return out, nil
}

// run runs a command in a node with stdin; stderr goes into the error.
func run(ctx context.Context, n nodes.Node, stdin []byte, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := n.CommandContext(ctx, name, args...).SetStderr(&stderr)
	if stdin != nil {
		cmd = cmd.SetStdin(bytes.NewReader(stdin))
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("node %s: %s %s: %w: %s", n.String(), name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Conflist is the routed starlab-cni network config of a node.
func Conflist(podCIDR netip.Prefix) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "routed",
  "plugins": [{"type": "starlab-cni", "podCIDR": %q, "mode": "routed"}]
}
`, podCIDR.String())
}

// InstallNetwork installs the routed pod networking: the starlab-cni binary (from binDir) and its routed
// conflist in every node, and the routes to the other nodes' pod CIDRs. Idempotent.
func InstallNetwork(ctx context.Context, l *lab.Lab, binDir string) error {
	plugin, err := os.ReadFile(filepath.Join(binDir, "starlab-cni"))
	if err != nil {
		return fmt.Errorf("read the CNI plugin (run `make build`, or pass --bin-dir): %w", err)
	}
	// A freshly created node gets its pod CIDR from the controller-manager a few seconds after it registers.
	var ns []node
	for deadline := time.Now().Add(time.Minute); ; {
		if ns, err = labNodes(ctx, l); err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		return err
	}
	for _, n := range ns {
		if err := run(ctx, n.kind, plugin, "sh", "-c", "mkdir -p /opt/cni/bin && cat > /opt/cni/bin/.starlab-cni.new && chmod 755 /opt/cni/bin/.starlab-cni.new && mv /opt/cni/bin/.starlab-cni.new /opt/cni/bin/starlab-cni"); err != nil {
			return fmt.Errorf("install starlab-cni: %w", err)
		}
		if err := run(ctx, n.kind, []byte(Conflist(n.podCIDR)), "sh", "-c", "mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/.05-routed.new && mv /etc/cni/net.d/.05-routed.new /etc/cni/net.d/05-routed.conflist"); err != nil {
			return fmt.Errorf("write the routed conflist: %w", err)
		}
		for _, other := range ns {
			if other.name == n.name {
				continue
			}
			if err := run(ctx, n.kind, nil, "ip", "route", "replace", other.podCIDR.String(), "via", other.ip); err != nil {
				return fmt.Errorf("route to %s's pod CIDR: %w", other.name, err)
			}
		}
	}
	return nil
}

// InstallKubeProxy builds the kube-proxy image from the binary at kubeProxyBinary, loads it where missing
// and applies kube-proxy in mode, waiting until every node runs it. Changing the mode rolls the DaemonSet;
// its init container (kube-proxy --cleanup) removes the rules of the previous mode first.
func InstallKubeProxy(ctx context.Context, l *lab.Lab, kubeProxyBinary, mode string, timeout time.Duration) (string, error) {
	if err := ValidMode(mode); err != nil {
		return "", err
	}
	ns, err := l.Nodes(ctx)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "starlab-kube-proxy-")
	if err != nil {
		return "", fmt.Errorf("temporary directory for the kube-proxy image: %w", err)
	}
	defer os.RemoveAll(tmp)
	spec := images.Spec{Name: ImageName, Binaries: []string{filepath.Base(kubeProxyBinary)}, Dir: imageBinDir,
		Entrypoint: []string{imageBinDir + "/" + filepath.Base(kubeProxyBinary)}}
	refs, err := images.Ensure(ctx, filepath.Dir(kubeProxyBinary), filepath.Join(tmp, "kube-proxy.tar"), []images.Spec{spec}, ns)
	if err != nil {
		return "", err
	}
	ref := refs[ImageName]
	host, port, err := l.APIServerAddress(ctx)
	if err != nil {
		return "", err
	}
	objs, err := lab.DecodeManifests([]byte(Manifest(ref, mode, host, port)))
	if err != nil {
		return "", err
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return "", err
	}
	a, err := lab.NewApplier(cfg, "starlab-bench")
	if err != nil {
		return "", err
	}
	if _, err := a.Apply(ctx, objs); err != nil {
		return "", fmt.Errorf("apply kube-proxy (%s) to lab %q: %w", mode, l.Name(), err)
	}
	return ref, waitRollout(ctx, l, mode, timeout)
}

// imageBinDir is where the kube-proxy image holds its binary: outside /usr, which is the node's.
const imageBinDir = "/kube-proxy"

// modeAnnotation on the pod template names the proxy mode, so a mode change rolls the pods.
const modeAnnotation = "bench.starlab.dev/proxy-mode"

func waitRollout(ctx context.Context, l *lab.Lab, mode string, timeout time.Duration) error {
	cs, err := l.Clientset()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		ds, err := cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
		if err == nil {
			if rolledOut(ds, mode) {
				return nil
			}
			last = fmt.Sprintf("desired %d, updated %d, available %d", ds.Status.DesiredNumberScheduled, ds.Status.UpdatedNumberScheduled, ds.Status.NumberAvailable)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-proxy (%s) not running on every node of lab %q after %s (%s): see `kubectl -n kube-system logs ds/kube-proxy`", mode, l.Name(), timeout, last)
		case <-time.After(time.Second):
		}
	}
}

func rolledOut(ds *appsv1.DaemonSet, mode string) bool {
	s := ds.Status
	return ds.Spec.Template.Annotations[modeAnnotation] == mode && s.ObservedGeneration >= ds.Generation &&
		s.DesiredNumberScheduled > 0 && s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
		s.NumberAvailable == s.DesiredNumberScheduled && s.NumberUnavailable == 0
}

// Manifest renders kube-proxy: its ServiceAccount bound to system:node-proxier, its configuration
// (mode, the lab's pod CIDR, conntrack sysctls left alone as in kind), and the DaemonSet talking to the
// API server at host:port (never through a ClusterIP: nothing translates those before kube-proxy runs).
func Manifest(image, mode, host string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-proxy, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: starlab-bench-kube-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node-proxier}
subjects: [{kind: ServiceAccount, name: kube-proxy, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-proxy, namespace: kube-system}
data:
  config.conf: |
    apiVersion: kubeproxy.config.k8s.io/v1alpha1
    kind: KubeProxyConfiguration
    mode: %[2]s
    clusterCIDR: %[5]s
    conntrack: {maxPerCore: 0}
    metricsBindAddress: 127.0.0.1:10249
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy, namespace: kube-system, labels: {k8s-app: kube-proxy}}
spec:
  selector: {matchLabels: {k8s-app: kube-proxy}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 100%%}}
  template:
    metadata:
      labels: {k8s-app: kube-proxy}
      annotations: {%[6]s: %[2]s}
    spec:
      serviceAccountName: kube-proxy
      hostNetwork: true
      priorityClassName: system-node-critical
      tolerations: [{operator: Exists}]
      initContainers:
      - name: cleanup
        image: %[1]s
        imagePullPolicy: Never
        command: [%[7]s/kube-proxy, --cleanup, --v=1]
        env:
        - {name: PATH, value: "%[7]s:/usr/sbin:/usr/bin"}
        - {name: KUBERNETES_SERVICE_HOST, value: "%[3]s"}
        - {name: KUBERNETES_SERVICE_PORT, value: "%[4]d"}
        securityContext: {privileged: true}
        volumeMounts:%[8]s
      containers:
      - name: kube-proxy
        image: %[1]s
        imagePullPolicy: Never
        command: [%[7]s/kube-proxy, --config=/var/lib/kube-proxy/config.conf, --hostname-override=$(NODE_NAME)]
        env:
        - {name: PATH, value: "%[7]s:/usr/sbin:/usr/bin"}
        - {name: KUBERNETES_SERVICE_HOST, value: "%[3]s"}
        - {name: KUBERNETES_SERVICE_PORT, value: "%[4]d"}
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        securityContext: {privileged: true}
        volumeMounts:%[8]s
      volumes:
      - {name: usr, hostPath: {path: /usr}}
      - {name: lib, hostPath: {path: /usr/lib}}
      - {name: lib64, hostPath: {path: /usr/lib64}}
      - {name: alternatives, hostPath: {path: /etc/alternatives}}
      - {name: modules, hostPath: {path: /lib/modules}}
      - {name: xtables-lock, hostPath: {path: /run/xtables.lock, type: FileOrCreate}}
      - {name: config, configMap: {name: kube-proxy}}
`, image, mode, host, port, lab.PodSubnet, modeAnnotation, imageBinDir, volumeMounts)
}

// volumeMounts of both containers: the node's /usr (iptables, nft, conntrack and their libraries; /lib and
// /lib64 resolve into it as on the node), the alternatives choosing iptables' backend, the xtables lock.
const volumeMounts = `
        - {name: usr, mountPath: /usr, readOnly: true}
        - {name: lib, mountPath: /lib, readOnly: true}
        - {name: lib64, mountPath: /lib64, readOnly: true}
        - {name: alternatives, mountPath: /etc/alternatives, readOnly: true}
        - {name: modules, mountPath: /lib/modules, readOnly: true}
        - {name: xtables-lock, mountPath: /run/xtables.lock}
        - {name: config, mountPath: /var/lib/kube-proxy}`
