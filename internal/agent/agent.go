package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/kubeclient"
)

// Agent is one node agent: the parts below, wired by Run. Each part keeps its own state behind its
// own lock; the Agent holds none.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	client kubernetes.Interface
	// cnpClient is the typed ClusterNetworkPolicy client (sigs.k8s.io/network-policy-api).
	cnpClient cnpclient.Interface
	recorder  record.EventRecorder
	dp        *loader.Datapath
	metrics   *metrics

	ready  atomic.Bool // datapath loaded and endpoint API serving
	synced atomic.Bool // informers synced

	endpoints *endpoints  // CNI socket API, endpoint records, attach, restart reconciliation
	policy    *policies   // informers -> compiler -> change set -> maps -> revision annotation
	services  *services   // Services/EndpointSlices -> lb table -> service maps
	nodes     *nodeRoutes // Nodes -> routes, sl_config
	flows     *flows      // ring buffer -> enrichment -> flow store
}

// New validates cfg and builds an agent (nothing is started).
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{cfg: cfg, log: log, started: time.Now()}
	a.endpoints = newEndpoints(cfg, log, &a.ready)
	a.policy = newPolicies(cfg.NodeName, cfg.IdentitiesPath(), cfg.PolicyDebounce, log, a.endpoints, &a.synced)
	a.policy.skipEnforcement = func() bool {
		_, err := os.Stat(cfg.TestSkipEnforcementPath())
		return err == nil
	}
	a.endpoints.policy = a.policy
	a.nodes = newNodeRoutes(cfg.NodeName, maps.EventLevel(cfg.EventLevel), log)
	a.nodes.dropEvents = cfg.DropEventsPerSec
	extIPs, _ := lb.ParseExternalIPPolicy(cfg.ExternalIPs) // checked by Validate
	a.services = newServices(cfg.NodeName, log, a.nodes.isNodeIP)
	a.services.table.SetExternalIPPolicy(extIPs)
	a.services.health = newHealthChecks(log)
	a.flows = &flows{
		enricher: enricher{node: cfg.NodeName, services: a.services, policies: a.policy},
		log:      log, store: flow.NewStore(cfg.FlowBuffer), synced: &a.synced,
	}
	a.metrics = newMetrics(a)
	a.flows.metrics = a.metrics
	a.policy.observe = a.metrics.policyCompileSeconds.Observe
	a.policy.applyFailures = func(reason string, n int) { a.metrics.policyApplyFailures.WithLabelValues(reason).Add(float64(n)) }
	a.policy.cnpProblems = func(reason string) { a.metrics.clusterPolicyProblems.WithLabelValues(reason).Inc() }
	return a, nil
}

// useDatapath hands the loaded datapath to the parts that write it.
func (a *Agent) useDatapath(dp *loader.Datapath) {
	a.dp = dp
	a.endpoints.attach = dp
	a.endpoints.ct = dp.Maps
	a.policy.maps = dp.Maps
	a.services.store = mapWriter{dp.Maps}
	a.services.ct = dp.Maps
	a.nodes.sink = dp.Maps
}

// Run runs the agent until ctx is done. On return the datapath stays attached and pinned (a
// restarted agent resumes without breaking connections), unless the agent's DaemonSet is gone
// (chart uninstalled): then the node is cleaned.
func (a *Agent) Run(ctx context.Context) error {
	rc, err := kubeclient.RESTConfig(a.cfg.Kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "starlab-agent/" + a.cfg.NodeName
	a.client, err = kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if a.cnpClient, err = cnpclient.NewForConfig(rc); err != nil {
		return fmt.Errorf("clusternetworkpolicy client: %w", err)
	}
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer bc.Shutdown()
	a.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "starlab-agent", Host: a.cfg.NodeName})
	a.policy.nodes, a.policy.recorder, a.services.recorder = a.client.CoreV1().Nodes(), a.recorder, a.recorder

	// 1. Own node: pod CIDR and InternalIP.
	node, err := a.waitOwnNode(ctx)
	if err != nil {
		return err
	}
	cidr, _ := nodePodCIDR(node)
	nodeIP, _ := nodeInternalIP(node)
	a.endpoints.podCIDR = cidr
	a.log.Info("node", "name", a.cfg.NodeName, "podCIDR", cidr, "internalIP", nodeIP)

	// 2. Datapath: load (mounts bpffs, reuses pins), attach to the node device.
	dp, err := loader.Load(ctx, loader.Options{PinDir: a.cfg.PinDir(), Logger: a.log})
	if err != nil {
		return fmt.Errorf("load datapath: %w", err)
	}
	defer dp.Close()
	a.useDatapath(dp)
	link, err := deviceFor(nodeIP)
	if err != nil {
		return err
	}
	dev := netdev{Index: link.Attrs().Index, Name: link.Attrs().Name}
	a.nodes.dev = dev
	a.nodes.syncOwn(node)
	if err := a.dp.AttachNetdev(dev.Index); err != nil {
		return fmt.Errorf("attach sl_from_netdev to %s: %w", dev.Name, err)
	}
	a.log.Info("datapath attached to node device", "device", dev.Name, "ifindex", dev.Index)

	if err := a.services.seed(); err != nil {
		return err
	}
	a.services.hold() // until the informers synced: no frontend is written before its backends

	// 3. Restore endpoints of a previous run, then serve the CNI endpoint API.
	if err := a.endpoints.reconcile(ctx); err != nil {
		return err
	}
	sock, err := serveUnix(ctx, a.cfg.Socket, a.endpoints.handler(), a.log)
	if err != nil {
		return err
	}
	defer sock.Close()
	a.ready.Store(true)

	// 4. API on <node address>:4245 and 127.0.0.1:4245 (flows, status, metrics, healthz).
	addrs, err := apiListenAddrs(a.cfg.Listen, nodeIP)
	if err != nil {
		return err
	}
	api, err := a.apiServer()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
	}()
	// Decided once: Serve may fill in api.TLSConfig (HTTP/2 set-up) while another listener starts.
	serve := api.Serve
	if api.TLSConfig != nil {
		serve = func(l net.Listener) error { return api.ServeTLS(l, "", "") }
	}
	apiErr := make(chan error, 2*len(addrs))
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s for the API: %w", addr, err)
		}
		go func() {
			if err := serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				apiErr <- fmt.Errorf("serve %s: %w", addr, err)
			}
		}()
	}
	a.log.Info("API serving", "addresses", addrs, "mutualTLS", a.cfg.TLS())
	if err := a.serveHubble(ctx, nodeIP, api.TLSConfig, apiErr); err != nil {
		return err
	}

	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		a.services.health.close(sctx)
	}()

	// 5. Informers; wait for sync, program services and policy.
	var wg sync.WaitGroup
	defer wg.Wait()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := a.startInformers(runCtx); err != nil {
		return err
	}
	a.synced.Store(true)

	// 6. Flow events: read only now that pods and services can be named; events emitted meanwhile
	// wait in the ring buffer.
	if err := a.flows.start(runCtx, &wg, a.dp.Maps.Events, a.dp.Maps.Counters); err != nil {
		return err
	}
	a.services.release()
	if err := a.services.pruneStale(); err != nil {
		a.log.Warn("prune stale services", "err", err)
	}
	if err := a.policy.compileAndApply(runCtx); err != nil {
		return fmt.Errorf("initial policy: %w", err)
	}
	a.policy.reportRevision(runCtx)
	wg.Add(3)
	go func() { defer wg.Done(); a.policy.loop(runCtx) }()
	go func() { defer wg.Done(); a.ctGCLoop(runCtx) }()
	go func() { defer wg.Done(); a.watchTestSwitch(runCtx) }()

	// 7. Install the CNI plugin and write the CNI config: the node turns Ready now.
	if err := installBinary(a.cfg.CNISource, a.cfg.CNIBinDir, "starlab-cni"); err != nil {
		return err
	}
	conf, err := Conflist(cidr, a.cfg.Socket, a.cfg.IPAMDir())
	if err != nil {
		return err
	}
	if err := writeFileAtomic(a.cfg.ConflistPath(), conf, 0o644); err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	a.log.Info("CNI config written; node networking ready", "path", a.cfg.ConflistPath())

	select {
	case <-ctx.Done():
	case err := <-apiErr:
		return err
	}
	a.log.Info("shutting down")
	stop()
	wg.Wait()
	if a.uninstalling() {
		a.cleanupNode()
	} else {
		a.log.Info("leaving datapath attached and pinned for the next agent")
	}
	return nil
}

func (a *Agent) waitOwnNode(ctx context.Context) (*corev1.Node, error) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := a.client.CoreV1().Nodes().Get(rctx, a.cfg.NodeName, metav1.GetOptions{})
		cancel()
		if err == nil {
			if _, ok := nodePodCIDR(n); !ok {
				err = fmt.Errorf("node %s has no IPv4 spec.podCIDR yet (kube-controller-manager allocates it)", a.cfg.NodeName)
			} else if _, ok := nodeInternalIP(n); !ok {
				err = fmt.Errorf("node %s has no IPv4 InternalIP", a.cfg.NodeName)
			} else {
				return n, nil
			}
		}
		a.log.Info("waiting for own node", "node", a.cfg.NodeName, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for node %s: %w", a.cfg.NodeName, ctx.Err())
		case <-tick.C:
		}
	}
}

// startInformers connects the informers to the parts and waits until every handler has seen the
// initial objects.
func (a *Agent) startInformers(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(a.client, 0)
	pods := f.Core().V1().Pods()
	namespaces := f.Core().V1().Namespaces()
	nodes := f.Core().V1().Nodes()
	svcs := f.Core().V1().Services()
	slices := f.Discovery().V1().EndpointSlices()
	netpols := f.Networking().V1().NetworkPolicies()
	if err := pods.Informer().AddIndexers(cache.Indexers{podIPIndex: podIPIndexFunc}); err != nil {
		return fmt.Errorf("pod IP index: %w", err)
	}
	a.policy.sources = policySources{pods: pods.Lister(), namespaces: namespaces.Lister(), nodes: nodes.Lister(), netpols: netpols.Lister()}
	a.services.lookup = listedServices{svcs.Lister()}
	a.flows.pods = podLookup{local: a.endpoints, lister: pods.Lister(), index: pods.Informer().GetIndexer()}

	polHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    a.policy.onEvent,
		UpdateFunc: func(_, o any) { a.policy.onEvent(o) },
		DeleteFunc: a.policy.onEvent,
	}
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), namespaces.Informer(), netpols.Informer()} {
		if _, err := inf.AddEventHandler(polHandler); err != nil {
			return fmt.Errorf("add policy handler: %w", err)
		}
	}
	if a.cnpClient != nil {
		if err := a.startClusterPolicies(ctx, a.client.Discovery(), a.cnpClient, polHandler); err != nil {
			return err
		}
	}
	syncNodes := func() {
		ns, err := nodes.Lister().List(labels.Everything())
		if err != nil {
			a.log.Error("list nodes", "err", err)
			return
		}
		a.nodes.sync(ns)
		a.policy.trigger()
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { syncNodes() },
		UpdateFunc: func(any, any) { syncNodes() },
		DeleteFunc: func(any) { syncNodes() },
	}); err != nil {
		return fmt.Errorf("add node handler: %w", err)
	}
	svcReg, err := svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.services.onService(o, false) },
		UpdateFunc: func(_, o any) { a.services.onService(o, false) },
		DeleteFunc: func(o any) { a.services.onService(o, true) },
	})
	if err != nil {
		return fmt.Errorf("add service handler: %w", err)
	}
	sliceReg, err := slices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.services.onSlice(o, false) },
		UpdateFunc: func(_, o any) { a.services.onSlice(o, false) },
		DeleteFunc: func(o any) { a.services.onSlice(o, true) },
	})
	if err != nil {
		return fmt.Errorf("add endpointslice handler: %w", err)
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer %v did not sync: %w", typ, ctx.Err())
		}
	}
	// The handlers must have seen every initial object before stale service entries are pruned.
	if !cache.WaitForCacheSync(ctx.Done(), svcReg.HasSynced, sliceReg.HasSynced) {
		return fmt.Errorf("service handlers did not sync: %w", ctx.Err())
	}
	a.log.Info("informers synced")
	return nil
}

// watchTestSwitch recompiles the policy when the test-only skip-enforcement switch
// (Config.TestSkipEnforcementPath) appears or goes, checking every second.
func (a *Agent) watchTestSwitch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	was := a.policy.skippingEnforcement()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := a.policy.skippingEnforcement(); now != was {
			was = now
			a.log.Warn("test switch changed: recompiling policy", "switch", a.cfg.TestSkipEnforcementPath(), "skip_enforcement", now)
			a.policy.trigger()
		}
	}
}

func (a *Agent) ctGCLoop(ctx context.Context) {
	if a.cfg.CTGCInterval <= 0 {
		return
	}
	t := time.NewTicker(a.cfg.CTGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := a.dp.Maps.GCConntrack(ctx, a.cfg.CTLifetimes)
		if err != nil {
			a.log.Warn("conntrack gc", "err", err)
			continue
		}
		if n > 0 {
			a.log.Debug("conntrack gc", "removed", n)
		}
	}
}

// uninstalling reports whether the agent's DaemonSet is gone or being deleted.
func (a *Agent) uninstalling() bool {
	if a.cfg.DaemonSet == "" || a.cfg.Namespace == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := a.client.AppsV1().DaemonSets(a.cfg.Namespace).Get(ctx, a.cfg.DaemonSet, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		// helm uninstall deletes the DaemonSet, then the RBAC objects and the ServiceAccount (whose
		// token stops working): each of these answers means the chart is going away.
		return true
	}
	if err != nil {
		a.log.Warn("cannot tell whether the chart is being uninstalled; leaving the datapath in place", "err", err)
		return false
	}
	return ds.DeletionTimestamp != nil
}

// cleanupNode removes everything the agent put on the node (chart uninstall): CNI config and
// binary first (no new pods), then programs, pins, routes and state.
func (a *Agent) cleanupNode() {
	a.log.Info("DaemonSet gone: cleaning the node")
	for _, p := range []string{a.cfg.ConflistPath(), a.cfg.CNIBinDir + "/starlab-cni"} {
		if err := removeIfExists(p); err != nil {
			a.log.Warn("cleanup", "err", err)
		}
	}
	a.endpoints.detachAll()
	if err := a.dp.DetachNetdev(a.nodes.dev.Index); err != nil {
		a.log.Warn("detach node device", "err", err)
	}
	a.nodes.removeAll()
	if err := a.dp.Unpin(); err != nil {
		a.log.Warn("unpin", "err", err)
	}
	// Endpoint records and IPAM state stay: pods still running keep their addresses, and a
	// reinstalled agent restores their endpoints from the records.
	_ = os.Remove(a.cfg.Socket)
	a.log.Info("node cleaned")
}
