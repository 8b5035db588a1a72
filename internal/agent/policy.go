package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// AnnotationPolicyRevision is the Node annotation reporting the programmed policy revision.
const AnnotationPolicyRevision = "starlab.dev/policy-revision"

// policyState is what was last written to the policy-related maps.
type policyState struct {
	loaded   bool
	ipcache  map[netip.Prefix]uint32
	rules    map[policy.PolicyKey]policy.PolicyValue
	cidr     map[policy.CIDRKey]policy.PolicyValue
	result   *policy.Result
	problems map[string]bool // reported problems (for events once per problem)
}

// triggerPolicy schedules a debounced compilation.
func (a *Agent) triggerPolicy() {
	select {
	case a.policyKick <- struct{}{}:
	default:
	}
}

// noteRevision records the resourceVersion of a Pod/Namespace/NetworkPolicy event.
func (a *Agent) noteRevision(obj any) {
	m, ok := obj.(interface{ GetResourceVersion() string })
	if !ok {
		return
	}
	rv, err := strconv.ParseUint(m.GetResourceVersion(), 10, 64)
	if err != nil {
		return
	}
	for {
		cur := a.seenRevision.Load()
		if rv <= cur || a.seenRevision.CompareAndSwap(cur, rv) {
			return
		}
	}
}

// policyLoop compiles after each burst of changes (debounced) and reports the revision.
func (a *Agent) policyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.policyKick:
		}
		if a.cfg.PolicyDebounce > 0 {
			t := time.NewTimer(a.cfg.PolicyDebounce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		select { // coalesce kicks that arrived during the wait
		case <-a.policyKick:
		default:
		}
		if err := a.compileAndApply(ctx); err != nil {
			a.log.Error("policy compile/apply failed; will retry on the next change", "err", err)
			time.AfterFunc(time.Second, a.triggerPolicy)
			continue
		}
		a.reportRevision(ctx)
	}
}

// compileAndApply builds the compiler input from the informer caches and the local endpoints,
// compiles, and writes the differences into the maps. Serialized by compileMu.
func (a *Agent) compileAndApply(ctx context.Context) error {
	a.compileMu.Lock()
	defer a.compileMu.Unlock()
	rev := a.seenRevision.Load()
	start := time.Now()

	in, err := a.compileInput()
	if err != nil {
		return err
	}
	res, err := policy.Compile(in)
	if err != nil {
		return fmt.Errorf("compile policy: %w", err)
	}
	if err := a.applyPolicy(res); err != nil {
		return err
	}
	a.reportProblems(ctx, res)
	a.programmedRevision.Store(rev)
	a.metrics.policyCompileSeconds.Observe(time.Since(start).Seconds())
	a.log.Debug("policy programmed", "revision", rev, "endpoints", len(res.Endpoints), "ipcache", len(res.IPCache), "took", time.Since(start))
	return nil
}

func (a *Agent) compileInput() (policy.Input, error) {
	in := policy.Input{LocalNode: a.cfg.NodeName, Alloc: a.policyAlloc, LocalEndpoints: map[policy.PodRef]uint32{}}
	pods, err := a.pods.Lister().List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list pods: %w", err)
	}
	a.mu.Lock()
	local := map[policy.PodRef]*Endpoint{}
	for _, ep := range a.endpoints {
		if ep.PodName == "" {
			continue
		}
		ref := policy.PodRef{Namespace: ep.PodNamespace, Name: ep.PodName}
		local[ref] = ep
		in.LocalEndpoints[ref] = uint32(ep.Ifindex)
	}
	a.mu.Unlock()
	seen := map[policy.PodRef]bool{}
	for _, p := range pods {
		cp := policy.PodFromK8s(p)
		ref := cp.Ref()
		if ep, ok := local[ref]; ok && cp.Node == a.cfg.NodeName {
			// The CNI knows the IP before the kubelet reports it.
			if !cp.IP.IsValid() && p.DeletionTimestamp == nil {
				cp.IP = ep.ip
			}
		}
		seen[ref] = true
		in.Pods = append(in.Pods, cp)
	}
	for ref := range in.LocalEndpoints {
		if !seen[ref] {
			delete(in.LocalEndpoints, ref) // pod object gone or not yet seen: stays deny-all
		}
	}
	nss, err := a.namespaces.Lister().List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list namespaces: %w", err)
	}
	for _, ns := range nss {
		in.Namespaces = append(in.Namespaces, policy.NamespaceFromK8s(ns))
	}
	nodes, err := a.nodes.Lister().List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		in.Nodes = append(in.Nodes, policy.NodeFromK8s(n))
	}
	nps, err := a.netpols.Lister().List(labels.Everything())
	if err != nil {
		return in, fmt.Errorf("list networkpolicies: %w", err)
	}
	in.Policies = append(in.Policies, nps...)
	return in, nil
}

// endpointStateLocked is the sl_endpoints value for ep from the last compile (a.mu held).
// An endpoint the compiler has not seen yet is deny-all (policy error flag): fail closed.
func (a *Agent) endpointStateLocked(ep *Endpoint) maps.Endpoint {
	st := maps.Endpoint{IP: ep.ip, EpID: uint32(ep.Ifindex), MAC: ep.mac, Flags: maps.EndpointPolicyError}
	if res := a.pol.result; res != nil {
		if ce, ok := res.Endpoints[uint32(ep.Ifindex)]; ok {
			st.Identity = ce.Identity
			st.Flags = maps.EndpointFlags(ce.Flags)
		}
	}
	return st
}

func (a *Agent) loadPolicyState() error {
	a.pol.ipcache = map[netip.Prefix]uint32{}
	a.pol.rules = map[policy.PolicyKey]policy.PolicyValue{}
	a.pol.cidr = map[policy.CIDRKey]policy.PolicyValue{}
	a.pol.problems = map[string]bool{}
	ipc, err := a.dp.Maps.ListIPCache()
	if err != nil {
		return fmt.Errorf("read ipcache: %w", err)
	}
	for _, e := range ipc {
		a.pol.ipcache[e.Prefix] = e.Identity
	}
	rules, err := a.dp.Maps.ListPolicies()
	if err != nil {
		return fmt.Errorf("read policy map: %w", err)
	}
	for _, e := range rules {
		a.pol.rules[policyKeyFromMap(e.Key)] = policyValueFromMap(e.Value)
	}
	cidr, err := a.dp.Maps.ListCIDRPolicies()
	if err != nil {
		return fmt.Errorf("read cidr policy map: %w", err)
	}
	for _, e := range cidr {
		a.pol.cidr[policy.CIDRKey{EpID: e.Key.EpID, Dir: uint8(e.Key.Dir), Proto: uint8(e.Key.Proto), Port: e.Key.Port, IP: e.Key.Prefix}] = policyValueFromMap(e.Value)
	}
	a.pol.loaded = true
	return nil
}

// applyPolicy writes the differences between the compiled result and the maps: additions and
// changes first, then endpoint identities/flags, then removals. Conntrack is not touched, so
// established flows are not flushed.
func (a *Agent) applyPolicy(res *policy.Result) error {
	if !a.pol.loaded {
		if err := a.loadPolicyState(); err != nil {
			return err
		}
	}
	wantIPC := map[netip.Prefix]uint32{}
	for _, e := range res.IPCache {
		wantIPC[e.Prefix] = e.Identity
	}
	wantRules := map[policy.PolicyKey]policy.PolicyValue{}
	wantCIDR := map[policy.CIDRKey]policy.PolicyValue{}
	for _, ep := range res.Endpoints {
		for _, e := range ep.Policy {
			wantRules[e.Key] = e.Value
		}
		for _, e := range ep.CIDR {
			wantCIDR[e.Key] = e.Value
		}
	}

	var ipcUp []maps.IPCacheEntry
	for p, id := range wantIPC {
		if old, ok := a.pol.ipcache[p]; !ok || old != id {
			ipcUp = append(ipcUp, maps.IPCacheEntry{Prefix: p, Identity: id})
		}
	}
	var rulesUp []maps.PolicyEntry
	for k, v := range wantRules {
		if old, ok := a.pol.rules[k]; !ok || old != v {
			rulesUp = append(rulesUp, maps.PolicyEntry{Key: policyKeyToMap(k), Value: policyValueToMap(v)})
		}
	}
	var cidrUp []maps.CIDRPolicyEntry
	for k, v := range wantCIDR {
		if old, ok := a.pol.cidr[k]; !ok || old != v {
			cidrUp = append(cidrUp, maps.CIDRPolicyEntry{Key: cidrKeyToMap(k), Value: policyValueToMap(v)})
		}
	}
	if len(ipcUp) > 0 {
		if err := a.dp.Maps.UpsertIPCacheEntries(ipcUp); err != nil {
			return fmt.Errorf("write ipcache: %w", err)
		}
	}
	if len(rulesUp) > 0 {
		if err := a.dp.Maps.UpsertPolicies(rulesUp); err != nil {
			return fmt.Errorf("write policy entries: %w", err)
		}
	}
	if len(cidrUp) > 0 {
		if err := a.dp.Maps.UpsertCIDRPolicies(cidrUp); err != nil {
			return fmt.Errorf("write cidr policy entries: %w", err)
		}
	}
	for p, id := range wantIPC {
		a.pol.ipcache[p] = id
	}
	for k, v := range wantRules {
		a.pol.rules[k] = v
	}
	for k, v := range wantCIDR {
		a.pol.cidr[k] = v
	}

	// Endpoint identities and enforcement flags.
	a.mu.Lock()
	a.pol.result = res
	eps := make([]*Endpoint, 0, len(a.endpoints))
	states := make([]maps.Endpoint, 0, len(a.endpoints))
	for _, ep := range a.endpoints {
		eps = append(eps, ep)
		states = append(states, a.endpointStateLocked(ep))
	}
	a.mu.Unlock()
	for i, ep := range eps {
		if prev, ok := a.epWritten[ep.Ifindex]; ok && prev.Identity == states[i].Identity && prev.Flags == states[i].Flags && prev.IP == states[i].IP {
			continue
		}
		if err := a.dp.Maps.UpsertEndpoint(uint32(ep.Ifindex), states[i]); err != nil {
			return fmt.Errorf("write endpoint %s: %w", ep.ContainerID, err)
		}
		a.epWritten[ep.Ifindex] = states[i]
	}
	live := map[int]bool{}
	for _, ep := range eps {
		live[ep.Ifindex] = true
	}
	for idx := range a.epWritten {
		if !live[idx] {
			delete(a.epWritten, idx)
		}
	}

	// Removals.
	var ipcDel []netip.Prefix
	for p := range a.pol.ipcache {
		if _, ok := wantIPC[p]; !ok {
			ipcDel = append(ipcDel, p)
		}
	}
	for _, p := range ipcDel {
		if err := a.dp.Maps.DeleteIPCache(p); err != nil {
			return fmt.Errorf("delete ipcache %s: %w", p, err)
		}
		delete(a.pol.ipcache, p)
	}
	var rulesDel []maps.PolicyKey
	var rulesDelK []policy.PolicyKey
	for k := range a.pol.rules {
		if _, ok := wantRules[k]; !ok {
			rulesDel = append(rulesDel, policyKeyToMap(k))
			rulesDelK = append(rulesDelK, k)
		}
	}
	if len(rulesDel) > 0 {
		if err := a.dp.Maps.DeletePolicies(rulesDel); err != nil {
			return fmt.Errorf("delete policy entries: %w", err)
		}
		for _, k := range rulesDelK {
			delete(a.pol.rules, k)
		}
	}
	var cidrDel []maps.CIDRPolicyKey
	var cidrDelK []policy.CIDRKey
	for k := range a.pol.cidr {
		if _, ok := wantCIDR[k]; !ok {
			cidrDel = append(cidrDel, cidrKeyToMap(k))
			cidrDelK = append(cidrDelK, k)
		}
	}
	if len(cidrDel) > 0 {
		if err := a.dp.Maps.DeleteCIDRPolicies(cidrDel); err != nil {
			return fmt.Errorf("delete cidr policy entries: %w", err)
		}
		for _, k := range cidrDelK {
			delete(a.pol.cidr, k)
		}
	}
	return nil
}

func policyKeyToMap(k policy.PolicyKey) maps.PolicyKey {
	return maps.PolicyKey{EpID: k.EpID, PeerID: k.PeerID, Dir: maps.Direction(k.Dir), Proto: maps.Proto(k.Proto), Port: k.Port, PortPrefixLen: k.PortPrefixLen}
}

func policyKeyFromMap(k maps.PolicyKey) policy.PolicyKey {
	return policy.PolicyKey{EpID: k.EpID, PeerID: k.PeerID, Dir: uint8(k.Dir), Proto: uint8(k.Proto), Port: k.Port, PortPrefixLen: k.PortPrefixLen}
}

func policyValueToMap(v policy.PolicyValue) maps.PolicyValue {
	return maps.PolicyValue{Action: maps.Action(v.Action), Rule: v.Rule, PolicyID: v.PolicyID}
}

func policyValueFromMap(v maps.PolicyValue) policy.PolicyValue {
	return policy.PolicyValue{Action: uint8(v.Action), Rule: v.Rule, PolicyID: v.PolicyID}
}

func cidrKeyToMap(k policy.CIDRKey) maps.CIDRPolicyKey {
	return maps.CIDRPolicyKey{EpID: k.EpID, Dir: maps.Direction(k.Dir), Proto: maps.Proto(k.Proto), Port: k.Port, Prefix: k.IP}
}

// reportProblems logs and emits one Event per new policy problem.
func (a *Agent) reportProblems(_ context.Context, res *policy.Result) {
	now := map[string]bool{}
	for _, p := range res.Problems {
		msg := p.String()
		now[msg] = true
		if a.pol.problems[msg] {
			continue
		}
		a.log.Warn("policy problem (affected endpoints deny everything)", "problem", msg)
		if p.Policy != nil && a.recorder != nil {
			np := &networkingv1.NetworkPolicy{}
			np.Namespace, np.Name = p.Policy.Namespace, p.Policy.Name
			if obj, err := a.netpols.Lister().NetworkPolicies(p.Policy.Namespace).Get(p.Policy.Name); err == nil {
				np = obj
			}
			a.recorder.Eventf(np, corev1.EventTypeWarning, "PolicyUnrepresentable", "node %s: %s: selected pods deny all traffic until fixed", a.cfg.NodeName, p.Message)
		}
	}
	a.pol.problems = now
}

// reportRevision patches the Node annotation when the programmed revision grew.
func (a *Agent) reportRevision(ctx context.Context) {
	rev := a.programmedRevision.Load()
	if rev == 0 || rev <= a.reportedRevision {
		return
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationPolicyRevision: strconv.FormatUint(rev, 10)}}})
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.client.CoreV1().Nodes().Patch(pctx, a.cfg.NodeName, types.MergePatchType, patch, metav1PatchOptions); err != nil {
		a.log.Warn("report policy revision", "revision", rev, "err", err)
		time.AfterFunc(time.Second, a.triggerPolicy)
		return
	}
	a.reportedRevision = rev
}

// policiesSelecting returns the policies selecting a local endpoint for dir, sorted.
func policiesSelecting(res *policy.Result, epID uint32, dir uint8) []policy.PolicyRef {
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
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}
