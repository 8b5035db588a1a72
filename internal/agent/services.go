package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// frontendStore is where the service part writes: the service maps (mapWriter).
type frontendStore interface {
	lb.Writer
	ProgrammedFrontends() (map[lb.ServiceKey]uint32, error)
}

// serviceGetter finds a Service object by name (its UID and resourceVersion go into an Event).
type serviceGetter interface {
	Get(namespace, name string) (*corev1.Service, error)
}

// services is the service part: Service and EndpointSlice events -> lb.Table -> lb.Changes ->
// the service maps. Errors about the objects are logged and reported as Events; map errors are
// logged (the next event for the Service retries).
type services struct {
	log      *slog.Logger
	store    frontendStore
	isNodeIP func(netip.Addr) bool // NodePort lookups in ServiceByAddr
	recorder record.EventRecorder  // nil: no Events
	lookup   serviceGetter         // nil: Events without UID
	ct       conntrackFlusher      // nil: no conntrack flushes
	health   *healthChecks         // nil: healthCheckNodePorts not served

	mu    sync.Mutex // table, holding, heldStale
	table *lb.Table
	// holding keeps the maps as they are while the table takes the initial informer events (hold
	// .. release); heldStale are the stale backends those events produced, flushed at release.
	holding   bool
	heldStale []lb.StaleBackend
}

func newServices(nodeName string, log *slog.Logger, isNodeIP func(netip.Addr) bool) *services {
	return &services{log: log, isNodeIP: isNodeIP, table: lb.NewTable(nodeName)}
}

// onService and onSlice are the informer handlers.
func (s *services) onService(obj any, deleted bool) {
	svc, ok := unwrap[*corev1.Service](obj)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c lb.Changes
	var err error
	if deleted {
		c = s.table.DeleteService(svc.Namespace, svc.Name)
	} else {
		c, err = s.table.UpsertService(svc)
	}
	s.reportError(err)
	s.apply(c)
}

func (s *services) onSlice(obj any, deleted bool) {
	sl, ok := unwrap[*discoveryv1.EndpointSlice](obj)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c lb.Changes
	var err error
	if deleted {
		c, err = s.table.DeleteSlice(sl.Namespace, sl.Name)
	} else {
		c, err = s.table.UpsertSlice(sl)
	}
	if errors.Is(err, lb.ErrUnknownService) {
		// Normal while the Service informer catches up; it is used once the Service arrives.
		s.log.Debug("endpointslice before its service", "slice", sl.Namespace+"/"+sl.Name)
		err = nil
	}
	s.reportError(err)
	s.apply(c)
}

func (s *services) reportError(err error) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		s.log.Warn("service translation problem", "err", e)
		var ie *lb.InputError
		if s.recorder != nil && errors.As(e, &ie) && ie.Kind == "Service" {
			ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ie.Namespace, Name: ie.Name}
			if s.lookup != nil {
				if svc, err := s.lookup.Get(ie.Namespace, ie.Name); err == nil {
					ref.UID, ref.ResourceVersion = svc.UID, svc.ResourceVersion
				}
			}
			s.recorder.Event(ref, corev1.EventTypeWarning, ie.Reason, ie.Msg)
		}
	}
}

// apply writes c (mu held) and brings the health check ports up to date; while holding, only the
// stale backends are kept for release.
func (s *services) apply(c lb.Changes) {
	if s.holding {
		s.heldStale = append(s.heldStale, c.Stale...)
		return
	}
	if s.health != nil {
		s.health.sync(s.table.HealthChecks())
	}
	if c.Empty() {
		return
	}
	if err := c.Apply(s.store); err != nil {
		s.log.Error("write service entries", "err", err)
		return
	}
	s.log.Debug("services programmed", "written", len(c.Write), "deleted", len(c.Delete))
	s.flushStale(c.Stale)
}

// flushTimeout bounds one conntrack flush (informer handlers carry no context).
const flushTimeout = 10 * time.Second

// flushStale deletes the conntrack entries of UDP flows that a Service load balanced to a backend
// it no longer has, as kube-proxy does: the client's next datagram is a conntrack miss and gets a
// live backend. TCP connections are left to finish on their backend (kube-proxy's graceful
// termination); a dead backend resets or times them out. Called after the new backends are written.
func (s *services) flushStale(stale []lb.StaleBackend) {
	var match []func(maps.CTKey, maps.CTEntry) bool
	for _, b := range stale {
		if b.Key.Proto != lb.ProtoUDP {
			continue
		}
		match = append(match, maps.CTToBackend(b.ID, maps.ProtoUDP, b.Backend.IP, b.Backend.Port))
	}
	if s.ct == nil || len(match) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	n, err := s.ct.DeleteCTWhere(ctx, func(k maps.CTKey, e maps.CTEntry) bool {
		for _, m := range match {
			if m(k, e) {
				return true
			}
		}
		return false
	})
	if err != nil {
		s.log.Warn("conntrack flush of removed service backends incomplete", "backends", len(match), "removed", n, "err", err)
		return
	}
	s.log.Debug("conntrack of removed service backends flushed", "backends", len(match), "removed", n)
}

// seed makes the lb table reuse the IDs of the previous agent (before any informer event).
func (s *services) seed() error {
	ids, err := s.store.ProgrammedFrontends()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.table.Seed(ids)
	s.mu.Unlock()
	s.log.Info("service IDs carried over from the pinned maps", "frontends", len(ids))
	return nil
}

// hold makes the part update its table from informer events without writing the maps, until
// release. A restarted agent holds while its informers deliver the initial objects: a Service
// arrives before its EndpointSlices, and written at once it would be a frontend without backends
// (new connections refused, SERVICE_BACKEND_NOT_FOUND) until they follow, while the pinned maps
// already hold its backends.
func (s *services) hold() {
	s.mu.Lock()
	s.holding = true
	s.mu.Unlock()
}

// release writes every frontend of the table (the pinned values are rewritten in place, slot by
// slot, so established and new connections see the old or the new backends, never none), flushes
// the conntrack of the stale backends seen while holding, and lets later events write again.
// Call it once the service handlers have seen every initial object, before pruneStale.
func (s *services) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return
	}
	s.holding = false
	c := lb.Changes{Write: s.table.Frontends(), Stale: s.heldStale}
	s.heldStale = nil
	s.apply(c)
	s.log.Info("services programmed after the informers synced", "frontends", len(c.Write))
}

// pruneStale removes service entries left in the pinned maps by a previous run that the current
// Services no longer produce (called once the service handlers have seen every object).
func (s *services) pruneStale() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.store.ProgrammedFrontends()
	if err != nil {
		return err
	}
	for k := range ids {
		if _, _, ok := s.table.Frontend(k); ok {
			continue
		}
		if err := s.store.DeleteFrontend(k); err != nil {
			return fmt.Errorf("delete stale service %s: %w", k, err)
		}
		s.log.Info("removed stale service entry", "service", k.String())
	}
	return nil
}

// len is the number of programmed frontends.
func (s *services) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.Len()
}

// ServiceByAddr names the Service behind a frontend address: a ClusterIP, or a NodePort when ip
// is one of this node's addresses (flow enrichment).
func (s *services) ServiceByAddr(ip netip.Addr, port uint16, proto uint8) (namespace, name string, ok bool) {
	s.mu.Lock()
	owner, _, found := s.table.Lookup(lb.ServiceKey{VIP: ip, Port: port, Proto: proto, Scope: lb.ScopeClusterIP})
	if !found && s.isNodeIP != nil && s.isNodeIP(ip) {
		owner, _, found = s.table.Lookup(lb.ServiceKey{VIP: netip.IPv4Unspecified(), Port: port, Proto: proto, Scope: lb.ScopeNodePort})
	}
	s.mu.Unlock()
	if !found {
		return "", "", false
	}
	if ns, n, ok := strings.Cut(owner, "/"); ok {
		return ns, n, true
	}
	return "", owner, true
}

// listedServices adapts the Service lister to serviceGetter.
type listedServices struct{ corev1listers.ServiceLister }

func (l listedServices) Get(namespace, name string) (*corev1.Service, error) {
	return l.Services(namespace).Get(name)
}

// unwrap returns the typed object of an informer event, resolving tombstones.
func unwrap[T any](obj any) (T, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	v, ok := obj.(T)
	return v, ok
}
