package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/record"

	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// AnnotationPolicyRevision is the Node annotation reporting the programmed policy revision.
const AnnotationPolicyRevision = "starlab.dev/policy-revision"

var metav1PatchOptions = metav1.PatchOptions{FieldManager: "starlab-agent"}

// policyMaps is where the policy part writes: the policy maps and sl_endpoints (*maps.Maps).
type policyMaps interface {
	policy.Writer
	policy.Reader
	DeleteEndpoint(ifindex uint32) error
}

// policySources are the informer listers the compiler input is built from.
type policySources struct {
	pods       corev1listers.PodLister
	namespaces corev1listers.NamespaceLister
	nodes      corev1listers.NodeLister
	netpols    networkinglisters.NetworkPolicyLister
	cnps       cnplisters.ClusterNetworkPolicyLister // nil: the API server does not serve them
}

// localEndpoints lists the node's endpoints (the endpoint part).
type localEndpoints interface {
	list() []*Endpoint
}

// policies is the policy part: informer events -> compiler input -> policy.Compile ->
// policy.Diff against what is programmed -> Changes.Apply into the maps -> the revision
// annotation on the Node, and an Event per policy problem. It is the one writer of sl_ipcache,
// sl_policy, sl_cidr_policy and sl_endpoints.
type policies struct {
	node      string
	log       *slog.Logger
	debounce  time.Duration
	idsPath   string            // saved allocator state (identities and policy ids); "" keeps none
	alloc     *policy.Allocator // restored from idsPath and the maps by the first load
	endpoints localEndpoints
	observe   func(seconds float64) // compile+apply duration metric; may be nil
	// applyFailures counts endpoints newly set deny-all because their policy could not be written
	// (reason "capacity" or "write"); may be nil.
	applyFailures func(reason string, n int)
	// skipEnforcement is the test-only switch (Config.TestSkipEnforcementPath): when it reports
	// true, endpoints are programmed without enforcement, so the conformance suite can show it
	// catches a broken CNI. nil: never.
	skipEnforcement func() bool
	// cnpProblems counts ClusterNetworkPolicy rules that failed closed, by policy.Problem reason;
	// may be nil.
	cnpProblems func(reason string)
	// Set by Run before the part is used, read-only afterwards.
	maps      policyMaps
	sources   policySources
	nodes     typedcorev1.NodeInterface // revision annotation
	recorder  record.EventRecorder      // nil: no Events
	cnpStatus clusterPolicyStatus       // nil: ClusterNetworkPolicy status is not written

	kick               chan struct{}
	synced             *atomic.Bool // informers synced: compilations may run
	seenRevision       atomic.Uint64
	programmedRevision atomic.Uint64
	reportedRevision   atomic.Uint64
	result             atomic.Pointer[policy.Result] // last compilation applied

	mu         sync.Mutex // serialises compile+apply and endpoint writes; guards programmed, loaded, problems
	programmed policy.State
	loaded     bool
	savedIDs   policy.AllocatorState // what idsPath holds
	problems   map[string]bool       // reported problems (an Event once per problem)
	overlaps   map[string]bool       // reported ClusterNetworkPolicy overlaps
	failed     map[uint32]bool       // endpoints (ifindex) deny-all because their policy could not be written
}

// newPolicies builds the policy part; idsPath is where identities and policy ids are saved (""
// keeps none: numbers then last as long as the process).
func newPolicies(node, idsPath string, debounce time.Duration, log *slog.Logger, eps localEndpoints, synced *atomic.Bool) *policies {
	return &policies{
		node: node, idsPath: idsPath, log: log, debounce: debounce, alloc: policy.NewAllocator(), endpoints: eps, synced: synced,
		kick: make(chan struct{}, 1), problems: map[string]bool{}, failed: map[uint32]bool{},
	}
}

// PolicyResult is the last compilation the maps hold (nil before the first); flow enrichment names
// policies from it.
func (p *policies) PolicyResult() *policy.Result { return p.result.Load() }

// trigger schedules a debounced compilation.
func (p *policies) trigger() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// onEvent is the handler of Pod/Namespace/NetworkPolicy events: note the resourceVersion and
// schedule a compilation.
func (p *policies) onEvent(obj any) {
	if m, ok := unwrap[interface{ GetResourceVersion() string }](obj); ok {
		p.noteRevision(m.GetResourceVersion())
	}
	p.trigger()
}

func (p *policies) noteRevision(resourceVersion string) {
	rv, err := strconv.ParseUint(resourceVersion, 10, 64)
	if err != nil {
		return
	}
	for {
		cur := p.seenRevision.Load()
		if rv <= cur || p.seenRevision.CompareAndSwap(cur, rv) {
			return
		}
	}
}

// loop compiles after each burst of changes (debounced) and reports the revision.
func (p *policies) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		if p.debounce > 0 {
			t := time.NewTimer(p.debounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select { // coalesce kicks that arrived during the wait
		case <-p.kick:
		default:
		}
		if err := p.compileAndApply(ctx); err != nil {
			p.log.Error("policy compile/apply failed; will retry on the next change", "err", err)
			time.AfterFunc(time.Second, p.trigger)
			continue
		}
		p.reportRevision(ctx)
	}
}

// compileNow compiles and applies once the informers synced (a CNI ADD: the new endpoint gets its
// identity and flags before its programs attach); before, it does nothing.
func (p *policies) compileNow(ctx context.Context) error {
	if !p.synced.Load() {
		return nil
	}
	return p.compileAndApply(ctx)
}

// compileAndApply builds the compiler input from the informer caches and the local endpoints,
// compiles, and writes the difference to what is programmed.
func (p *policies) compileAndApply(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rev := p.seenRevision.Load()
	start := time.Now()
	if err := p.loadLocked(); err != nil {
		return err
	}
	eps := p.endpoints.list()
	in, err := p.input(eps)
	if err != nil {
		return err
	}
	res, err := policy.Compile(in)
	if err != nil {
		return fmt.Errorf("compile policy: %w", err)
	}
	// The numbers are saved before any map holds them: a restarted agent never renumbers what the
	// pinned maps reference.
	if err := p.saveIDsLocked(); err != nil {
		return err
	}
	bases := make(map[uint32]maps.Endpoint, len(eps))
	for _, ep := range eps {
		bases[uint32(ep.Ifindex)] = ep.base()
	}
	next := policy.Desired(res, bases)
	if p.skippingEnforcement() {
		for idx, e := range next.Endpoints {
			next.Endpoints[idx] = unenforced(e)
		}
		p.log.Warn("TEST SWITCH: policy is NOT enforced on this node", "switch", "test-skip-enforcement", "endpoints", len(next.Endpoints))
	}
	// Capacity first: endpoints whose entries do not fit are deny-all before anything is written.
	var over []policy.Overflow
	if c, ok := p.maps.(capacityReporter); ok {
		next, over = policy.FitCapacity(p.programmed, next, c.PolicyCapacity())
	}
	next = policy.Revise(p.programmed, next) // changed endpoints get a new policy revision
	if err := policy.Diff(p.programmed, next).Apply(p.maps); err != nil {
		return p.failClosedLocked(next, eps, fmt.Errorf("apply policy: %w", err))
	}
	p.programmed = next
	p.noteFailuresLocked("capacity", over, eps)
	p.result.Store(res)
	p.reportProblemsLocked(res)
	p.reportOverlapsLocked(ctx, res)
	p.programmedRevision.Store(rev)
	if p.observe != nil {
		p.observe(time.Since(start).Seconds())
	}
	p.log.Debug("policy programmed", "revision", rev, "endpoints", len(res.Endpoints), "ipcache", len(res.IPCache), "took", time.Since(start))
	return nil
}

// capacityReporter reports the max entries of the policy maps (*maps.Maps).
type capacityReporter interface {
	PolicyCapacity() maps.PolicyCapacity
}

// failClosedLocked handles a failed Apply: it reads what the maps hold now and sets every endpoint
// whose state there is not next's (policy.Incomplete) deny-all, so no endpoint is left on allows
// its new policy removes or without an enforcement it gains. The record becomes what the maps
// hold, and the next compilation writes the rest. It returns applyErr (the loop retries).
func (p *policies) failClosedLocked(next policy.State, eps []*Endpoint, applyErr error) error {
	actual, err := policy.ReadState(p.maps)
	if err != nil {
		p.log.Error("read maps after a failed policy write; denying every endpoint", "err", err)
		actual = p.programmed
		actual.Endpoints = map[uint32]maps.Endpoint{}
	}
	incomplete := policy.Incomplete(actual, next)
	var over []policy.Overflow
	for _, idx := range incomplete {
		e := next.Endpoints[idx]
		e.Flags |= policy.EndpointPolicyError | policy.EndpointPolicyWriteFailed
		if err := p.maps.UpsertEndpoint(idx, e); err != nil {
			p.log.Error("set endpoint deny-all after a failed policy write", "ifindex", idx, "err", err)
			continue
		}
		actual.Endpoints[idx] = e
		over = append(over, policy.Overflow{Ifindex: idx, Reason: applyErr.Error()})
	}
	p.programmed = actual
	p.noteFailuresLocked("write", over, eps)
	return fmt.Errorf("%w (%d endpoints set deny-all)", applyErr, len(over))
}

// noteFailuresLocked counts, logs and reports (an Event on the pod) the endpoints newly set
// deny-all because their policy could not be written, and forgets endpoints that recovered.
func (p *policies) noteFailuresLocked(reason string, over []policy.Overflow, eps []*Endpoint) {
	now := map[uint32]bool{}
	byIfindex := map[uint32]*Endpoint{}
	for _, ep := range eps {
		byIfindex[uint32(ep.Ifindex)] = ep
	}
	fresh := 0
	for _, o := range over {
		now[o.Ifindex] = true
		if p.failed[o.Ifindex] {
			continue
		}
		fresh++
		ep := byIfindex[o.Ifindex]
		p.log.Error("endpoint policy could not be written: the endpoint denies all traffic", "ifindex", o.Ifindex, "reason", reason, "detail", o.Reason)
		if ep == nil || ep.PodName == "" || p.recorder == nil {
			continue
		}
		var obj *corev1.Pod
		if got, err := p.sources.pods.Pods(ep.PodNamespace).Get(ep.PodName); err == nil {
			obj = got
		} else {
			obj = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ep.PodNamespace, Name: ep.PodName}}
		}
		p.recorder.Eventf(obj, corev1.EventTypeWarning, "PolicyApplyFailed", "node %s: policy could not be written (%s): %s; the pod denies all traffic until it can", p.node, reason, o.Reason)
	}
	if fresh > 0 && p.applyFailures != nil {
		p.applyFailures(reason, fresh)
	}
	if reason == "capacity" {
		// A successful apply: only the capacity overflows are left failed.
		p.failed = now
		return
	}
	for idx := range now {
		p.failed[idx] = true
	}
}

// loadLocked reads what the maps hold, once (after a restart the pinned maps keep the last state),
// and restores the allocator from the saved identities and the maps.
func (p *policies) loadLocked() error {
	if p.loaded {
		return nil
	}
	s, err := policy.ReadState(p.maps)
	if err != nil {
		return err
	}
	saved := p.readIDs()
	alloc, err := policy.RestoreAllocator(saved, s)
	if err != nil {
		p.log.Warn("saved identities unusable; numbering anew above every number the maps hold", "path", p.idsPath, "err", err)
		saved = policy.AllocatorState{}
		if alloc, err = policy.RestoreAllocator(saved, s); err != nil {
			return fmt.Errorf("restore identity allocator: %w", err)
		}
	}
	p.alloc, p.savedIDs = alloc, saved
	p.programmed, p.loaded = s, true
	return nil
}

// readIDs reads the saved allocator state; a missing or unreadable file gives the zero state (the
// maps' numbers are still retired by RestoreAllocator).
func (p *policies) readIDs() policy.AllocatorState {
	var st policy.AllocatorState
	if p.idsPath == "" {
		return st
	}
	b, err := os.ReadFile(p.idsPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return st
	case err != nil:
		p.log.Warn("read saved identities", "path", p.idsPath, "err", err)
		return st
	}
	if err := json.Unmarshal(b, &st); err != nil {
		p.log.Warn("decode saved identities", "path", p.idsPath, "err", err)
		return policy.AllocatorState{}
	}
	p.log.Info("identities carried over from the saved state", "identities", len(st.Identities), "policies", len(st.Policies))
	return st
}

// saveIDsLocked writes the allocator state to idsPath when it changed.
func (p *policies) saveIDsLocked() error {
	if p.idsPath == "" {
		return nil
	}
	snap := p.alloc.Snapshot()
	if snap.Equal(p.savedIDs) {
		return nil
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode identities: %w", err)
	}
	if err := writeFileAtomic(p.idsPath, b, 0o600); err != nil {
		return fmt.Errorf("save identities: %w", err)
	}
	p.savedIDs = snap
	return nil
}

func (p *policies) input(eps []*Endpoint) (policy.Input, error) {
	in := policy.Input{LocalNode: p.node, Alloc: p.alloc, LocalEndpoints: map[policy.PodRef]uint32{}}
	pods, err := p.sources.pods.List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list pods: %w", err)
	}
	local := map[policy.PodRef]*Endpoint{}
	for _, ep := range eps {
		if ep.PodName == "" {
			continue
		}
		ref := policy.PodRef{Namespace: ep.PodNamespace, Name: ep.PodName}
		local[ref] = ep
		in.LocalEndpoints[ref] = uint32(ep.Ifindex)
	}
	seen := map[policy.PodRef]bool{}
	for _, pod := range pods {
		cp := policy.PodFromK8s(pod)
		ref := cp.Ref()
		if ep, ok := local[ref]; ok && cp.Node == p.node {
			// The CNI knows the IP before the kubelet reports it, and the pod holds it (a
			// terminating one too) until its CNI DEL.
			if !cp.IP.IsValid() {
				cp.IP = ep.ip
			}
		} else if cp.Node == p.node && cp.Terminating {
			// A terminating local pod without an endpoint: CNI DEL has released its IP.
			cp.IP = netip.Addr{}
		}
		seen[ref] = true
		in.Pods = append(in.Pods, cp)
	}
	for ref := range in.LocalEndpoints {
		if !seen[ref] {
			delete(in.LocalEndpoints, ref) // pod object gone or not yet seen: stays deny-all
		}
	}
	nss, err := p.sources.namespaces.List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range nss {
		in.Namespaces = append(in.Namespaces, policy.NamespaceFromK8s(ns))
	}
	nodes, err := p.sources.nodes.List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		in.Nodes = append(in.Nodes, policy.NodeFromK8s(n))
	}
	nps, err := p.sources.netpols.List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list networkpolicies: %w", err)
	}
	in.Policies = append(in.Policies, nps...)
	if in.ClusterPolicies, err = p.clusterPolicies(); err != nil {
		return in, err
	}
	return in, nil
}

// writeEndpoint writes one endpoint's sl_endpoints value from the last compilation (deny-all
// without one) and records it as programmed. keepExisting leaves a value already programmed.
func (p *policies) writeEndpoint(ifindex uint32, base maps.Endpoint, keepExisting bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.loadLocked(); err != nil {
		return err
	}
	old, ok := p.programmed.Endpoints[ifindex]
	if ok && keepExisting {
		return nil
	}
	e := p.result.Load().EndpointState(ifindex, base)
	if p.result.Load() != nil && p.skippingEnforcement() {
		e = unenforced(e)
	}
	if ok && sameEndpointValue(old, e) {
		return nil
	}
	e.PolicyRevision = policy.NextRevision(p.programmed) // a new value: re-check its flows
	if err := p.maps.UpsertEndpoint(ifindex, e); err != nil {
		return err
	}
	p.recordEndpointLocked(ifindex, &e)
	return nil
}

// skippingEnforcement reports whether the test-only skip-enforcement switch is on.
func (p *policies) skippingEnforcement() bool {
	return p.skipEnforcement != nil && p.skipEnforcement()
}

// unenforced is e without enforcement: its policy entries stay, the datapath allows everything.
func unenforced(e maps.Endpoint) maps.Endpoint {
	e.Flags &^= maps.EndpointIngressEnforced | maps.EndpointEgressEnforced
	return e
}

// removeEndpoint deletes the endpoint's entry and forgets it.
func (p *policies) removeEndpoint(ifindex uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.maps.DeleteEndpoint(ifindex); err != nil {
		return fmt.Errorf("delete endpoint ifindex %d: %w", ifindex, err)
	}
	p.recordEndpointLocked(ifindex, nil)
	return nil
}

// keepEndpoints deletes every sl_endpoints entry whose ifindex is not in keep (entries no endpoint
// record owns) and returns the IPs of the entries it deleted.
func (p *policies) keepEndpoints(keep map[uint32]bool) ([]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	inMap, err := p.maps.ListEndpoints()
	if err != nil {
		return nil, fmt.Errorf("list endpoints map: %w", err)
	}
	var removed []netip.Addr
	for idx, e := range inMap {
		if keep[idx] {
			continue
		}
		if err := p.maps.DeleteEndpoint(idx); err != nil {
			return removed, fmt.Errorf("delete endpoint ifindex %d: %w", idx, err)
		}
		p.recordEndpointLocked(idx, nil)
		removed = append(removed, e.IP)
	}
	return removed, nil
}

// recordEndpointLocked sets (nil: removes) one endpoint in the programmed state.
func (p *policies) recordEndpointLocked(ifindex uint32, e *maps.Endpoint) {
	if !p.loaded {
		return // the first compilation reads the maps
	}
	if e == nil {
		delete(p.programmed.Endpoints, ifindex)
		return
	}
	p.programmed.Endpoints[ifindex] = *e
}

func sameEndpointValue(a, b maps.Endpoint) bool {
	return a.IP == b.IP && a.EpID == b.EpID && a.Identity == b.Identity && a.Flags == b.Flags && slices.Equal(a.MAC, b.MAC)
}

// endpointState is the programmed identity and flags of an endpoint (status).
func (p *policies) endpointState(ifindex uint32, base maps.Endpoint) maps.Endpoint {
	return p.result.Load().EndpointState(ifindex, base)
}

// reportProblemsLocked logs and emits one Event per new policy problem.
func (p *policies) reportProblemsLocked(res *policy.Result) {
	now := map[string]bool{}
	for _, pr := range res.Problems {
		msg := pr.String()
		now[msg] = true
		if p.problems[msg] {
			continue
		}
		if pr.Policy != nil && pr.Policy.IsCluster() {
			p.log.Warn("clusternetworkpolicy rule fails closed", "problem", msg, "reason", pr.Reason)
			p.reportClusterProblem(pr)
			continue
		}
		p.log.Warn("policy problem (affected endpoints deny everything)", "problem", msg)
		if pr.Policy != nil && p.recorder != nil {
			np := &networkingv1.NetworkPolicy{}
			np.Namespace, np.Name = pr.Policy.Namespace, pr.Policy.Name
			if obj, err := p.sources.netpols.NetworkPolicies(pr.Policy.Namespace).Get(pr.Policy.Name); err == nil {
				np = obj
			}
			p.recorder.Eventf(np, corev1.EventTypeWarning, "PolicyUnrepresentable", "node %s: %s: selected pods deny all traffic until fixed", p.node, pr.Message)
		}
	}
	p.problems = now
}

// reportRevision patches the Node annotation when the programmed revision grew.
func (p *policies) reportRevision(ctx context.Context) {
	rev := p.programmedRevision.Load()
	if rev == 0 || rev <= p.reportedRevision.Load() {
		return
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationPolicyRevision: strconv.FormatUint(rev, 10)}}})
	if err != nil {
		p.log.Error("encode policy revision patch", "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.nodes.Patch(pctx, p.node, types.MergePatchType, patch, metav1PatchOptions); err != nil {
		p.log.Warn("report policy revision", "revision", rev, "err", err)
		time.AfterFunc(time.Second, p.trigger)
		return
	}
	p.reportedRevision.Store(rev)
}

// policiesSelecting returns the policies selecting a local endpoint for dir, sorted.
func policiesSelecting(res *policy.Result, epID uint32, dir maps.Direction) []policy.PolicyRef {
	if res == nil {
		return nil
	}
	ep, ok := res.Endpoints[epID]
	if !ok {
		return nil
	}
	var out []policy.PolicyRef
	if dir == policy.DirIngress {
		out = append(out, ep.IngressPolicies...)
	} else {
		out = append(out, ep.EgressPolicies...)
	}
	slices.SortFunc(out, func(a, b policy.PolicyRef) int { return strings.Compare(a.String(), b.String()) })
	return out
}
