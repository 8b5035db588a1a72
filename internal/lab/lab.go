package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

// Lab is one Starlab lab: a kind cluster (docker node provider) and its kubeconfig file.
type Lab struct {
	name       string
	kubeconfig string
	provider   *cluster.Provider
	log        *slog.Logger
}

// Option changes how Open sets up a Lab.
type Option func(*Lab)

// WithKubeconfigPath writes and reads the lab's kubeconfig at path instead of $HOME/.kube/starlab-<name>.yaml.
func WithKubeconfigPath(path string) Option { return func(l *Lab) { l.kubeconfig = path } }

// WithLogger logs through logger instead of slog.Default().
func WithLogger(logger *slog.Logger) Option { return func(l *Lab) { l.log = logger } }

// Open returns the lab called name. It does not touch docker: the cluster may or may not exist.
func Open(name string, opts ...Option) (*Lab, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	l := &Lab{name: name, log: slog.Default()}
	for _, o := range opts {
		o(l)
	}
	if l.kubeconfig == "" {
		path, err := DefaultKubeconfigPath(name)
		if err != nil {
			return nil, err
		}
		l.kubeconfig = path
	}
	l.provider = cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindLogger{l.log}))
	return l, nil
}

// DefaultKubeconfigPath is where a lab's kubeconfig lives: $HOME/.kube/starlab-<name>.yaml.
func DefaultKubeconfigPath(name string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("kubeconfig path of lab %q: %w", name, err)
	}
	return filepath.Join(home, ".kube", "starlab-"+name+".yaml"), nil
}

// Name is the lab (kind cluster) name.
func (l *Lab) Name() string { return l.name }

// KubeconfigPath is the lab's kubeconfig file (written by Create and by WriteKubeconfig).
func (l *Lab) KubeconfigPath() string { return l.kubeconfig }

// State is what docker holds for a lab.
type State string

// Lab states.
const (
	StateAbsent  State = "absent"  // no node container
	StateRunning State = "running" // every node container running
	StateBroken  State = "broken"  // node containers exist but not all run (machine stop, crash)
)

// Existing describes the node containers docker holds for a lab.
type Existing struct {
	State      State
	Nodes      int      // node containers
	Workers    int      // of which workers
	Images     []string // distinct node images
	NotRunning []string // containers not running, "name (state)"
}

// Inspect reports what docker holds for the lab.
func (l *Lab) Inspect(ctx context.Context) (Existing, error) {
	cs, err := kindContainers(ctx, l.name)
	if err != nil {
		return Existing{}, err
	}
	return summarize(cs), nil
}

func summarize(cs []container) Existing {
	e := Existing{State: StateAbsent, Nodes: len(cs)}
	if len(cs) == 0 {
		return e
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if c.Role == "worker" {
			e.Workers++
		}
		if !seen[c.Image] {
			seen[c.Image] = true
			e.Images = append(e.Images, c.Image)
		}
		if c.State != "running" {
			e.NotRunning = append(e.NotRunning, fmt.Sprintf("%s (%s)", c.Name, c.State))
		}
	}
	e.State = StateRunning
	if len(e.NotRunning) > 0 {
		e.State = StateBroken
	}
	return e
}

// ErrNameTaken is wrapped by errors about a lab name used by a cluster that does not match the request.
var ErrNameTaken = errors.New("lab name taken")

// CheckReusable tells whether an existing lab matches cfg (then `up` reuses it) and returns an error wrapping
// ErrNameTaken that names the difference and the fix when it does not.
func (e Existing) CheckReusable(cfg ClusterConfig) error {
	fix := fmt.Sprintf("run `starlab down --name %s` first, or choose another --name", cfg.Name)
	switch {
	case e.State == StateBroken:
		return fmt.Errorf("%w: lab %q exists but node containers are not running: %s; %s", ErrNameTaken, cfg.Name, strings.Join(e.NotRunning, ", "), fix)
	case e.Workers != cfg.Workers || e.Nodes != cfg.Workers+1:
		return fmt.Errorf("%w: lab %q exists with %d nodes (%d workers), requested %d workers; %s", ErrNameTaken, cfg.Name, e.Nodes, e.Workers, cfg.Workers, fix)
	case len(e.Images) != 1 || nodeImageVersion(e.Images[0]) != nodeImageVersion(cfg.NodeImage):
		return fmt.Errorf("%w: lab %q runs node image %s, requested %s (another Kubernetes version); %s", ErrNameTaken, cfg.Name, strings.Join(e.Images, ","), cfg.NodeImage, fix)
	}
	// The same Kubernetes version on a node image built from older builder code: keep the cluster and
	// upgrade what runs on it (the chart and the demo); `starlab down` + `up` picks up the new image.
	return nil
}

// nodeImageVersion is the Kubernetes version of a node image reference: its tag up to the first "-"
// (localhost/starlab/kind-node:v1.37.2-27fe470111e6 -> v1.37.2), or the whole reference without a tag.
func nodeImageVersion(ref string) string {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref
	}
	tag := ref[i+1:]
	if j := strings.Index(tag, "-"); j >= 0 {
		tag = tag[:j]
	}
	return tag
}

// Create creates the kind cluster of cfg (cfg.Name must be the lab's name) and writes the kubeconfig. It does
// not wait for readiness: kind's wait needs a CNI; use WaitControlPlane.
func (l *Lab) Create(ctx context.Context, cfg ClusterConfig) error {
	if cfg.Name != l.name {
		return fmt.Errorf("create lab %q: config is for %q", l.name, cfg.Name)
	}
	kcfg, err := KindConfig(cfg)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create lab %q: %w", l.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(l.kubeconfig), 0o700); err != nil {
		return fmt.Errorf("create kubeconfig directory: %w", err)
	}
	// kind's Create takes no context; it runs `docker run`/`docker exec` for ~25 s on this machine.
	err = l.provider.Create(l.name,
		cluster.CreateWithV1Alpha4Config(kcfg),
		cluster.CreateWithKubeconfigPath(l.kubeconfig),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return fmt.Errorf("create kind cluster %q: %w", l.name, err)
	}
	return ctx.Err()
}

// WriteKubeconfig (re)writes the lab's kubeconfig file from the running cluster (mode 0600) and returns its path.
func (l *Lab) WriteKubeconfig(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	cfg, err := l.provider.KubeConfig(l.name, false)
	if err != nil {
		return "", fmt.Errorf("kubeconfig of lab %q: %w", l.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(l.kubeconfig), 0o700); err != nil {
		return "", fmt.Errorf("create kubeconfig directory: %w", err)
	}
	if err := os.WriteFile(l.kubeconfig, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig of lab %q: %w", l.name, err)
	}
	return l.kubeconfig, nil
}

// RESTConfig loads the lab's kubeconfig file.
func (l *Lab) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s of lab %q (run `starlab up --name %s`): %w", l.kubeconfig, l.name, l.name, err)
	}
	return cfg, nil
}

// Clientset returns a client-go clientset for the lab.
func (l *Lab) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for lab %q: %w", l.name, err)
	}
	return cs, nil
}

// Nodes lists the lab's node containers as kind nodes (for `docker exec`-style commands and image loading).
func (l *Lab) Nodes(ctx context.Context) ([]nodes.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := l.provider.ListNodes(l.name)
	if err != nil {
		return nil, fmt.Errorf("list nodes of lab %q: %w", l.name, err)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("lab %q has no nodes (run `starlab up --name %s`)", l.name, l.name)
	}
	return ns, nil
}

// APIServerAddress is the control-plane node's own address and port (e.g. "172.18.0.2:6443"): what the agent
// dials, never a ClusterIP.
func (l *Lab) APIServerAddress(ctx context.Context) (host string, port int, err error) {
	ns, err := l.Nodes(ctx)
	if err != nil {
		return "", 0, err
	}
	cp, err := nodeutils.BootstrapControlPlaneNode(ns)
	if err != nil {
		return "", 0, fmt.Errorf("control-plane node of lab %q: %w", l.name, err)
	}
	ipv4, _, err := cp.IP()
	if err != nil {
		return "", 0, fmt.Errorf("address of %s: %w", cp.String(), err)
	}
	return ipv4, APIServerPort, nil
}

// Delete removes the lab's node containers, their volumes and the kubeconfig file, and nothing else (the
// shared `kind` docker network stays). Deleting an absent lab is not an error.
func (l *Lab) Delete(ctx context.Context) error {
	cs, err := kindContainers(ctx, l.name)
	if err != nil {
		return err
	}
	var volumes []string
	for _, c := range cs {
		volumes = append(volumes, c.Volumes...)
	}
	if len(cs) > 0 {
		// kind removes the containers (docker rm -f -v) and the lab's entry from the kubeconfig file.
		if err := l.provider.Delete(l.name, l.kubeconfig); err != nil {
			return fmt.Errorf("delete kind cluster %q: %w", l.name, err)
		}
		if err := removeVolumes(ctx, volumes); err != nil {
			return fmt.Errorf("delete lab %q: %w", l.name, err)
		}
	}
	if err := os.Remove(l.kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove kubeconfig of lab %q: %w", l.name, err)
	}
	return nil
}

// List returns the names of every kind cluster docker holds (labs and other kind clusters).
func List(ctx context.Context) ([]string, error) {
	cs, err := kindContainers(ctx, "")
	if err != nil {
		return nil, err
	}
	var names []string
	seen := map[string]bool{}
	for _, c := range cs {
		if !seen[c.Cluster] {
			seen[c.Cluster] = true
			names = append(names, c.Cluster)
		}
	}
	return names, nil
}

// kindLogger sends kind's log lines to slog (kind's info at debug level: the progress printer is the UI).
type kindLogger struct{ l *slog.Logger }

func (k kindLogger) Warn(message string) { k.l.Warn(message, "from", "kind") }
func (k kindLogger) Warnf(format string, args ...any) {
	k.l.Warn(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindLogger) Error(message string) { k.l.Error(message, "from", "kind") }
func (k kindLogger) Errorf(format string, args ...any) {
	k.l.Error(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindLogger) V(level kindlog.Level) kindlog.InfoLogger { return kindInfo{l: k.l} }

type kindInfo struct{ l *slog.Logger }

func (k kindInfo) Info(message string) { k.l.Debug(message, "from", "kind") }
func (k kindInfo) Infof(format string, args ...any) {
	k.l.Debug(fmt.Sprintf(format, args...), "from", "kind")
}
func (k kindInfo) Enabled() bool { return k.l.Enabled(context.Background(), slog.LevelDebug) }
