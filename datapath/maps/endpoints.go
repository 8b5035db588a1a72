package maps

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
)

// EndpointFlags are the sl_endpoint flags (enum sl_ep_flags).
type EndpointFlags uint32

// Endpoint flags.
const (
	EndpointIngressEnforced = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_INGRESS_ENFORCED)
	EndpointEgressEnforced  = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_EGRESS_ENFORCED)
	// EndpointPolicyError: the compiler could not represent a policy
	// selecting the endpoint; the datapath denies everything
	// (POLICY_UNREPRESENTABLE).
	EndpointPolicyError = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_POLICY_ERROR)
	// EndpointPolicyWriteFailed, set together with EndpointPolicyError: the
	// agent could not write the endpoint's policy (maps full, write failed);
	// the datapath denies everything (POLICY_WRITE_FAILED).
	EndpointPolicyWriteFailed = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_POLICY_WRITE_FAILED)
	// EndpointIngressTiers and EndpointEgressTiers: a ClusterNetworkPolicy has rules for the
	// direction; the datapath takes every policy lookup and walks the tiers (Admin,
	// NetworkPolicy, Baseline) instead of stopping at the first hit.
	EndpointIngressTiers = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_INGRESS_TIERS)
	EndpointEgressTiers  = EndpointFlags(bpfobj.SlSlEpFlagsSL_EP_EGRESS_TIERS)
)

// Endpoint is a local pod, keyed by its host veth ifindex.
type Endpoint struct {
	IP netip.Addr
	// EpID is the policy key of the endpoint: the host veth ifindex. Zero
	// means "same as the ifindex".
	EpID     uint32
	Identity uint32
	Flags    EndpointFlags
	MAC      net.HardwareAddr
	// PolicyRevision changes whenever the endpoint's policy does (its
	// entries, its flags, its peers' identities). Conntrack entries record
	// it; an established flow whose entry has another revision is looked up
	// in policy again (a denied one is cut). It must never return to an
	// earlier value while entries allowed under that value may still exist.
	PolicyRevision uint32
}

func (e Endpoint) raw(ifindex uint32) (bpfobj.SlSlEndpoint, error) {
	ip, err := mustIP(fmt.Sprintf("endpoint ifindex %d", ifindex), e.IP)
	if err != nil {
		return bpfobj.SlSlEndpoint{}, err
	}
	r := bpfobj.SlSlEndpoint{Ip: ip, EpId: e.EpID, Identity: e.Identity, Flags: uint32(e.Flags), PolicyRev: e.PolicyRevision}
	if r.EpId == 0 {
		r.EpId = ifindex
	}
	if len(e.MAC) != 0 && len(e.MAC) != 6 {
		return r, fmt.Errorf("endpoint ifindex %d: MAC %s is not a 6-byte Ethernet address", ifindex, e.MAC)
	}
	copy(r.Mac[:], e.MAC)
	return r, nil
}

// UpsertEndpoint writes sl_endpoints[ifindex] and sl_ep_by_ip[ip].
func (m *Maps) UpsertEndpoint(ifindex uint32, e Endpoint) error {
	if ifindex == 0 {
		return fmt.Errorf("upsert endpoint %s: ifindex 0 is not a valid host veth index", e.IP)
	}
	r, err := e.raw(ifindex)
	if err != nil {
		return err
	}
	if err := put(m.Endpoints, NameEndpoints, &ifindex, &r); err != nil {
		return err
	}
	return put(m.EpByIP, NameEpByIP, &r.Ip, &ifindex)
}

// DeleteEndpoint removes the endpoint of ifindex from sl_endpoints and
// sl_ep_by_ip. Deleting a missing endpoint is not an error.
func (m *Maps) DeleteEndpoint(ifindex uint32) error {
	var r bpfobj.SlSlEndpoint
	if err := m.Endpoints.Lookup(&ifindex, &r); err == nil {
		var cur uint32
		if err := m.EpByIP.Lookup(&r.Ip, &cur); err == nil && cur == ifindex {
			if err := del(m.EpByIP, NameEpByIP, &r.Ip); err != nil {
				return err
			}
		}
	}
	return del(m.Endpoints, NameEndpoints, &ifindex)
}

// LookupEndpoint returns the endpoint of ifindex.
func (m *Maps) LookupEndpoint(ifindex uint32) (Endpoint, error) {
	var r bpfobj.SlSlEndpoint
	if err := m.Endpoints.Lookup(&ifindex, &r); err != nil {
		return Endpoint{}, fmt.Errorf("lookup endpoint ifindex %d: %w", ifindex, err)
	}
	return endpointFromRaw(r), nil
}

func endpointFromRaw(r bpfobj.SlSlEndpoint) Endpoint {
	return Endpoint{
		IP: U32ToIP(r.Ip), EpID: r.EpId, Identity: r.Identity, Flags: EndpointFlags(r.Flags),
		MAC: net.HardwareAddr(append([]byte(nil), r.Mac[:]...)), PolicyRevision: r.PolicyRev,
	}
}

// ListEndpoints returns every endpoint by ifindex.
func (m *Maps) ListEndpoints() (map[uint32]Endpoint, error) {
	out := map[uint32]Endpoint{}
	var k uint32
	var v bpfobj.SlSlEndpoint
	it := m.Endpoints.Iterate()
	for it.Next(&k, &v) {
		out[k] = endpointFromRaw(v)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", NameEndpoints, err)
	}
	return out, nil
}
