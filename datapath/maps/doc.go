// Package maps is typed Go access to every pinned datapath map of
// docs/ARCHITECTURE.md (sl_endpoints, sl_ep_by_ip, sl_ipcache, sl_policy,
// sl_cidr_policy, sl_services, sl_backends, sl_ct, sl_config, sl_counters).
//
// Keys and values use Go types (netip.Addr, host-order ports); the package
// converts them to the C layouts (network byte order, zeroed pads). A full
// map is reported as an error matching ErrMapFull.
//
// Every constant shared with the BPF programs (ProtoTCP, Ingress/Egress,
// Identity*, Endpoint*, Action*, Scope*, Service*, CT*, Events*, Counter*,
// the map names) is defined from the bpf2go-generated constants of
// bpf/lib/sl_types.h (datapath/bpfobj); no value is written here twice.
//
// Usage (the Maps value normally comes from loader.Load):
//
//	dp, err := loader.Load(ctx, loader.DefaultPinDir)
//	m := dp.Maps
//	err = m.SetConfig(maps.Config{NodeIPs: []netip.Addr{nodeIP}, NetdevIfindex: eth0})
//	err = m.UpsertEndpoint(hostIfindex, maps.Endpoint{IP: podIP, Identity: 256,
//		Flags: maps.EndpointIngressEnforced})
//	err = m.UpsertIPCache(netip.MustParsePrefix("10.244.1.7/32"), 256)
//	err = m.UpsertPolicy(maps.PolicyKey{EpID: hostIfindex, PeerID: 257,
//		Dir: maps.Ingress, Proto: maps.ProtoTCP, Port: 8080, PortPrefixLen: 16},
//		maps.PolicyValue{Action: maps.ActionAllow, PolicyID: 3, Rule: 1})
//	err = m.UpsertService(maps.ServiceKey{VIP: vip, Port: 80, Proto: maps.ProtoTCP},
//		maps.Service{ID: 7}, []maps.Backend{{IP: podIP, Port: 8080}})
package maps
