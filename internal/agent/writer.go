package agent

import (
	"fmt"
	"net/netip"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
)

// mapWriter is the agent's one writer of the datapath maps. The policy side (policy.Writer,
// policy.Reader, endpoint deletes) is *maps.Maps itself; mapWriter adds the lb.Writer side, where
// lb's host-order keys become datapath/maps keys.
type mapWriter struct{ *maps.Maps }

var (
	_ policyMaps    = (*maps.Maps)(nil)
	_ frontendStore = mapWriter{}
	_ configWriter  = (*maps.Maps)(nil)
)

// WriteFrontend implements lb.Writer with maps.UpsertService (backends, count, stale slots).
func (w mapWriter) WriteFrontend(k lb.ServiceKey, v lb.ServiceValue, backends []lb.Backend) error {
	bs := make([]maps.Backend, len(backends))
	for i, b := range backends {
		bs[i] = maps.Backend{IP: b.IP, Port: b.Port}
	}
	return w.UpsertService(serviceKey(k), maps.Service{ID: v.ID, Flags: maps.ServiceFlags(v.Flags), AffinityTimeout: v.AffinityTimeout, SourceRanges: v.SourceRanges}, bs)
}

// DeleteFrontend implements lb.Writer with maps.DeleteService (frontend and its slots).
func (w mapWriter) DeleteFrontend(k lb.ServiceKey) error { return w.DeleteService(serviceKey(k)) }

// ProgrammedFrontends reads the frontends in sl_services (key -> service ID) without their
// backends, so a half-written previous state can still be read.
func (w mapWriter) ProgrammedFrontends() (map[lb.ServiceKey]uint32, error) {
	out := map[lb.ServiceKey]uint32{}
	var k bpfobj.SlSlSvcKey
	var v bpfobj.SlSlSvcVal
	it := w.Services.Iterate()
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

// serviceKey is the sl_services key of an lb frontend (NodePort: no VIP, "any node address").
func serviceKey(k lb.ServiceKey) maps.ServiceKey {
	mk := maps.ServiceKey{VIP: k.VIP, Port: k.Port, Proto: maps.Proto(k.Proto), Scope: maps.Scope(k.Scope)}
	if k.Scope == lb.ScopeNodePort {
		mk.VIP = netip.Addr{}
	}
	return mk
}
