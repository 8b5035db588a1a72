package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/starlab-dev/starlab/internal/helmrelease"
	"github.com/starlab-dev/starlab/internal/images"
	"github.com/starlab-dev/starlab/internal/kubeready"
	"github.com/starlab-dev/starlab/internal/progress"
)

// NodeImage is the node image a lab runs (what internal/nodeimage built).
type NodeImage struct {
	Ref               string `json:"ref"`
	KubernetesVersion string `json:"kubernetesVersion"`
	EtcdTag           string `json:"etcdTag"`
	CoreDNSTag        string `json:"coreDNSTag"`
}

// UpOptions configure Up. The host and node-image steps are functions so this package does not depend on
// how they are done (the CLI passes internal/hostprep and internal/nodeimage).
type UpOptions struct {
	// Workers is the number of worker nodes (the control-plane is always one node).
	Workers int
	// KubernetesVersion to run; "" lets BuildNodeImage choose its default. When SupportedVersions is not
	// empty an unknown version fails before anything runs, listing the supported ones.
	KubernetesVersion string
	SupportedVersions []string
	// PrepareHost readies the host (docker engine answering, privileged containers work); nil skips it.
	PrepareHost func(ctx context.Context) error
	// BuildNodeImage returns the node image for the version (building it when needed). Required.
	BuildNodeImage func(ctx context.Context, version string) (NodeImage, error)
	// ClusterOnly stops after the post-create step (no images, chart, demo): tests of the cluster itself.
	ClusterOnly bool
	// BinDir holds starlab-agent, starlab-cni, starlab-observer and starlab-demo ("" = next to the executable).
	BinDir string
	// Chart and ChartDir are the Helm chart (charts.Starlab, "starlab"); nil Chart skips the chart step.
	Chart    fs.FS
	ChartDir string
	// ChartValues are merged over the values Up computes (images, API server address).
	ChartValues map[string]any
	// TestImages, when set, returns a docker-archive of test images and the references it holds (the
	// upstream conformance suite's agnhost); the test-images step loads it into the nodes that lack one
	// of them. nil skips the step.
	TestImages func(ctx context.Context) (archive string, refs []string, err error)
	// Manifests holds the demo manifests under ManifestDirs (manifests.FS, "stars" and "apis"); nil skips the demo.
	Manifests    fs.FS
	ManifestDirs []string
	// ControlPlaneTimeout bounds the wait for the control plane; ReadyTimeout the chart and final waits.
	ControlPlaneTimeout time.Duration
	ReadyTimeout        time.Duration
	// Progress prints one line per step; nil prints nothing.
	Progress *progress.Reporter
}

// UpResult says what Up did.
type UpResult struct {
	Name       string            `json:"name"`
	Created    bool              `json:"created"` // false: an existing lab was reused and upgraded
	NodeImage  NodeImage         `json:"nodeImage"`
	Kubeconfig string            `json:"kubeconfig"`
	APIServer  string            `json:"apiServer"`        // control-plane node address:6443
	Images     map[string]string `json:"images,omitempty"` // agent, observer, demo -> reference
	TestImages []string          `json:"testImages,omitempty"`
	Chart      string            `json:"chart,omitempty"` // "install" or "upgrade"
	Applied    int               `json:"applied"`         // demo objects applied
	Steps      []StepTime        `json:"steps"`
}

// StepTime is the wall time of one step of Up.
type StepTime struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"durationNs"`
}

// Step names of Up, in order.
const (
	StepHost         = "host"
	StepNodeImage    = "node image"
	StepCluster      = "cluster"
	StepPostCreate   = "post-create"
	StepImages       = "images"
	StepTestImages   = "test images"
	StepChart        = "chart"
	StepDemo         = "demo"
	StepWait         = "wait"
	defaultCPTimeout = 3 * time.Minute
	defaultReady     = 5 * time.Minute
	// diskPerNode is the docker volume space one node takes (~0.55 GiB measured) plus room for images.
	diskPerNode = 700 << 20
	diskReserve = 1 << 30
)

// step is one named, idempotent unit of Up.
type step struct {
	name string
	run  func(ctx context.Context, st *upState) error
}

// upState is what the steps share.
type upState struct {
	opts    UpOptions
	image   NodeImage
	cfg     ClusterConfig
	result  *UpResult
	nodeCnt int
	// namespaces are where Up put workloads (kube-system, the chart's, the demo's): the wait step checks them.
	namespaces []string
}

// Up brings the lab up as a pipeline of named steps: host -> node image -> cluster -> post-create -> images
// -> chart -> demo -> wait. On an existing lab that matches the request, the cluster step only refreshes
// the kubeconfig and every later step runs again as an upgrade (images loaded only where missing, helm
// upgrade, server-side apply), never duplicating anything.
func (l *Lab) Up(ctx context.Context, opts UpOptions) (*UpResult, error) {
	if err := l.checkUpOptions(opts); err != nil {
		return nil, err
	}
	st := &upState{opts: opts, result: &UpResult{Name: l.name, Kubeconfig: l.kubeconfig}, nodeCnt: opts.Workers + 1}
	steps := []step{
		{StepHost, l.stepHost},
		{StepNodeImage, l.stepNodeImage},
		{StepCluster, l.stepCluster},
		{StepPostCreate, l.stepPostCreate},
	}
	if !opts.ClusterOnly {
		steps = append(steps,
			step{StepImages, l.stepImages},
		)
		if opts.TestImages != nil {
			steps = append(steps, step{StepTestImages, l.stepTestImages})
		}
		steps = append(steps,
			step{StepChart, l.stepChart},
			step{StepDemo, l.stepDemo},
			step{StepWait, l.stepWait},
		)
	}
	for _, s := range steps {
		start := time.Now()
		p := opts.Progress.Start(s.name)
		if err := s.run(ctx, st); err != nil {
			return st.result, p.Fail(fmt.Errorf("%s: %w", s.name, err))
		}
		p.Done()
		st.result.Steps = append(st.result.Steps, StepTime{Name: s.name, Duration: time.Since(start)})
	}
	return st.result, nil
}

// checkUpOptions fails fast on bad input, before anything slow runs.
func (l *Lab) checkUpOptions(o UpOptions) error {
	if o.BuildNodeImage == nil {
		return errors.New("up: no node image builder given")
	}
	if o.Workers < 0 || o.Workers > maxWorkers {
		return fmt.Errorf("invalid --workers %d: use 0..%d", o.Workers, maxWorkers)
	}
	if o.KubernetesVersion != "" && len(o.SupportedVersions) > 0 && !slices.Contains(o.SupportedVersions, o.KubernetesVersion) {
		return fmt.Errorf("unknown Kubernetes version %q: supported versions are %s", o.KubernetesVersion, strings.Join(o.SupportedVersions, ", "))
	}
	if o.KubernetesVersion != "" {
		if _, _, err := parseMinor(o.KubernetesVersion); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) stepHost(ctx context.Context, st *upState) error {
	if st.opts.PrepareHost != nil {
		if err := st.opts.PrepareHost(ctx); err != nil {
			return err
		}
	}
	if err := dockerAnswers(ctx); err != nil {
		return err
	}
	// Refuse early (before a long node image build) when the name is taken by a lab of another shape.
	ex, err := l.Inspect(ctx)
	if err != nil {
		return err
	}
	if ex.State == StateAbsent {
		return nil
	}
	probe := ClusterConfig{Name: l.name, Workers: st.opts.Workers}
	if len(ex.Images) > 0 {
		probe.NodeImage = ex.Images[0] // images are compared after the node image step
	}
	return ex.CheckReusable(probe)
}

func (l *Lab) stepNodeImage(ctx context.Context, st *upState) error {
	img, err := st.opts.BuildNodeImage(ctx, st.opts.KubernetesVersion)
	if err != nil {
		return err
	}
	if img.Ref == "" || img.KubernetesVersion == "" {
		return fmt.Errorf("node image builder returned no image reference or version (%+v)", img)
	}
	st.image, st.result.NodeImage = img, img
	return nil
}

func (l *Lab) stepCluster(ctx context.Context, st *upState) error {
	cgv1, err := HostCgroupV1()
	if err != nil {
		return err
	}
	st.cfg = ClusterConfig{
		Name: l.name, Workers: st.opts.Workers, NodeImage: st.image.Ref, KubernetesVersion: st.image.KubernetesVersion,
		EtcdTag: st.image.EtcdTag, CoreDNSTag: st.image.CoreDNSTag, CgroupV1: cgv1,
	}
	ex, err := l.Inspect(ctx)
	if err != nil {
		return err
	}
	switch ex.State {
	case StateAbsent:
		if err := checkDisk(ctx, st.nodeCnt); err != nil {
			return err
		}
		if err := l.Create(ctx, st.cfg); err != nil {
			return err
		}
		st.result.Created = true
	default:
		if err := ex.CheckReusable(st.cfg); err != nil {
			return err
		}
		if _, err := l.WriteKubeconfig(ctx); err != nil {
			return err
		}
	}
	timeout := st.opts.ControlPlaneTimeout
	if timeout == 0 {
		timeout = defaultCPTimeout
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := l.WaitControlPlane(wctx, st.nodeCnt); err != nil {
		return err
	}
	host, port, err := l.APIServerAddress(ctx)
	if err != nil {
		return err
	}
	st.result.APIServer = fmt.Sprintf("%s:%d", host, port)
	return nil
}

func (l *Lab) stepPostCreate(ctx context.Context, st *upState) error {
	if _, err := l.EnsureBPFFS(ctx); err != nil {
		return err
	}
	if err := l.PatchCoreDNS(ctx); err != nil {
		return err
	}
	return l.VerifyNoKubeProxy(ctx)
}

func (l *Lab) stepImages(ctx context.Context, st *upState) error {
	binDir := st.opts.BinDir
	if binDir == "" {
		d, err := images.DefaultBinDir()
		if err != nil {
			return err
		}
		binDir = d
	}
	ns, err := l.Nodes(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "starlab-images-")
	if err != nil {
		return fmt.Errorf("temporary directory for the image archive: %w", err)
	}
	defer os.RemoveAll(tmp)
	refs, err := images.Ensure(ctx, binDir, filepath.Join(tmp, "images.tar"), images.StarlabSpecs(), ns)
	if err != nil {
		return err
	}
	st.result.Images = refs
	return nil
}

// stepTestImages loads the test images archive into the nodes that lack one of its references.
func (l *Lab) stepTestImages(ctx context.Context, st *upState) error {
	archive, refs, err := st.opts.TestImages(ctx)
	if err != nil {
		return err
	}
	ns, err := l.Nodes(ctx)
	if err != nil {
		return err
	}
	missing, err := images.MissingOn(ctx, ns, refs)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		if err := images.LoadArchive(ctx, missing, archive); err != nil {
			return err
		}
	}
	st.result.TestImages = refs
	return nil
}

// ChartValues are the values Up passes to the starlab chart: the agent and observer images and the
// API server's real address for the agent (never a ClusterIP).
func ChartValues(refs map[string]string, apiHost string, apiPort int) map[string]any {
	return map[string]any{
		"agent": map[string]any{
			"image":     refs[images.Agent],
			"apiServer": map[string]any{"host": apiHost, "port": apiPort},
		},
	}
}

// upChartValues are ChartValues plus the observer image when the chart has an observer.
func upChartValues(refs map[string]string, apiHost string, apiPort int, chart fs.FS, dir string) map[string]any {
	values := ChartValues(refs, apiHost, apiPort)
	if obs, ok := refs[images.Observer]; ok && chartHasKey(chart, dir, "observer") {
		values["observer"] = map[string]any{"image": obs}
	}
	return values
}

func (l *Lab) stepChart(ctx context.Context, st *upState) error {
	if st.opts.Chart == nil {
		return nil
	}
	host, port, err := l.APIServerAddress(ctx)
	if err != nil {
		return err
	}
	values := mergeValues(upChartValues(st.result.Images, host, port, st.opts.Chart, st.opts.ChartDir), st.opts.ChartValues)
	res, err := helmrelease.InstallOrUpgrade(ctx, helmrelease.Options{
		Kubeconfig: l.kubeconfig, Chart: st.opts.Chart, ChartDir: st.opts.ChartDir, Values: values,
		Wait: true, Timeout: st.readyTimeout(), Logger: l.log,
	})
	if err != nil {
		return err
	}
	st.result.Chart = res.Action
	st.addNamespace(helmrelease.DefaultNamespace)
	return nil
}

func (st *upState) addNamespace(ns string) {
	if !slices.Contains(st.namespaces, ns) {
		st.namespaces = append(st.namespaces, ns)
	}
}

func (st *upState) readyTimeout() time.Duration {
	if st.opts.ReadyTimeout == 0 {
		return defaultReady
	}
	return st.opts.ReadyTimeout
}

// chartHasKey reports whether the chart's values.yaml has a top-level key (so Up only sets values the
// chart knows: its schema rejects unknown ones).
func chartHasKey(fsys fs.FS, dir, key string) bool {
	data, err := fs.ReadFile(fsys, dir+"/values.yaml")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key+":") {
			return true
		}
	}
	return false
}

// mergeValues merges src into dst recursively (src wins) and returns dst.
func mergeValues(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func (l *Lab) stepDemo(ctx context.Context, st *upState) error {
	if st.opts.Manifests == nil {
		return nil
	}
	dirs := st.opts.ManifestDirs
	if len(dirs) == 0 {
		dirs = []string{"stars", "apis"}
	}
	applied, err := l.ApplyManifests(ctx, st.opts.Manifests, dirs, st.result.Images)
	if err != nil {
		return err
	}
	st.result.Applied = len(applied)
	for _, id := range applied {
		// ids are "Kind namespace/name" or "Namespace name"
		if kind, rest, _ := strings.Cut(id, " "); kind == "Namespace" {
			st.addNamespace(rest)
		} else if ns, _, ok := strings.Cut(rest, "/"); ok {
			st.addNamespace(ns)
		}
	}
	if len(applied) > 0 {
		l.log.Debug("applied demo manifests", "objects", describe(applied))
	}
	return nil
}

// stepWait waits until every node is Ready (the agent's CNI config is what makes them Ready) and every pod
// Up deployed (kube-system, the chart's namespace, the demo's namespaces) is Running and Ready.
func (l *Lab) stepWait(ctx context.Context, st *upState) error {
	ctx, cancel := context.WithTimeout(ctx, st.readyTimeout())
	defer cancel()
	return l.WaitReady(ctx, st.nodeCnt, append([]string{"kube-system"}, st.namespaces...)...)
}

// WaitReady waits until wantNodes nodes are Ready and every pod in the namespaces (all namespaces when
// none is given) is Running and Ready or Succeeded; pods being deleted are ignored. The deadline comes
// from ctx; on timeout the error names what was not ready.
func (l *Lab) WaitReady(ctx context.Context, wantNodes int, namespaces ...string) error {
	cs, err := l.Clientset()
	if err != nil {
		return err
	}
	var missing string
	for {
		missing = ""
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		switch {
		case err != nil:
			missing = fmt.Sprintf("list nodes: %v", err)
		case len(nodes.Items) < wantNodes:
			missing = fmt.Sprintf("%d of %d nodes registered", len(nodes.Items), wantNodes)
		default:
			var notReady []string
			for i := range nodes.Items {
				if !kubeready.Node(&nodes.Items[i]) {
					notReady = append(notReady, nodes.Items[i].Name)
				}
			}
			if len(notReady) > 0 {
				missing = "nodes not Ready: " + describe(notReady)
			}
		}
		if missing == "" {
			pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			if err != nil {
				missing = fmt.Sprintf("list pods: %v", err)
			} else {
				var notReady []string
				for i := range pods.Items {
					p := &pods.Items[i]
					if len(namespaces) > 0 && !slices.Contains(namespaces, p.Namespace) || p.DeletionTimestamp != nil {
						continue
					}
					if p.Status.Phase != corev1.PodSucceeded && !podReady(p) {
						notReady = append(notReady, p.Namespace+"/"+p.Name+" ("+string(p.Status.Phase)+")")
					}
				}
				if len(notReady) > 0 {
					missing = "pods not Ready: " + describe(notReady)
				}
			}
		}
		if missing == "" {
			missing = rolloutsMissing(ctx, cs, namespaces)
		}
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab %q not ready: %s: %w", l.name, missing, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// checkDisk fails when docker's data directory has too little free space for nodes more nodes.
func checkDisk(ctx context.Context, nodes int) error {
	out, err := docker(ctx, "info", "--format", "{{.DockerRootDir}}")
	if err != nil {
		return fmt.Errorf("find docker's data directory: %w", err)
	}
	root := strings.TrimSpace(string(out))
	var fsst unix.Statfs_t
	if err := unix.Statfs(root, &fsst); err != nil {
		return fmt.Errorf("free space of %s: %w", root, err)
	}
	free := int64(fsst.Bavail) * int64(fsst.Bsize)
	return diskEnough(root, free, nodes)
}

func diskEnough(root string, free int64, nodes int) error {
	need := int64(nodes)*diskPerNode + diskReserve
	if free < need {
		return fmt.Errorf("too little disk for a %d-node lab: %s has %.1f GiB free, need %.1f GiB (free space, e.g. `starlab down` other labs or `docker image prune`, or use fewer --workers)",
			nodes, root, float64(free)/(1<<30), float64(need)/(1<<30))
	}
	return nil
}

// rolloutsMissing names the Deployments and DaemonSets (in namespaces, or all) whose latest spec is not yet
// rolled out and available everywhere, or returns "".
func rolloutsMissing(ctx context.Context, cs kubernetes.Interface, namespaces []string) string {
	deps, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("list deployments: %v", err)
	}
	dss, err := cs.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("list daemonsets: %v", err)
	}
	in := func(ns string) bool { return len(namespaces) == 0 || slices.Contains(namespaces, ns) }
	var pending []string
	for _, d := range deps.Items {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		if in(d.Namespace) && (st.ObservedGeneration < d.Generation || st.UpdatedReplicas < want || st.AvailableReplicas < want || st.Replicas > want) {
			pending = append(pending, "deployment "+d.Namespace+"/"+d.Name)
		}
	}
	for _, d := range dss.Items {
		st := d.Status
		if in(d.Namespace) && (st.ObservedGeneration < d.Generation || st.UpdatedNumberScheduled < st.DesiredNumberScheduled || st.NumberAvailable < st.DesiredNumberScheduled) {
			pending = append(pending, "daemonset "+d.Namespace+"/"+d.Name)
		}
	}
	if len(pending) > 0 {
		return "not rolled out: " + describe(pending)
	}
	return ""
}
