package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Changes are the map writes needed to go from the programmed state to the desired one, one whole
// frontend at a time.
type Changes struct {
	// Delete lists the frontends to remove, with their backend slots.
	Delete []ServiceKey
	// Write lists the frontends whose value or backends changed, each with its whole new state.
	Write []FrontendState
	// Stale lists the backends a frontend no longer has (removed from its list, or the frontend
	// deleted or renumbered), under the service ID the datapath's conntrack entries carry: flows
	// load balanced to them still point at them until their conntrack entries go.
	Stale []StaleBackend
}

// StaleBackend is a backend that frontend Key (service ID ID) no longer uses.
type StaleBackend struct {
	Key     ServiceKey
	ID      uint32
	Backend Backend
}

// FrontendState is one frontend as it must be programmed: the sl_services value and the backends
// for slots 0..Count-1.
type FrontendState struct {
	Key      ServiceKey
	Value    ServiceValue
	Backends []Backend
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool { return len(c.Delete) == 0 && len(c.Write) == 0 }

func (c *Changes) merge(o Changes) {
	c.Delete = append(c.Delete, o.Delete...)
	c.Write = append(c.Write, o.Write...)
	c.Stale = append(c.Stale, o.Stale...)
}

// staleBackends appends to c the backends of old that the frontend key no longer has: all of them
// when the service ID changed or the frontend is gone (now nil), else those missing from now.
func (c *Changes) staleBackends(key ServiceKey, old *programmed, id uint32, now []Backend) {
	if old == nil {
		return
	}
	for _, b := range old.backends {
		if old.id == id && slices.Contains(now, b) {
			continue
		}
		c.Stale = append(c.Stale, StaleBackend{Key: key, ID: old.id, Backend: b})
	}
}

// Writer writes whole frontends into sl_services and sl_backends (the agent implements it once over
// datapath/maps).
type Writer interface {
	// WriteFrontend writes the backends into slots 0..n-1, then the frontend with count n, then
	// removes the slots a previous, longer list (or another service ID) left, so the datapath never
	// sees a count larger than the backend slots present.
	WriteFrontend(key ServiceKey, v ServiceValue, backends []Backend) error
	// DeleteFrontend removes the frontend, then its backend slots; a missing one is not an error.
	DeleteFrontend(key ServiceKey) error
}

// Apply writes c through w: deletions first (a frontend key freed by one Service may be taken by
// another in the same Changes), then the frontends to write. A failed frontend does not hold back
// the others; the errors are joined, each naming its frontend.
func (c Changes) Apply(w Writer) error {
	var errs []error
	for _, k := range c.Delete {
		if err := w.DeleteFrontend(k); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", k, err))
		}
	}
	for _, f := range c.Write {
		if err := w.WriteFrontend(f.Key, f.Value, f.Backends); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", f.Key, err))
		}
	}
	return errors.Join(errs...)
}

type programmed struct {
	owner    string
	id       uint32
	flags    uint16
	timeout  uint32 // affinity timeout, seconds
	ranges   []netip.Prefix
	backends []Backend
}

// Table is the agent-side state of the service maps for one node. Not safe for concurrent use.
type Table struct {
	nodeName string
	services map[string]*corev1.Service                       // ns/name
	slices   map[string]map[string]*discoveryv1.EndpointSlice // ns/service -> slice name -> slice
	sliceSvc map[string]string                                // ns/slice -> ns/service
	owned    map[string][]ServiceKey                          // ns/name -> frontends programmed
	front    map[ServiceKey]*programmed
	ids      map[string]uint32 // frontend id -> service id
	nextID   uint32
	seed     map[ServiceKey]uint32 // IDs found in the maps at start-up, reused for the same frontend
	seedUsed map[uint32]bool
	// claims lists, per frontend key, the Services whose translation wants it (value: the claim
	// is an externalIP only); claimed is the reverse index.
	claims      map[ServiceKey]map[string]bool
	claimed     map[string][]ServiceKey
	externalIPs ExternalIPPolicy
}

// ExternalIPPolicy says what the table does with Service spec.externalIPs.
type ExternalIPPolicy uint8

// External IP policies.
const (
	// ExternalIPsAllow programs externalIPs as in-cluster VIPs, as kube-proxy does.
	ExternalIPsAllow ExternalIPPolicy = iota
	// ExternalIPsDeny programs none and reports each Service that has them (the CVE-2020-8554
	// mitigation, like the DenyServiceExternalIPs admission plugin but on the datapath).
	ExternalIPsDeny
)

// ParseExternalIPPolicy parses "allow" or "deny".
func ParseExternalIPPolicy(s string) (ExternalIPPolicy, error) {
	switch s {
	case "allow", "":
		return ExternalIPsAllow, nil
	case "deny":
		return ExternalIPsDeny, nil
	}
	return 0, fmt.Errorf("external IP policy %q: use allow or deny", s)
}

func (p ExternalIPPolicy) String() string {
	if p == ExternalIPsDeny {
		return "deny"
	}
	return "allow"
}

// SetExternalIPPolicy sets what the table does with externalIPs; call it before the first Upsert.
func (t *Table) SetExternalIPPolicy(p ExternalIPPolicy) { t.externalIPs = p }

// NewTable returns an empty table for the node nodeName.
func NewTable(nodeName string) *Table {
	return &Table{
		nodeName: nodeName,
		services: map[string]*corev1.Service{},
		slices:   map[string]map[string]*discoveryv1.EndpointSlice{},
		sliceSvc: map[string]string{},
		owned:    map[string][]ServiceKey{},
		front:    map[ServiceKey]*programmed{},
		ids:      map[string]uint32{},
		nextID:   1,
		claims:   map[ServiceKey]map[string]bool{},
		claimed:  map[string][]ServiceKey{},
	}
}

// Frontend returns the programmed value and backends of key.
func (t *Table) Frontend(key ServiceKey) (ServiceValue, []Backend, bool) {
	p, ok := t.front[key]
	if !ok {
		return ServiceValue{}, nil, false
	}
	return ServiceValue{ID: p.id, Count: uint16(len(p.backends)), Flags: p.flags, AffinityTimeout: p.timeout, SourceRanges: p.ranges}, p.backends, true
}

// Len returns the number of programmed frontends.
func (t *Table) Len() int { return len(t.front) }

// Frontends returns every frontend of the table with its whole state, in key order: what writing
// the whole table at once takes (the agent does it once after its informers synced, having held the
// writes of the initial events back).
func (t *Table) Frontends() []FrontendState {
	out := make([]FrontendState, 0, len(t.front))
	for k := range t.front {
		v, bs, _ := t.Frontend(k)
		out = append(out, FrontendState{Key: k, Value: v, Backends: bs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// Lookup returns the programmed frontend for key: the owning Service ("ns/name") and its ID.
func (t *Table) Lookup(key ServiceKey) (owner string, id uint32, ok bool) {
	p, ok := t.front[key]
	if !ok {
		return "", 0, false
	}
	return p.owner, p.id, true
}

// UpsertService records svc and returns the changes for it. The changes are valid even with an error.
func (t *Table) UpsertService(svc *corev1.Service) (Changes, error) {
	k := svc.Namespace + "/" + svc.Name
	t.services[k] = svc
	return t.sync(k)
}

// DeleteService forgets the Service and removes its frontends.
func (t *Table) DeleteService(namespace, name string) Changes {
	k := namespace + "/" + name
	delete(t.services, k)
	c, _ := t.sync(k)
	return c
}

// UpsertSlice records an EndpointSlice. A slice whose Service is not known yet is kept (it will be
// used when the Service arrives) and reported with an error wrapping ErrUnknownService.
func (t *Table) UpsertSlice(sl *discoveryv1.EndpointSlice) (Changes, error) {
	svcName := sl.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		return Changes{}, &InputError{Kind: "EndpointSlice", Namespace: sl.Namespace, Name: sl.Name, Reason: "MissingServiceName",
			Msg: fmt.Sprintf("has no %s label: it cannot be matched to a Service", discoveryv1.LabelServiceName)}
	}
	sk := sl.Namespace + "/" + svcName
	var c Changes
	sliceKey := sl.Namespace + "/" + sl.Name
	if old, ok := t.sliceSvc[sliceKey]; ok && old != sk {
		delete(t.slices[old], sl.Name)
		oc, _ := t.sync(old)
		c.merge(oc)
	}
	t.sliceSvc[sliceKey] = sk
	if t.slices[sk] == nil {
		t.slices[sk] = map[string]*discoveryv1.EndpointSlice{}
	}
	t.slices[sk][sl.Name] = sl
	if _, ok := t.services[sk]; !ok {
		return c, fmt.Errorf("EndpointSlice %s/%s names Service %s: %w", sl.Namespace, sl.Name, svcName, ErrUnknownService)
	}
	sc, err := t.sync(sk)
	c.merge(sc)
	return c, err
}

// DeleteSlice forgets an EndpointSlice.
func (t *Table) DeleteSlice(namespace, name string) (Changes, error) {
	sliceKey := namespace + "/" + name
	sk, ok := t.sliceSvc[sliceKey]
	if !ok {
		return Changes{}, nil
	}
	delete(t.sliceSvc, sliceKey)
	delete(t.slices[sk], name)
	if len(t.slices[sk]) == 0 {
		delete(t.slices, sk)
	}
	return t.sync(sk)
}

// Seed makes the table reuse the service IDs a previous agent left in the maps: a frontend whose key
// is in ids gets that ID back, and new IDs start above every seeded one. Call it before the first
// Upsert. Without it a restarted agent would hand out IDs in a different order and briefly point
// existing frontends at another service's backend slots.
func (t *Table) Seed(ids map[ServiceKey]uint32) {
	t.seed = map[ServiceKey]uint32{}
	t.seedUsed = map[uint32]bool{}
	taken := map[uint32]bool{}
	for k, id := range ids {
		if id == 0 || taken[id] {
			continue
		}
		taken[id] = true
		t.seed[k] = id
		if id >= t.nextID {
			t.nextID = id + 1
		}
	}
}

func (t *Table) allocID(fid string, key ServiceKey) uint32 {
	if id, ok := t.ids[fid]; ok {
		return id
	}
	if id, ok := t.seed[key]; ok && !t.seedUsed[id] {
		t.seedUsed[id] = true
		t.ids[fid] = id
		return id
	}
	// IDs are never reused: a reused ID could have its new backends deleted by a stale deletion
	// applied later, and 2^32 frontends do not happen on one node.
	id := t.nextID
	t.nextID++
	t.ids[fid] = id
	return id
}

// sync recomputes the frontends of the Service named k and diffs them against what is programmed.
// A frontend key claimed by several Services goes to the one that wins (see beats), whatever the
// order the Services arrive in; the others are refused, each with a FrontendConflict error.
func (t *Table) sync(k string) (Changes, error) {
	var want []Frontend
	var errs []error
	svc, ok := t.services[k]
	if ok {
		var sls []*discoveryv1.EndpointSlice
		names := make([]string, 0, len(t.slices[k]))
		for n := range t.slices[k] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			sls = append(sls, t.slices[k][n])
		}
		var terr error
		want, terr = Translate(svc, sls, t.nodeName)
		if terr != nil {
			errs = append(errs, terr)
		}
		if t.externalIPs == ExternalIPsDeny {
			var denied bool
			want = slices.DeleteFunc(want, func(f Frontend) bool { denied = denied || f.External; return f.External })
			if denied {
				errs = append(errs, svcErr(svc, "ExternalIPsDenied", "spec.externalIPs %v are not programmed: this cluster refuses Service externalIPs (chart value agent.services.externalIPs=deny)", svc.Spec.ExternalIPs))
			}
		}
	}
	t.claim(k, want)

	var c Changes
	keep := map[ServiceKey]bool{}
	var owned []ServiceKey
	var resync []string // Services that win a frontend k gives up
	for _, f := range want {
		if keep[f.Key] {
			continue // the same address listed twice (clusterIP and externalIP)
		}
		p := t.front[f.Key]
		if w := t.winner(f.Key); w != k {
			errs = append(errs, svcErr(svc, "FrontendConflict", "%s is also claimed by Service %s, which keeps it (a ClusterIP or NodePort beats an externalIP, then the older Service, then namespace/name): choose another address or port", f.Key, w))
			if p != nil && p.owner == k {
				resync = append(resync, w)
			}
			continue
		}
		if p != nil && p.owner != k {
			// k takes the frontend over from a Service it beats.
			if loser, ok := t.services[p.owner]; ok {
				errs = append(errs, svcErr(loser, "FrontendConflict", "%s is also claimed by Service %s, which takes it (a ClusterIP or NodePort beats an externalIP, then the older Service, then namespace/name): choose another address or port", f.Key, k))
			}
			t.forgetID(p.id)
		}
		keep[f.Key] = true
		owned = append(owned, f.Key)
		id := t.allocID(f.id(), f.Key)
		old := t.front[f.Key]
		if old == nil || old.id != id || old.flags != f.Flags || old.timeout != f.AffinityTimeout || !slices.Equal(old.backends, f.Backends) ||
			!slices.Equal(old.ranges, f.SourceRanges) {
			val := ServiceValue{ID: id, Count: uint16(len(f.Backends)), Flags: f.Flags, AffinityTimeout: f.AffinityTimeout, SourceRanges: f.SourceRanges}
			c.Write = append(c.Write, FrontendState{Key: f.Key, Value: val, Backends: f.Backends})
			c.staleBackends(f.Key, old, id, f.Backends)
		}
		t.front[f.Key] = &programmed{owner: k, id: id, flags: f.Flags, timeout: f.AffinityTimeout, ranges: f.SourceRanges, backends: f.Backends}
	}
	for _, key := range t.owned[k] {
		if keep[key] {
			continue
		}
		old := t.front[key]
		if old == nil || old.owner != k {
			continue
		}
		c.Delete = append(c.Delete, key)
		c.staleBackends(key, old, 0, nil)
		delete(t.front, key)
		t.forgetID(old.id)
		if w := t.winner(key); w != "" {
			resync = append(resync, w)
		}
	}
	if len(owned) == 0 {
		delete(t.owned, k)
	} else {
		t.owned[k] = owned
	}
	for _, w := range resync {
		if w == k {
			continue
		}
		wc, werr := t.sync(w)
		c.merge(wc)
		if werr != nil {
			errs = append(errs, werr)
		}
	}
	return c, errors.Join(errs...)
}

// forgetID drops the frontend IDs mapped to id (a frontend gone or taken over gets a new ID if it
// comes back).
func (t *Table) forgetID(id uint32) {
	for fid, v := range t.ids {
		if v == id {
			delete(t.ids, fid)
		}
	}
}

// claim records the frontend keys the Service k wants (want) in place of its previous claims.
func (t *Table) claim(k string, want []Frontend) {
	for _, key := range t.claimed[k] {
		delete(t.claims[key], k)
		if len(t.claims[key]) == 0 {
			delete(t.claims, key)
		}
	}
	delete(t.claimed, k)
	for _, f := range want {
		cl := t.claims[f.Key]
		if cl == nil {
			cl = map[string]bool{}
			t.claims[f.Key] = cl
		}
		ext, seen := cl[k]
		if !seen {
			t.claimed[k] = append(t.claimed[k], f.Key)
			ext = true
		}
		cl[k] = ext && f.External // a ClusterIP claim of the same address counts as one
	}
}

// winner is the Service that gets frontend key among those claiming it ("" when none does).
func (t *Table) winner(key ServiceKey) string {
	best := ""
	for k := range t.claims[key] {
		if best == "" || t.beats(key, k, best) {
			best = k
		}
	}
	return best
}

// beats orders two Services claiming frontend key, the same way on every node and after every
// restart: a ClusterIP or NodePort (addresses the API server allocates) beats an externalIP (any
// author can write one), then the older creationTimestamp wins (kube-proxy and Cilium keep the
// first Service), then the smaller namespace/name.
func (t *Table) beats(key ServiceKey, a, b string) bool {
	if ea, eb := t.claims[key][a], t.claims[key][b]; ea != eb {
		return !ea
	}
	ta, tb := t.services[a].CreationTimestamp, t.services[b].CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a < b
}
