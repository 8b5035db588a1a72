package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/starlab-dev/starlab/datapath/lb"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/datapath/policy"
)

// fakePolicyMaps is an in-memory model of the policy maps and sl_endpoints that logs each write.
type fakePolicyMaps struct {
	mu   sync.Mutex
	s    policy.State
	log  []string
	fail error // returned by every write when set
	// failPolicyUpserts is returned by sl_policy upserts when set.
	failPolicyUpserts error
	// policyMax and cidrMax are the max entries of sl_policy and sl_cidr_policy (0: unlimited);
	// an upsert that finds the map full writes what fits and fails, as the kernel's per-entry
	// writes do.
	policyMax, cidrMax int
}

func newFakePolicyMaps() *fakePolicyMaps {
	return &fakePolicyMaps{s: policy.State{
		IPCache: map[netip.Prefix]maps.IPCacheEntry{}, Policy: map[maps.PolicyKey]maps.PolicyValue{},
		CIDR: map[maps.CIDRPolicyKey]maps.PolicyValue{}, Endpoints: map[uint32]maps.Endpoint{},
	}}
}

func (f *fakePolicyMaps) note(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.log = append(f.log, fmt.Sprintf(format, args...))
	return nil
}

func (f *fakePolicyMaps) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.log
	f.log = nil
	return out
}

func (f *fakePolicyMaps) UpsertEndpoint(ifindex uint32, e maps.Endpoint) error {
	if err := f.note("endpoint %d identity %d flags %d", ifindex, e.Identity, e.Flags); err != nil {
		return err
	}
	f.s.Endpoints[ifindex] = e
	return nil
}

func (f *fakePolicyMaps) DeleteEndpoint(ifindex uint32) error {
	if err := f.note("delete endpoint %d", ifindex); err != nil {
		return err
	}
	delete(f.s.Endpoints, ifindex)
	return nil
}

func (f *fakePolicyMaps) UpsertIPCacheEntries(es []maps.IPCacheEntry) error {
	if err := f.note("ipcache upsert %d", len(es)); err != nil {
		return err
	}
	for _, e := range es {
		f.s.IPCache[e.Prefix] = e
	}
	return nil
}

func (f *fakePolicyMaps) DeleteIPCacheEntries(ps []netip.Prefix) error {
	if err := f.note("ipcache delete %d", len(ps)); err != nil {
		return err
	}
	for _, p := range ps {
		delete(f.s.IPCache, p)
	}
	return nil
}

func (f *fakePolicyMaps) UpsertPolicies(es []maps.PolicyEntry) error {
	if err := f.note("policy upsert %d", len(es)); err != nil {
		return err
	}
	if f.failPolicyUpserts != nil {
		return f.failPolicyUpserts
	}
	for _, e := range es {
		if _, ok := f.s.Policy[e.Key]; !ok && f.policyMax > 0 && len(f.s.Policy) >= f.policyMax {
			return fmt.Errorf("update sl_policy: %w", syscall.E2BIG)
		}
		f.s.Policy[e.Key] = e.Value
	}
	return nil
}

// PolicyCapacity reports the configured max entries (0: unlimited).
func (f *fakePolicyMaps) PolicyCapacity() maps.PolicyCapacity {
	return maps.PolicyCapacity{Policy: f.policyMax, CIDR: f.cidrMax}
}

func (f *fakePolicyMaps) DeletePolicies(ks []maps.PolicyKey) error {
	if err := f.note("policy delete %d", len(ks)); err != nil {
		return err
	}
	for _, k := range ks {
		delete(f.s.Policy, k)
	}
	return nil
}

func (f *fakePolicyMaps) UpsertCIDRPolicies(es []maps.CIDRPolicyEntry) error {
	if err := f.note("cidr upsert %d", len(es)); err != nil {
		return err
	}
	for _, e := range es {
		if _, ok := f.s.CIDR[e.Key]; !ok && f.cidrMax > 0 && len(f.s.CIDR) >= f.cidrMax {
			return fmt.Errorf("update sl_cidr_policy: %w", syscall.E2BIG)
		}
		f.s.CIDR[e.Key] = e.Value
	}
	return nil
}

func (f *fakePolicyMaps) DeleteCIDRPolicies(ks []maps.CIDRPolicyKey) error {
	if err := f.note("cidr delete %d", len(ks)); err != nil {
		return err
	}
	for _, k := range ks {
		delete(f.s.CIDR, k)
	}
	return nil
}

func (f *fakePolicyMaps) ListIPCache() ([]maps.IPCacheEntry, error) {
	var out []maps.IPCacheEntry
	for _, e := range f.s.IPCache {
		out = append(out, e)
	}
	return out, nil
}

func (f *fakePolicyMaps) ListPolicies() ([]maps.PolicyEntry, error) {
	var out []maps.PolicyEntry
	for k, v := range f.s.Policy {
		out = append(out, maps.PolicyEntry{Key: k, Value: v})
	}
	return out, nil
}

func (f *fakePolicyMaps) ListCIDRPolicies() ([]maps.CIDRPolicyEntry, error) {
	var out []maps.CIDRPolicyEntry
	for k, v := range f.s.CIDR {
		out = append(out, maps.CIDRPolicyEntry{Key: k, Value: v})
	}
	return out, nil
}

func (f *fakePolicyMaps) ListEndpoints() (map[uint32]maps.Endpoint, error) {
	out := map[uint32]maps.Endpoint{}
	for k, v := range f.s.Endpoints {
		out[k] = v
	}
	return out, nil
}

// fakeFrontends is an in-memory frontendStore.
type fakeFrontends struct {
	front map[lb.ServiceKey]lb.ServiceValue
	log   []string
	fail  lb.ServiceKey
}

func (f *fakeFrontends) WriteFrontend(k lb.ServiceKey, v lb.ServiceValue, bs []lb.Backend) error {
	if k == f.fail {
		return errors.New("map full")
	}
	f.log = append(f.log, fmt.Sprintf("write %s backends %d", k, len(bs)))
	f.front[k] = v
	return nil
}

func (f *fakeFrontends) DeleteFrontend(k lb.ServiceKey) error {
	f.log = append(f.log, "delete "+k.String())
	delete(f.front, k)
	return nil
}

func (f *fakeFrontends) ProgrammedFrontends() (map[lb.ServiceKey]uint32, error) {
	out := map[lb.ServiceKey]uint32{}
	for k, v := range f.front {
		out[k] = v.ID
	}
	return out, nil
}
