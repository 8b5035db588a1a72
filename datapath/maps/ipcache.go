package maps

import (
	"fmt"
	"net/netip"

	"github.com/starlab-dev/starlab/datapath/bpfobj"
)

// IPCacheEntry maps a prefix to a security identity.
type IPCacheEntry struct {
	Prefix   netip.Prefix
	Identity uint32
	Flags    uint32
}

func ipcacheKey(p netip.Prefix) (bpfobj.SlSlIpcacheKey, error) {
	if !p.IsValid() || !p.Addr().Unmap().Is4() {
		return bpfobj.SlSlIpcacheKey{}, fmt.Errorf("ipcache prefix %s: want an IPv4 prefix like 10.244.1.7/32", p)
	}
	p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	ip, _ := IPToU32(p.Addr())
	return bpfobj.SlSlIpcacheKey{Prefixlen: uint32(p.Bits()), Ip: ip}, nil
}

// UpsertIPCache sets the identity of a prefix.
func (m *Maps) UpsertIPCache(p netip.Prefix, identity uint32) error {
	return m.UpsertIPCacheEntries([]IPCacheEntry{{Prefix: p, Identity: identity}})
}

// UpsertIPCacheEntries writes many ipcache entries.
func (m *Maps) UpsertIPCacheEntries(entries []IPCacheEntry) error {
	keys := make([]bpfobj.SlSlIpcacheKey, 0, len(entries))
	vals := make([]bpfobj.SlSlIpcacheVal, 0, len(entries))
	for _, e := range entries {
		k, err := ipcacheKey(e.Prefix)
		if err != nil {
			return err
		}
		keys = append(keys, k)
		vals = append(vals, bpfobj.SlSlIpcacheVal{Identity: e.Identity, Flags: e.Flags})
	}
	return batchPut(m.IPCache, NameIPCache, keys, vals)
}

// DeleteIPCacheEntries removes many prefixes (missing ones are not an error).
func (m *Maps) DeleteIPCacheEntries(prefixes []netip.Prefix) error {
	keys := make([]bpfobj.SlSlIpcacheKey, 0, len(prefixes))
	for _, p := range prefixes {
		k, err := ipcacheKey(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	return batchDel(m.IPCache, NameIPCache, keys)
}

// ListIPCache returns every ipcache entry.
func (m *Maps) ListIPCache() ([]IPCacheEntry, error) {
	var out []IPCacheEntry
	var k bpfobj.SlSlIpcacheKey
	var v bpfobj.SlSlIpcacheVal
	it := m.IPCache.Iterate()
	for it.Next(&k, &v) {
		out = append(out, IPCacheEntry{
			Prefix:   netip.PrefixFrom(U32ToIP(k.Ip), int(k.Prefixlen)),
			Identity: v.Identity, Flags: v.Flags,
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", NameIPCache, err)
	}
	return out, nil
}
