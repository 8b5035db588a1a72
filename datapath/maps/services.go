package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/starlab-dev/starlab/datapath/bpfobj"
)

// Scope of a service entry (enum sl_svc_scope).
type Scope uint8

// Scopes.
const (
	ScopeClusterIP = Scope(bpfobj.SlSlSvcScopeSL_SCOPE_CLUSTERIP)
	// ScopeNodePort entries have an invalid/zero VIP ("any local node
	// address").
	ScopeNodePort = Scope(bpfobj.SlSlSvcScopeSL_SCOPE_NODEPORT)
)

// ServiceFlags are the sl_svc_val flags (enum sl_svc_flags).
type ServiceFlags uint16

// Service flags.
const (
	ServiceAffinity = ServiceFlags(bpfobj.SlSlSvcFlagsSL_SVC_AFFINITY) // sessionAffinity: ClientIP
	ServiceLocal    = ServiceFlags(bpfobj.SlSlSvcFlagsSL_SVC_LOCAL)    // externalTrafficPolicy: Local
	// ServiceExternal: an external address (externalIPs, LoadBalancer ingress), served from outside too.
	ServiceExternal = ServiceFlags(bpfobj.SlSlSvcFlagsSL_SVC_EXTERNAL)
	// ServiceSourceRanges: loadBalancerSourceRanges, set by UpsertService when Service.SourceRanges is not empty.
	ServiceSourceRanges = ServiceFlags(bpfobj.SlSlSvcFlagsSL_SVC_SOURCE_RANGES)
)

// ServiceKey is an sl_services key.
type ServiceKey struct {
	VIP   netip.Addr // zero value for NodePort
	Port  uint16
	Proto Proto
	Scope Scope
}

// Service is an sl_services value without the backend count (derived from
// the backend list).
type Service struct {
	ID    uint32
	Flags ServiceFlags
	// AffinityTimeout: with ServiceAffinity, seconds a client keeps its backend after its last
	// new connection (sl_affinity entries older than this are chosen anew).
	AffinityTimeout uint32
	// SourceRanges: loadBalancerSourceRanges, the only clients the frontend takes (empty: any).
	SourceRanges []netip.Prefix
}

// Backend is one service backend.
type Backend struct {
	IP   netip.Addr
	Port uint16
}

func (k ServiceKey) raw() (bpfobj.SlSlSvcKey, error) {
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP && k.Proto != ProtoSCTP {
		return bpfobj.SlSlSvcKey{}, fmt.Errorf("service %s:%d: protocol %s not supported (TCP, UDP or SCTP)", k.VIP, k.Port, k.Proto)
	}
	if k.Port == 0 {
		return bpfobj.SlSlSvcKey{}, fmt.Errorf("service %s/%s: port 0", k.VIP, k.Proto)
	}
	var vip uint32
	switch k.Scope {
	case ScopeClusterIP:
		v, err := mustIP(fmt.Sprintf("service %s:%d", k.VIP, k.Port), k.VIP)
		if err != nil {
			return bpfobj.SlSlSvcKey{}, err
		}
		vip = v
	case ScopeNodePort:
		if k.VIP.IsValid() && !k.VIP.IsUnspecified() {
			return bpfobj.SlSlSvcKey{}, fmt.Errorf("nodeport service %s:%d: VIP must be empty (0.0.0.0 = any node address)", k.VIP, k.Port)
		}
	default:
		return bpfobj.SlSlSvcKey{}, fmt.Errorf("service %s:%d: scope %d unknown (0 ClusterIP, 1 NodePort)", k.VIP, k.Port, k.Scope)
	}
	return bpfobj.SlSlSvcKey{Vip: vip, Port: Htons(k.Port), Proto: uint8(k.Proto), Scope: uint8(k.Scope)}, nil
}

// UpsertService writes the backends into slots 0..n-1, then the service with
// count n, then removes slots left over from a previous, longer list. New
// connections see either the old or the new set; established connections
// keep the backend stored in conntrack. An empty list makes the datapath
// refuse connections (SERVICE_BACKEND_NOT_FOUND, TCP RST).
func (m *Maps) UpsertService(k ServiceKey, s Service, backends []Backend) error {
	rk, err := k.raw()
	if err != nil {
		return err
	}
	if s.ID == 0 {
		return fmt.Errorf("service %s:%d/%s: service ID 0 is reserved, use IDs from 1", k.VIP, k.Port, k.Proto)
	}
	if s.Flags&ServiceAffinity != 0 && s.AffinityTimeout == 0 {
		return fmt.Errorf("service %s:%d/%s: session affinity with timeout 0 would never pin a client: set AffinityTimeout (seconds, Kubernetes default 10800)", k.VIP, k.Port, k.Proto)
	}
	if len(backends) > 0xffff {
		return fmt.Errorf("service %s:%d/%s: %d backends, at most 65535", k.VIP, k.Port, k.Proto, len(backends))
	}
	var old bpfobj.SlSlSvcVal
	hadOld := m.Services.Lookup(&rk, &old) == nil

	keys := make([]bpfobj.SlSlBackendKey, 0, len(backends))
	vals := make([]bpfobj.SlSlBackend, 0, len(backends))
	for i, b := range backends {
		ip, err := mustIP(fmt.Sprintf("service %d backend %d", s.ID, i), b.IP)
		if err != nil {
			return err
		}
		if b.Port == 0 {
			return fmt.Errorf("service %d backend %s: port 0", s.ID, b.IP)
		}
		keys = append(keys, bpfobj.SlSlBackendKey{SvcId: s.ID, Slot: uint32(i)})
		vals = append(vals, bpfobj.SlSlBackend{Ip: ip, Port: Htons(b.Port)})
	}
	if err := batchPut(m.Backends, NameBackends, keys, vals); err != nil {
		return fmt.Errorf("service %d backends: %w", s.ID, err)
	}
	flags := s.Flags &^ ServiceSourceRanges
	if len(s.SourceRanges) > 0 {
		flags |= ServiceSourceRanges
	}
	// ranges first: the frontend never takes a client its new ranges exclude
	if err := m.writeSourceRanges(s.ID, s.SourceRanges); err != nil {
		return err
	}
	v := bpfobj.SlSlSvcVal{SvcId: s.ID, Count: uint16(len(backends)), Flags: uint16(flags), AffinityTimeoutS: s.AffinityTimeout}
	if err := put(m.Services, NameServices, &rk, &v); err != nil {
		return err
	}
	if hadOld && old.SvcId != s.ID {
		if err := m.writeSourceRanges(old.SvcId, nil); err != nil {
			return err
		}
	}
	if hadOld {
		var stale []bpfobj.SlSlBackendKey
		for i := uint32(0); i < uint32(old.Count); i++ {
			if old.SvcId != s.ID || i >= uint32(len(backends)) {
				stale = append(stale, bpfobj.SlSlBackendKey{SvcId: old.SvcId, Slot: i})
			}
		}
		if err := batchDel(m.Backends, NameBackends, stale); err != nil {
			return err
		}
	}
	return nil
}

// DeleteService removes the service and its backend slots.
func (m *Maps) DeleteService(k ServiceKey) error {
	rk, err := k.raw()
	if err != nil {
		return err
	}
	var old bpfobj.SlSlSvcVal
	if err := m.Services.Lookup(&rk, &old); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("lookup %s: %w", NameServices, err)
	}
	if err := del(m.Services, NameServices, &rk); err != nil {
		return err
	}
	if err := m.writeSourceRanges(old.SvcId, nil); err != nil {
		return err
	}
	for i := uint32(0); i < uint32(old.Count); i++ {
		bk := bpfobj.SlSlBackendKey{SvcId: old.SvcId, Slot: i}
		if err := del(m.Backends, NameBackends, &bk); err != nil {
			return err
		}
	}
	return nil
}

// ServiceEntry is a service with its backends, as read back from the maps.
type ServiceEntry struct {
	Key      ServiceKey
	Service  Service
	Backends []Backend
}

// ListServices returns every service with its backends.
func (m *Maps) ListServices() ([]ServiceEntry, error) {
	var out []ServiceEntry
	var k bpfobj.SlSlSvcKey
	var v bpfobj.SlSlSvcVal
	it := m.Services.Iterate()
	for it.Next(&k, &v) {
		e := ServiceEntry{
			Key:     ServiceKey{Port: Ntohs(k.Port), Proto: Proto(k.Proto), Scope: Scope(k.Scope)},
			Service: Service{ID: v.SvcId, Flags: ServiceFlags(v.Flags), AffinityTimeout: v.AffinityTimeoutS},
		}
		if k.Scope == uint8(ScopeClusterIP) {
			e.Key.VIP = U32ToIP(k.Vip)
		}
		for i := uint32(0); i < uint32(v.Count); i++ {
			var b bpfobj.SlSlBackend
			bk := bpfobj.SlSlBackendKey{SvcId: v.SvcId, Slot: i}
			if err := m.Backends.Lookup(&bk, &b); err != nil {
				return nil, fmt.Errorf("service %d slot %d: %w", v.SvcId, i, err)
			}
			e.Backends = append(e.Backends, Backend{IP: U32ToIP(b.Ip), Port: Ntohs(b.Port)})
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", NameServices, err)
	}
	return out, nil
}

// writeSourceRanges makes the sl_lb_src_ranges entries of service id exactly ranges (nil: none).
func (m *Maps) writeSourceRanges(id uint32, ranges []netip.Prefix) error {
	want := map[bpfobj.SlSlLbSrcKey]bool{}
	for _, r := range ranges {
		if !r.Addr().Is4() {
			return fmt.Errorf("service %d: loadBalancerSourceRange %s is not IPv4", id, r)
		}
		r = r.Masked()
		a, _ := IPToU32(r.Addr())
		want[bpfobj.SlSlLbSrcKey{Prefixlen: uint32(bpfobj.SlSlLbSrcBitsSL_LB_SRC_FIXED_BITS) + uint32(r.Bits()), SvcId: id, Addr: a}] = true
	}
	var stale []bpfobj.SlSlLbSrcKey
	var k bpfobj.SlSlLbSrcKey
	var v uint8
	it := m.LBSourceRanges.Iterate()
	for it.Next(&k, &v) {
		if k.SvcId == id && !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", NameLBSourceRanges, err)
	}
	one := uint8(1)
	for wk := range want {
		if err := put(m.LBSourceRanges, NameLBSourceRanges, &wk, &one); err != nil {
			return err
		}
	}
	for i := range stale {
		if err := del(m.LBSourceRanges, NameLBSourceRanges, &stale[i]); err != nil {
			return err
		}
	}
	return nil
}
