package lab

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CleanupStale removes what earlier runs left behind for labs whose name starts with prefix (after a machine
// stop the docker engine comes back with exited node containers, volumes and kubeconfig files):
//   - every container carrying kind's cluster label io.x-k8s.kind.cluster whose cluster name starts with
//     prefix, in any state, with its volumes;
//   - dangling docker volumes that held the /var of such a node (recognised by the kubelet client
//     certificate inside, CN system:node:<prefix>...);
//   - kubeconfig files $HOME/.kube/starlab-<prefix>*.yaml.
//
// Nothing else is touched: other kind clusters, other volumes, and kind's shared `kind` docker network
// (kind reuses it; removing it under a concurrent create would break that create). It returns what it removed.
func CleanupStale(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" || !clusterNameRE.MatchString(strings.TrimSuffix(prefix, "-")) {
		return nil, fmt.Errorf("cleanup: invalid lab name prefix %q: use lowercase letters, digits and '-' (an empty prefix would match every lab)", prefix)
	}
	var removed []string
	cs, err := kindContainers(ctx, "")
	if err != nil {
		return nil, err
	}
	var ours []container
	for _, c := range cs {
		if strings.HasPrefix(c.Cluster, prefix) {
			ours = append(ours, c)
			removed = append(removed, "container "+c.Name)
		}
	}
	if err := removeContainers(ctx, ours); err != nil {
		return removed, fmt.Errorf("cleanup %s*: %w", prefix, err)
	}
	vols, err := staleNodeVolumes(ctx, prefix)
	if err != nil {
		return removed, err
	}
	if err := removeVolumes(ctx, vols); err != nil {
		return removed, fmt.Errorf("cleanup %s*: %w", prefix, err)
	}
	for _, v := range vols {
		removed = append(removed, "volume "+v)
	}
	files, err := staleKubeconfigs(prefix)
	if err != nil {
		return removed, err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("cleanup: remove %s: %w", f, err)
		}
		removed = append(removed, "kubeconfig "+f)
	}
	return removed, nil
}

// staleNodeVolumes returns dangling volumes whose kubelet client certificate names a node of a lab with the prefix.
func staleNodeVolumes(ctx context.Context, prefix string) ([]string, error) {
	out, err := docker(ctx, "volume", "ls", "-q", "--filter", "dangling=true")
	if err != nil {
		return nil, fmt.Errorf("cleanup: list dangling volumes: %w", err)
	}
	names := strings.Fields(string(out))
	if len(names) == 0 {
		return nil, nil
	}
	out, err = docker(ctx, append([]string{"volume", "inspect"}, names...)...)
	if err != nil {
		return nil, fmt.Errorf("cleanup: inspect dangling volumes: %w", err)
	}
	var vols []struct{ Name, Mountpoint string }
	if err := json.Unmarshal(out, &vols); err != nil {
		return nil, fmt.Errorf("cleanup: decode docker volume inspect output: %w", err)
	}
	var stale []string
	for _, v := range vols {
		if node, ok := volumeNodeName(v.Mountpoint); ok && strings.HasPrefix(node, prefix) {
			stale = append(stale, v.Name)
		}
	}
	return stale, nil
}

// volumeNodeName returns the node name in the kubelet client certificate of a node's /var volume. The
// certificates are lib/kubelet/pki/kubelet-client-<date>.pem; kubelet-client-current.pem is an absolute
// symlink (valid only inside the node), so the dated files are read.
func volumeNodeName(mountpoint string) (string, bool) {
	certs, err := filepath.Glob(filepath.Join(mountpoint, "lib", "kubelet", "pki", "kubelet-client-*.pem"))
	if err != nil {
		return "", false
	}
	for _, c := range certs {
		if fi, err := os.Lstat(c); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if node, ok := kubeletNodeName(c); ok {
			return node, true
		}
	}
	return "", false
}

// kubeletNodeName reads a kubelet client certificate and returns the node name of its CN system:node:<name>.
func kubeletNodeName(path string) (string, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return "", false
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return "", false
		}
		name, ok := strings.CutPrefix(cert.Subject.CommonName, "system:node:")
		return name, ok
	}
}

// staleKubeconfigs lists $HOME/.kube/starlab-<prefix>*.yaml.
func staleKubeconfigs(prefix string) ([]string, error) {
	sample, err := DefaultKubeconfigPath(prefix)
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(strings.TrimSuffix(sample, ".yaml") + "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("cleanup: list kubeconfig files: %w", err)
	}
	return files, nil
}
