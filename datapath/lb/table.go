package lb

import (
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Changes are the map writes needed to go from the programmed state to the desired one.
type Changes struct {
	UpsertBackends map[BackendKey]Backend
	UpsertServices map[ServiceKey]ServiceValue
	DeleteServices []ServiceKey
	DeleteBackends []BackendKey
	// Touched lists the frontends whose value or backends changed (not the deleted ones), for writers
	// that rewrite a whole frontend at once (Table.Frontend gives its programmed state).
	Touched []ServiceKey
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool {
	return len(c.UpsertBackends) == 0 && len(c.UpsertServices) == 0 && len(c.DeleteServices) == 0 && len(c.DeleteBackends) == 0
}

func (c *Changes) merge(o Changes) {
	for k, v := range o.UpsertBackends {
		if c.UpsertBackends == nil {
			c.UpsertBackends = map[BackendKey]Backend{}
		}
		c.UpsertBackends[k] = v
	}
	for k, v := range o.UpsertServices {
		if c.UpsertServices == nil {
			c.UpsertServices = map[ServiceKey]ServiceValue{}
		}
		c.UpsertServices[k] = v
	}
	c.DeleteServices = append(c.DeleteServices, o.DeleteServices...)
	c.DeleteBackends = append(c.DeleteBackends, o.DeleteBackends...)
	c.Touched = append(c.Touched, o.Touched...)
}

// Writer writes service map entries (implemented over datapath/maps by the agent).
type Writer interface {
	UpsertBackends(map[BackendKey]Backend) error
	UpsertServices(map[ServiceKey]ServiceValue) error
	DeleteServices([]ServiceKey) error
	DeleteBackends([]BackendKey) error
}

// Apply writes c: new backends first, then service values (counts), then deletions, so the
// datapath never sees a count larger than the backend slots present.
func (c Changes) Apply(w Writer) error {
	if len(c.UpsertBackends) > 0 {
		if err := w.UpsertBackends(c.UpsertBackends); err != nil {
			return fmt.Errorf("upsert %d backends: %w", len(c.UpsertBackends), err)
		}
	}
	if len(c.UpsertServices) > 0 {
		if err := w.UpsertServices(c.UpsertServices); err != nil {
			return fmt.Errorf("upsert %d services: %w", len(c.UpsertServices), err)
		}
	}
	if len(c.DeleteServices) > 0 {
		if err := w.DeleteServices(c.DeleteServices); err != nil {
			return fmt.Errorf("delete %d services: %w", len(c.DeleteServices), err)
		}
	}
	if len(c.DeleteBackends) > 0 {
		if err := w.DeleteBackends(c.DeleteBackends); err != nil {
			return fmt.Errorf("delete %d backends: %w", len(c.DeleteBackends), err)
		}
	}
	return nil
}

type programmed struct {
	owner    string
	id       uint32
	flags    uint16
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
}

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
	}
}

func backendsChanged(a, b []Backend) bool {
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if a[i] != b[i] {
			return true
		}
	}
	return false
}

// Frontend returns the programmed value and backends of key.
func (t *Table) Frontend(key ServiceKey) (ServiceValue, []Backend, bool) {
	p, ok := t.front[key]
	if !ok {
		return ServiceValue{}, nil, false
	}
	return ServiceValue{ID: p.id, Count: uint16(len(p.backends)), Flags: p.flags}, p.backends, true
}

// Len returns the number of programmed frontends.
func (t *Table) Len() int { return len(t.front) }

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
func (t *Table) sync(k string) (Changes, error) {
	var want []Frontend
	var terr error
	if svc, ok := t.services[k]; ok {
		var slices []*discoveryv1.EndpointSlice
		names := make([]string, 0, len(t.slices[k]))
		for n := range t.slices[k] {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			slices = append(slices, t.slices[k][n])
		}
		want, terr = Translate(svc, slices, t.nodeName)
	}
	c := Changes{UpsertBackends: map[BackendKey]Backend{}, UpsertServices: map[ServiceKey]ServiceValue{}}
	keep := map[ServiceKey]bool{}
	var owned []ServiceKey
	var errs []error
	if terr != nil {
		errs = append(errs, terr)
	}
	for _, f := range want {
		if p, ok := t.front[f.Key]; ok && p.owner != k {
			svc := t.services[k]
			errs = append(errs, svcErr(svc, "FrontendConflict", "%s is already used by Service %s: choose another port", f.Key, p.owner))
			continue
		}
		keep[f.Key] = true
		owned = append(owned, f.Key)
		id := t.allocID(f.id(), f.Key)
		old := t.front[f.Key]
		for i, b := range f.Backends {
			if old == nil || old.id != id || i >= len(old.backends) || old.backends[i] != b {
				c.UpsertBackends[BackendKey{ID: id, Slot: uint32(i)}] = b
			}
		}
		if old != nil {
			if old.id != id {
				for i := range old.backends {
					c.DeleteBackends = append(c.DeleteBackends, BackendKey{ID: old.id, Slot: uint32(i)})
				}
			} else {
				for i := len(f.Backends); i < len(old.backends); i++ {
					c.DeleteBackends = append(c.DeleteBackends, BackendKey{ID: id, Slot: uint32(i)})
				}
			}
		}
		val := ServiceValue{ID: id, Count: uint16(len(f.Backends)), Flags: f.Flags}
		if old == nil || old.id != id || old.flags != f.Flags || len(old.backends) != len(f.Backends) {
			c.UpsertServices[f.Key] = val
			c.Touched = append(c.Touched, f.Key)
		} else if backendsChanged(old.backends, f.Backends) {
			c.Touched = append(c.Touched, f.Key)
		}
		t.front[f.Key] = &programmed{owner: k, id: id, flags: f.Flags, backends: f.Backends}
	}
	for _, key := range t.owned[k] {
		if keep[key] {
			continue
		}
		old := t.front[key]
		if old == nil || old.owner != k {
			continue
		}
		c.DeleteServices = append(c.DeleteServices, key)
		for i := range old.backends {
			c.DeleteBackends = append(c.DeleteBackends, BackendKey{ID: old.id, Slot: uint32(i)})
		}
		delete(t.front, key)
		for fid, id := range t.ids {
			if id == old.id {
				delete(t.ids, fid)
			}
		}
	}
	if len(owned) == 0 {
		delete(t.owned, k)
	} else {
		t.owned[k] = owned
	}
	return c, errors.Join(errs...)
}
