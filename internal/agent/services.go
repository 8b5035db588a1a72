package agent

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// onService and onSlice feed the lb table and write the resulting changes. Errors about the
// objects are logged and reported as Events; map errors are logged (the next event retries).
func (a *Agent) onService(obj any, deleted bool) {
	svc, ok := unwrap[*corev1.Service](obj)
	if !ok {
		return
	}
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	var c lb.Changes
	var err error
	if deleted {
		c = a.lbTable.DeleteService(svc.Namespace, svc.Name)
	} else {
		c, err = a.lbTable.UpsertService(svc)
	}
	a.reportLBError(err)
	a.applyLB(c)
}

func (a *Agent) onSlice(obj any, deleted bool) {
	sl, ok := unwrap[*discoveryv1.EndpointSlice](obj)
	if !ok {
		return
	}
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	var c lb.Changes
	var err error
	if deleted {
		c, err = a.lbTable.DeleteSlice(sl.Namespace, sl.Name)
	} else {
		c, err = a.lbTable.UpsertSlice(sl)
	}
	if errors.Is(err, lb.ErrUnknownService) {
		// Normal while the Service informer catches up; it is used once the Service arrives.
		a.log.Debug("endpointslice before its service", "slice", sl.Namespace+"/"+sl.Name)
		err = nil
	}
	a.reportLBError(err)
	a.applyLB(c)
}

func (a *Agent) reportLBError(err error) {
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
		a.log.Warn("service translation problem", "err", e)
		var ie *lb.InputError
		if a.recorder != nil && errors.As(e, &ie) && ie.Kind == "Service" {
			ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ie.Namespace, Name: ie.Name}
			if svc, err := a.services.Lister().Services(ie.Namespace).Get(ie.Name); err == nil {
				ref.UID, ref.ResourceVersion = svc.UID, svc.ResourceVersion
			}
			a.recorder.Event(ref, corev1.EventTypeWarning, ie.Reason, ie.Msg)
		}
	}
}

// applyLB writes touched frontends whole and removes deleted ones (svcMu held).
func (a *Agent) applyLB(c lb.Changes) {
	for _, k := range c.DeleteServices {
		if err := a.dp.Maps.DeleteService(svcKeyToMap(k)); err != nil {
			a.log.Error("delete service entry", "service", k.String(), "err", err)
		}
	}
	for _, k := range c.Touched {
		v, bs, ok := a.lbTable.Frontend(k)
		if !ok {
			continue
		}
		backends := make([]maps.Backend, len(bs))
		for i, b := range bs {
			backends[i] = maps.Backend{IP: b.IP, Port: b.Port}
		}
		if err := a.dp.Maps.UpsertService(svcKeyToMap(k), maps.Service{ID: v.ID, Flags: maps.ServiceFlags(v.Flags)}, backends); err != nil {
			a.log.Error("write service entry", "service", k.String(), "err", err)
			continue
		}
		a.log.Debug("service programmed", "service", k.String(), "id", v.ID, "backends", len(bs))
	}
}

func svcKeyToMap(k lb.ServiceKey) maps.ServiceKey {
	mk := maps.ServiceKey{VIP: k.VIP, Port: k.Port, Proto: maps.Proto(k.Proto), Scope: maps.Scope(k.Scope)}
	if k.Scope == lb.ScopeNodePort {
		mk.VIP = netip.Addr{}
	}
	return mk
}

// programmedServices reads the frontends in sl_services (key -> service ID) without their backends,
// so a half-written previous state can still be read.
func (a *Agent) programmedServices() (map[lb.ServiceKey]uint32, error) {
	out := map[lb.ServiceKey]uint32{}
	var k bpfobj.SlSlSvcKey
	var v bpfobj.SlSlSvcVal
	it := a.dp.Maps.Services.Iterate()
	for it.Next(&k, &v) {
		key := lb.ServiceKey{VIP: maps.U32ToIP(k.Vip), Port: maps.Ntohs(k.Port), Proto: k.Proto, Scope: k.Scope}
		if key.Scope == lb.ScopeNodePort {
			key.VIP = netip.IPv4Unspecified()
		}
		out[key] = v.SvcId
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", maps.NameServices, err)
	}
	return out, nil
}

// seedServiceIDs makes the lb table reuse the IDs of the previous agent (before any informer event).
func (a *Agent) seedServiceIDs() error {
	ids, err := a.programmedServices()
	if err != nil {
		return err
	}
	a.svcMu.Lock()
	a.lbTable.Seed(ids)
	a.svcMu.Unlock()
	a.log.Info("service IDs carried over from the pinned maps", "frontends", len(ids))
	return nil
}

// pruneStaleServices removes service entries left in the pinned maps by a previous run that the
// current Services no longer produce (called once the service handlers have seen every object).
func (a *Agent) pruneStaleServices() error {
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	ids, err := a.programmedServices()
	if err != nil {
		return err
	}
	for k := range ids {
		if _, _, ok := a.lbTable.Frontend(k); ok {
			continue
		}
		if err := a.dp.Maps.DeleteService(svcKeyToMap(k)); err != nil {
			return fmt.Errorf("delete stale service %s: %w", k, err)
		}
		a.log.Info("removed stale service entry", "service", k.String())
	}
	return nil
}

// serviceFor names the Service behind a frontend address (flow enrichment).
func (a *Agent) serviceFor(ip netip.Addr, port uint16, proto uint8) (ns, name string, ok bool) {
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	owner, _, found := a.lbTable.Lookup(lb.ServiceKey{VIP: ip, Port: port, Proto: proto, Scope: lb.ScopeClusterIP})
	if !found {
		if a.isNodeIP(ip) {
			owner, _, found = a.lbTable.Lookup(lb.ServiceKey{VIP: netip.IPv4Unspecified(), Port: port, Proto: proto, Scope: lb.ScopeNodePort})
		}
	}
	if !found {
		return "", "", false
	}
	for i := 0; i < len(owner); i++ {
		if owner[i] == '/' {
			return owner[:i], owner[i+1:], true
		}
	}
	return "", owner, true
}

// unwrap returns the typed object of an informer event, resolving tombstones.
func unwrap[T any](obj any) (T, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	v, ok := obj.(T)
	return v, ok
}
