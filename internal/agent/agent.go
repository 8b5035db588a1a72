package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	networkinginformers "k8s.io/client-go/informers/networking/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/starlab-dev/starlab/datapath/flowevent"
	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/loader"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/kubeclient"
)

var metav1PatchOptions = metav1.PatchOptions{FieldManager: "starlab-agent"}

// Agent is one node agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	client   kubernetes.Interface
	recorder record.EventRecorder
	dp       *loader.Datapath
	store    *flow.Store
	metrics  *metrics
	reader   *flowevent.Reader

	pods       coreinformers.PodInformer
	namespaces coreinformers.NamespaceInformer
	nodes      coreinformers.NodeInformer
	services   coreinformers.ServiceInformer
	slices     discoveryinformers.EndpointSliceInformer
	netpols    networkinginformers.NetworkPolicyInformer

	ready  atomic.Bool // datapath loaded and endpoint API serving
	synced atomic.Bool // informers synced

	mu         sync.Mutex // endpoints, podCIDR, nodeIPs, pol.result
	endpoints  map[string]*Endpoint
	podCIDR    netip.Prefix
	nodeIPs    []netip.Addr
	netdevIdx  int
	netdevName string

	compileMu          sync.Mutex // policy compile+apply; owns pol (except result), epWritten
	pol                policyState
	epWritten          map[int]maps.Endpoint
	policyAlloc        *policy.Allocator
	policyKick         chan struct{}
	seenRevision       atomic.Uint64
	programmedRevision atomic.Uint64
	reportedRevision   uint64 // policy loop only

	svcMu   sync.Mutex
	lbTable *lb.Table

	nodeMu      sync.Mutex
	routes      map[netip.Prefix]netip.Addr
	netdevIndex int
	lastConfig  maps.Config

	storeLost atomic.Uint64
}

// New validates cfg and builds an agent (nothing is started).
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{
		cfg: cfg, log: log, started: time.Now(),
		store:       flow.NewStore(cfg.FlowBuffer),
		endpoints:   map[string]*Endpoint{},
		epWritten:   map[int]maps.Endpoint{},
		policyAlloc: policy.NewAllocator(),
		policyKick:  make(chan struct{}, 1),
		lbTable:     lb.NewTable(cfg.NodeName),
		routes:      map[netip.Prefix]netip.Addr{},
	}
	a.metrics = newMetrics(a)
	return a, nil
}

func (a *Agent) lostEvents() uint64 {
	var n uint64
	if a.reader != nil {
		st := a.reader.Stats()
		n += st.Malformed + st.ReserveFailed
	}
	return n + a.store.Lost() + a.storeLost.Load()
}

func dropReasonName(r uint8) string { return flowevent.DropReason(r).String() }

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
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer bc.Shutdown()
	a.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "starlab-agent", Host: a.cfg.NodeName})

	// 1. Own node: pod CIDR and InternalIP.
	node, err := a.waitOwnNode(ctx)
	if err != nil {
		return err
	}
	cidr, _ := nodePodCIDR(node)
	nodeIP, _ := nodeInternalIP(node)
	a.mu.Lock()
	a.podCIDR = cidr
	a.mu.Unlock()
	a.log.Info("node", "name", a.cfg.NodeName, "podCIDR", cidr, "internalIP", nodeIP)

	// 2. Datapath: load (mounts bpffs, reuses pins), attach to the node device.
	a.dp, err = loader.Load(ctx, loader.Options{PinDir: a.cfg.PinDir(), Logger: a.log})
	if err != nil {
		return fmt.Errorf("load datapath: %w", err)
	}
	defer a.dp.Close()
	dev, err := deviceFor(nodeIP)
	if err != nil {
		return err
	}
	a.netdevIdx, a.netdevName = dev.Attrs().Index, dev.Attrs().Name
	a.nodeMu.Lock()
	a.netdevIndex = a.netdevIdx
	a.syncOwnNode(node)
	a.nodeMu.Unlock()
	if err := a.dp.AttachNetdev(a.netdevIdx); err != nil {
		return fmt.Errorf("attach sl_from_netdev to %s: %w", a.netdevName, err)
	}
	a.log.Info("datapath attached to node device", "device", a.netdevName, "ifindex", a.netdevIdx)

	if err := a.seedServiceIDs(); err != nil {
		return err
	}

	// 3. Restore endpoints of a previous run, then serve the CNI endpoint API.
	if err := a.reconcileEndpoints(ctx); err != nil {
		return err
	}
	sock, err := serveUnix(ctx, a.cfg.Socket, a.socketHandler(), a.log)
	if err != nil {
		return err
	}
	defer sock.Close()
	a.ready.Store(true)

	// 4. API on :4245 (flows, status, metrics, healthz).
	api := &http.Server{Addr: a.cfg.Listen, Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	apiErr := make(chan error, 1)
	go func() {
		if err := api.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			apiErr <- fmt.Errorf("serve %s: %w", a.cfg.Listen, err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
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
	if err := a.startFlows(runCtx, &wg); err != nil {
		return err
	}
	if err := a.pruneStaleServices(); err != nil {
		a.log.Warn("prune stale services", "err", err)
	}
	if err := a.compileAndApply(runCtx); err != nil {
		return fmt.Errorf("initial policy: %w", err)
	}
	a.reportRevision(runCtx)
	wg.Add(2)
	go func() { defer wg.Done(); a.policyLoop(runCtx) }()
	go func() { defer wg.Done(); a.ctGCLoop(runCtx) }()

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

func (a *Agent) startInformers(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(a.client, 0)
	a.pods = f.Core().V1().Pods()
	a.namespaces = f.Core().V1().Namespaces()
	a.nodes = f.Core().V1().Nodes()
	a.services = f.Core().V1().Services()
	a.slices = f.Discovery().V1().EndpointSlices()
	a.netpols = f.Networking().V1().NetworkPolicies()
	if err := a.pods.Informer().AddIndexers(cache.Indexers{podIPIndex: podIPIndexFunc}); err != nil {
		return fmt.Errorf("pod IP index: %w", err)
	}
	polHandler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.noteRevision(o); a.triggerPolicy() },
		UpdateFunc: func(_, o any) { a.noteRevision(o); a.triggerPolicy() },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			a.noteRevision(o)
			a.triggerPolicy()
		},
	}
	for _, inf := range []cache.SharedIndexInformer{a.pods.Informer(), a.namespaces.Informer(), a.netpols.Informer()} {
		if _, err := inf.AddEventHandler(polHandler); err != nil {
			return fmt.Errorf("add policy handler: %w", err)
		}
	}
	if _, err := a.nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.syncNodes(); a.triggerPolicy() },
		UpdateFunc: func(o, n any) { a.syncNodes(); a.triggerPolicy() },
		DeleteFunc: func(any) { a.syncNodes(); a.triggerPolicy() },
	}); err != nil {
		return fmt.Errorf("add node handler: %w", err)
	}
	svcReg, err := a.services.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onService(o, false) },
		UpdateFunc: func(_, o any) { a.onService(o, false) },
		DeleteFunc: func(o any) { a.onService(o, true) },
	})
	if err != nil {
		return fmt.Errorf("add service handler: %w", err)
	}
	sliceReg, err := a.slices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.onSlice(o, false) },
		UpdateFunc: func(_, o any) { a.onSlice(o, false) },
		DeleteFunc: func(o any) { a.onSlice(o, true) },
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

func (a *Agent) startFlows(ctx context.Context, wg *sync.WaitGroup) error {
	clock, err := flowevent.NewClock()
	if err != nil {
		return fmt.Errorf("flow clock: %w", err)
	}
	rd, err := flowevent.NewReader(a.dp.Maps.Events, flowevent.ReaderOptions{Counters: a.dp.Maps.Counters})
	if err != nil {
		return err
	}
	a.reader = rd
	wg.Add(1)
	go func() {
		defer wg.Done()
		go func() { <-ctx.Done(); _ = rd.Close() }()
		err := rd.Run(ctx, func(ev *flowevent.Event) {
			if !a.synced.Load() {
				a.storeLost.Add(1)
				return
			}
			f := a.enrich(ev, clock)
			a.store.Add(f)
			a.metrics.flows.WithLabelValues(string(f.Verdict)).Inc()
			if f.Verdict == flow.VerdictDropped {
				a.metrics.drops.WithLabelValues(f.DropReasonDesc).Inc()
			}
		})
		if err != nil {
			a.log.Error("flow event reader stopped", "err", err)
		}
	}()
	return nil
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
		n, err := a.dp.Maps.GCConntrack(ctx, a.cfg.CTIdle, 30*time.Second)
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
	a.mu.Lock()
	eps := make([]*Endpoint, 0, len(a.endpoints))
	for _, ep := range a.endpoints {
		eps = append(eps, ep)
	}
	a.mu.Unlock()
	for _, ep := range eps {
		_ = a.dp.DetachEndpoint(ep.Ifindex)
	}
	if err := a.dp.DetachNetdev(a.netdevIdx); err != nil {
		a.log.Warn("detach node device", "err", err)
	}
	a.removeRoutes()
	if err := a.dp.Unpin(); err != nil {
		a.log.Warn("unpin", "err", err)
	}
	// Endpoint records and IPAM state stay: pods still running keep their addresses, and a
	// reinstalled agent restores their endpoints from the records.
	_ = os.Remove(a.cfg.Socket)
	a.log.Info("node cleaned")
}
