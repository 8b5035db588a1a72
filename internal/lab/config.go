// Package lab is the Starlab cluster lifecycle: kind config, create, delete, status, kubeconfig, post-create
// steps (bpffs, CoreDNS without a forwarder) and the `starlab up` pipeline of named steps. It uses kind's Go
// library (sigs.k8s.io/kind/pkg/cluster) with the docker node provider; it never runs a kind binary.
package lab

import (
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// Networking of every lab (docs/ARCHITECTURE.md: pod and service CIDRs).
const (
	PodSubnet     = "10.244.0.0/16"
	ServiceSubnet = "10.96.0.0/16"
	// APIServerPort is the API server's port on the control-plane node's own address.
	APIServerPort = 6443
	// DefaultWorkers is the number of worker nodes of a lab unless told otherwise.
	DefaultWorkers = 2
	// maxWorkers bounds --workers: every node costs ~0.5 GiB of docker volume and memory on this machine.
	maxWorkers = 8
)

// ClusterConfig describes the kind cluster of one lab.
type ClusterConfig struct {
	// Name is the lab (kind cluster) name.
	Name string
	// Workers is the number of worker nodes besides the single control-plane.
	Workers int
	// NodeImage is the node image reference (from internal/nodeimage), e.g. localhost/kindest-node:v1.37.2-offline.
	NodeImage string
	// KubernetesVersion is the version the node image carries, e.g. "v1.37.2".
	KubernetesVersion string
	// EtcdTag and CoreDNSTag pin kubeadm's etcd and CoreDNS image tags to what the node image preloaded
	// (e.g. "3.6.5-0" and "v1.12.1"). Empty leaves kubeadm's default.
	EtcdTag    string
	CoreDNSTag string
	// CgroupV1 is true when the host runs cgroup v1 (see HostCgroupV1); with Kubernetes >= 1.35 the kubelet
	// then needs failCgroupV1: false.
	CgroupV1 bool
}

var clusterNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks that name is usable as a kind cluster name (and so as docker container and host names).
func ValidateName(name string) error {
	// kind node names are "<name>-control-plane" / "<name>-worker<N>": keep room for the suffix in a
	// 63-character hostname.
	if len(name) == 0 || len(name) > 40 || !clusterNameRE.MatchString(name) {
		return fmt.Errorf("invalid lab name %q: use 1-40 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// Validate reports the first problem of c as an error naming the field and the fix.
func (c ClusterConfig) Validate() error {
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if c.Workers < 0 || c.Workers > maxWorkers {
		return fmt.Errorf("invalid --workers %d: use 0..%d", c.Workers, maxWorkers)
	}
	if c.NodeImage == "" {
		return fmt.Errorf("lab %q: no node image given (the node image step must run first)", c.Name)
	}
	if _, _, err := parseMinor(c.KubernetesVersion); err != nil {
		return fmt.Errorf("lab %q: %w", c.Name, err)
	}
	return nil
}

// parseMinor returns the major and minor number of a version like "v1.37.2".
func parseMinor(version string) (major, minor int, err error) {
	var patch int
	if _, err := fmt.Sscanf(strings.TrimPrefix(version, "v"), "%d.%d.%d", &major, &minor, &patch); err != nil {
		return 0, 0, fmt.Errorf("invalid Kubernetes version %q: want vMAJOR.MINOR.PATCH, e.g. v1.37.2", version)
	}
	return major, minor, nil
}

// needsFailCgroupV1Off reports whether the kubelet refuses cgroup v1 by default (Kubernetes >= 1.35).
func needsFailCgroupV1Off(version string) bool {
	major, minor, err := parseMinor(version)
	if err != nil {
		return false
	}
	return major > 1 || (major == 1 && minor >= 35)
}

// KindConfig renders c as kind's v1alpha4 cluster config: one control-plane and c.Workers workers on the node
// image, no kube-proxy, no default CNI, the Starlab CIDRs, the etcd/CoreDNS tags pinned to the preloaded
// images, and failCgroupV1: false only on cgroup v1 hosts with Kubernetes >= 1.35.
func KindConfig(c ClusterConfig) (*v1alpha4.Cluster, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.Name,
		Networking: v1alpha4.Networking{
			IPFamily:          v1alpha4.IPv4Family,
			PodSubnet:         PodSubnet,
			ServiceSubnet:     ServiceSubnet,
			DisableDefaultCNI: true,
			KubeProxyMode:     noneProxyMode,
		},
	}
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: c.NodeImage})
	for range c.Workers {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: c.NodeImage})
	}
	if patch := clusterConfigurationPatch(c.EtcdTag, c.CoreDNSTag); patch != "" {
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, patch)
	}
	if c.CgroupV1 && needsFailCgroupV1Off(c.KubernetesVersion) {
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, "kind: KubeletConfiguration\nfailCgroupV1: false\n")
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

// clusterConfigurationPatch pins kubeadm's etcd and CoreDNS image tags.
func clusterConfigurationPatch(etcdTag, dnsTag string) string {
	if etcdTag == "" && dnsTag == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("kind: ClusterConfiguration\n")
	if etcdTag != "" {
		fmt.Fprintf(&b, "etcd:\n  local:\n    imageTag: %q\n", etcdTag)
	}
	if dnsTag != "" {
		fmt.Fprintf(&b, "dns:\n  imageTag: %q\n", dnsTag)
	}
	return b.String()
}

// HostCgroupV1 reports whether this host runs cgroup v1: /sys/fs/cgroup is not a cgroup2 mount.
func HostCgroupV1() (bool, error) {
	return cgroupV1At("/sys/fs/cgroup")
}

func cgroupV1At(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type != unix.CGROUP2_SUPER_MAGIC, nil
}

// noneProxyMode disables kube-proxy (kind's v1alpha4 package has no constant for it; its internal API does).
const noneProxyMode v1alpha4.ProxyMode = "none"
