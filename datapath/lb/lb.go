// Package lb translates Kubernetes Services and EndpointSlices into the service load-balancer map
// entries of the datapath (sl_services, sl_backends): pure Go, no kernel.
//
// Translate turns one Service plus its EndpointSlices into frontends. Table keeps the programmed
// state of every Service, assigns stable service IDs and turns each Service or EndpointSlice event
// into a minimal Changes set: the frontends whose value or backends differ, each whole, and the
// frontends to remove. Changes.Apply hands them to a Writer (the agent's, over datapath/maps), whose
// WriteFrontend puts the backend slots in place before the count that exposes them.
//
// Values here are in host order (netip.Addr, uint16 ports); converting to the network-byte-order
// map structs is the map writer's job.
package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/starlab-dev/starlab/datapath/maps"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Scope of a service frontend (sl_services key scope; values from datapath/maps).
const (
	ScopeClusterIP = uint8(maps.ScopeClusterIP)
	ScopeNodePort  = uint8(maps.ScopeNodePort)
)

// Service flags (sl_services value flags).
const (
	FlagAffinity = uint16(maps.ServiceAffinity) // SL_SVC_AFFINITY: sessionAffinity ClientIP
	FlagLocal    = uint16(maps.ServiceLocal)    // SL_SVC_LOCAL: traffic policy Local, backends are node-local only
	FlagExternal = uint16(maps.ServiceExternal) // SL_SVC_EXTERNAL: an external address, served from outside the node too
)

// IP protocol numbers used in keys.
const (
	ProtoTCP  = uint8(maps.ProtoTCP)
	ProtoUDP  = uint8(maps.ProtoUDP)
	ProtoSCTP = uint8(maps.ProtoSCTP)
)

// Labels and annotations understood on Services.
const (
	// LabelServiceProxyName: when set (any value), the Service belongs to another proxy and is
	// skipped, as kube-proxy does; removing the label hands it back. The same key as an annotation
	// is honoured too (the rule before issue 12).
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// AnnotationServiceProxyName is LabelServiceProxyName as an annotation.
	AnnotationServiceProxyName = LabelServiceProxyName
	// LabelHeadless: when present (any value), the Service is headless for the proxy and skipped,
	// as kube-proxy does; removing the label hands it back.
	LabelHeadless = "service.kubernetes.io/headless"
	// AnnotationNodePort: "false" programs no NodePort frontends for the Service. Must parse as a bool.
	AnnotationNodePort = "starlab.dev/nodeport"
)

// ServiceKey is a frontend: a ClusterIP (scope 0) or a NodePort (scope 1, VIP 0.0.0.0 = any local
// node address).
type ServiceKey struct {
	VIP   netip.Addr
	Port  uint16
	Proto uint8
	Scope uint8
}

func (k ServiceKey) String() string {
	s := "clusterip"
	if k.Scope == ScopeNodePort {
		s = "nodeport"
	}
	return fmt.Sprintf("%s %s:%d/%s", s, k.VIP, k.Port, protoName(k.Proto))
}

// DefaultAffinityTimeout is the sessionAffinity: ClientIP timeout when the Service sets none
// (Kubernetes' DefaultClientIPServiceAffinitySeconds, 3 hours), in seconds.
const DefaultAffinityTimeout = uint32(corev1.DefaultClientIPServiceAffinitySeconds)

// ServiceValue is the sl_services value.
type ServiceValue struct {
	ID    uint32
	Count uint16
	Flags uint16
	// AffinityTimeout: with FlagAffinity, seconds a client keeps its backend after its last new
	// connection (sessionAffinityConfig.clientIP.timeoutSeconds); 0 otherwise.
	AffinityTimeout uint32
	// SourceRanges: loadBalancerSourceRanges of a LoadBalancer ingress IP frontend, the only
	// clients it takes (empty: any; the writer sets SL_SVC_SOURCE_RANGES).
	SourceRanges []netip.Prefix
}

// Backend is the sl_backends value.
type Backend struct {
	IP   netip.Addr
	Port uint16
}

func (b Backend) String() string { return netip.AddrPortFrom(b.IP, b.Port).String() }

// Frontend is one translated service port on one address.
type Frontend struct {
	Namespace, Name string // the Service
	PortName        string
	Key             ServiceKey
	Flags           uint16
	AffinityTimeout uint32    // seconds, with FlagAffinity (see ServiceValue)
	Backends        []Backend // sorted, deduplicated
	// External marks a frontend on one of the Service's spec.externalIPs (not its ClusterIP or a
	// NodePort): any Service author can name any address there.
	External bool
	// LBIngress marks a frontend on a LoadBalancer ingress IP (status.loadBalancer.ingress, set by
	// the load-balancer controller).
	LBIngress bool
	// SourceRanges: the Service's loadBalancerSourceRanges, on LBIngress frontends only (sorted).
	SourceRanges []netip.Prefix
}

// id is the stable name of the frontend used for service ID assignment.
func (f Frontend) id() string {
	return fmt.Sprintf("%s/%s/%s/%d/%d/%d", f.Namespace, f.Name, f.Key.VIP, f.Key.Port, f.Key.Proto, f.Key.Scope)
}

// InputError is a problem with a Service or EndpointSlice the agent should log and report as a
// Kubernetes Event on Object (kind "Service" or "EndpointSlice").
type InputError struct {
	Kind, Namespace, Name string
	Reason                string // short CamelCase reason for the Event
	Msg                   string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s %s/%s: %s", e.Kind, e.Namespace, e.Name, e.Msg)
}

// ErrUnknownService marks an EndpointSlice whose Service is not known (yet).
var ErrUnknownService = errors.New("endpointslice for unknown service")

func svcErr(svc *corev1.Service, reason, format string, args ...any) error {
	return &InputError{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Translate computes the frontends of svc given its EndpointSlices, as seen by node nodeName
// (used for Local traffic policies). The frontends returned are valid to program even when the
// error is non-nil: a port that cannot be resolved is programmed with no backends (fail closed:
// clients are refused) and the problem is reported in the error (an *InputError or a join of them).
func Translate(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, nodeName string) ([]Frontend, error) {
	if svc == nil {
		return nil, errors.New("translate: nil service")
	}
	if Skipped(svc) {
		return nil, nil
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	var errs []error
	nodePorts := true
	if v, ok := svc.Annotations[AnnotationNodePort]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, svcErr(svc, "InvalidAnnotation", "annotation %s=%q is not a boolean: set it to \"true\" or \"false\"", AnnotationNodePort, v))
		} else {
			nodePorts = b
		}
	}

	type vip struct {
		addr      netip.Addr
		external  bool
		lbIngress bool
	}
	var vips []vip
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if s == corev1.ClusterIPNone || s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, svcErr(svc, "InvalidClusterIP", "clusterIP %q is not an IP address", s))
			continue
		}
		if a.Is4() {
			vips = append(vips, vip{addr: a})
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			vips = append(vips, vip{addr: a, external: true})
		} else {
			errs = append(errs, svcErr(svc, "InvalidExternalIP", "externalIP %q is not an IPv4 address", s))
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			// ipMode Proxy: the load balancer delivers to the nodes with its own address as the
			// destination, so the address is not the proxy's to take (as kube-proxy)
			if in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeProxy {
				continue
			}
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				vips = append(vips, vip{addr: a, lbIngress: true})
			}
		}
	}

	var flags uint16
	var timeout uint32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		flags |= FlagAffinity
		timeout = affinityTimeout(svc)
	}
	ranges, rerr := sourceRanges(svc)
	if rerr != nil {
		errs = append(errs, rerr)
	}
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	externalLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	wantNodePort := nodePorts && (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer)

	var out []Frontend
	for _, sp := range svc.Spec.Ports {
		proto, err := protoNumber(sp.Protocol)
		if err != nil {
			errs = append(errs, svcErr(svc, "UnsupportedProtocol", "port %q: %v", sp.Name, err))
			continue
		}
		all, local, perr := backendsFor(svc, sp, slices, nodeName)
		if perr != nil {
			errs = append(errs, perr)
		}
		if proto == ProtoSCTP {
			var serr error
			all, local, serr = sctpSamePort(svc, sp, all, local)
			if serr != nil {
				errs = append(errs, serr)
			}
		}
		mk := func(key ServiceKey, isLocal bool) Frontend {
			f := Frontend{Namespace: svc.Namespace, Name: svc.Name, PortName: sp.Name, Key: key, Flags: flags, AffinityTimeout: timeout, Backends: all}
			if isLocal {
				f.Flags |= FlagLocal
				f.Backends = local
			}
			return f
		}
		if len(vips) > 0 {
			for _, v := range vips {
				// external addresses follow externalTrafficPolicy, as kube-proxy's
				outside := v.external || v.lbIngress
				f := mk(ServiceKey{VIP: v.addr, Port: uint16(sp.Port), Proto: proto, Scope: ScopeClusterIP}, (internalLocal && !outside) || (externalLocal && outside))
				f.External, f.LBIngress = v.external, v.lbIngress
				if v.lbIngress {
					f.SourceRanges = ranges
				}
				if outside {
					f.Flags |= FlagExternal
				}
				out = append(out, f)
			}
		}
		if wantNodePort && sp.NodePort != 0 && proto == ProtoSCTP {
			errs = append(errs, svcErr(svc, "UnsupportedProtocol", "port %q: SCTP NodePort is not supported (it translates the port); only the ClusterIP is programmed", sp.Name))
		} else if wantNodePort && sp.NodePort != 0 {
			out = append(out, mk(ServiceKey{VIP: netip.IPv4Unspecified(), Port: uint16(sp.NodePort), Proto: proto, Scope: ScopeNodePort}, externalLocal))
		}
	}
	return out, errors.Join(errs...)
}

// sourceRanges parses spec.loadBalancerSourceRanges (IPv4 CIDRs; sorted, deduplicated). A range
// that does not parse is reported and left out; when none parses, the frontend takes no client
// (a range 255.255.255.255/32, fail closed) rather than every one.
func sourceRanges(svc *corev1.Service) ([]netip.Prefix, error) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.LoadBalancerSourceRanges) == 0 {
		return nil, nil
	}
	var out []netip.Prefix
	var bad []string
	for _, r := range svc.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil || !p.Addr().Is4() {
			bad = append(bad, r)
			continue
		}
		out = append(out, p.Masked())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	out = slices.Compact(out)
	if len(bad) == 0 {
		return out, nil
	}
	if len(out) == 0 {
		out = []netip.Prefix{netip.MustParsePrefix("255.255.255.255/32")}
	}
	return out, svcErr(svc, "InvalidSourceRange", "loadBalancerSourceRanges %v are not IPv4 CIDRs: they are left out (write them as a.b.c.d/n)", bad)
}

// affinityTimeout is the ClientIP affinity timeout of svc in seconds: timeoutSeconds, or
// DefaultAffinityTimeout when unset or not positive (the API server defaults it and rejects values
// outside 1..86400; a zero here would never pin).
func affinityTimeout(svc *corev1.Service) uint32 {
	c := svc.Spec.SessionAffinityConfig
	if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil || *c.ClientIP.TimeoutSeconds <= 0 {
		return DefaultAffinityTimeout
	}
	return uint32(*c.ClientIP.TimeoutSeconds)
}

// Skipped reports whether svc is left to another proxy: it carries the label
// service.kubernetes.io/service-proxy-name or service.kubernetes.io/headless (kube-proxy's
// informer selector), or the service-proxy-name annotation.
func Skipped(svc *corev1.Service) bool {
	if _, ok := svc.Labels[LabelServiceProxyName]; ok {
		return true
	}
	if _, ok := svc.Labels[LabelHeadless]; ok {
		return true
	}
	return svc.Annotations[AnnotationServiceProxyName] != ""
}

// endpointState is what an EndpointSlice endpoint's conditions say, read as kube-proxy reads them:
// ready defaults to true, serving defaults to ready, terminating to false. With
// publishNotReadyAddresses every endpoint counts as ready (the EndpointSlice controller sets ready
// for them too; the proxy does not second-guess it).
type endpointState struct{ ready, serving, terminating bool }

func stateOf(svc *corev1.Service, c discoveryv1.EndpointConditions) endpointState {
	st := endpointState{ready: c.Ready == nil || *c.Ready}
	st.serving = st.ready
	if c.Serving != nil {
		st.serving = *c.Serving
	}
	st.terminating = c.Terminating != nil && *c.Terminating
	if svc.Spec.PublishNotReadyAddresses {
		st.ready = true
	}
	return st
}

// backendsFor resolves one service port against the slices, the way kube-proxy categorises
// endpoints: all is the ready endpoints, or when none is ready, the serving terminating ones
// (graceful termination: a Service whose every pod is going away keeps answering until they stop
// serving); local is the same choice made among this node's endpoints only (Local traffic
// policies).
func backendsFor(svc *corev1.Service, sp corev1.ServicePort, slices []*discoveryv1.EndpointSlice, nodeName string) (all, local []Backend, err error) {
	var ready, readyLocal, term, termLocal []Backend
	seen := map[Backend]bool{}
	var unmatched []string
	for _, sl := range slices {
		if sl == nil || sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port uint16
		found := false
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			pr := corev1.ProtocolTCP
			if p.Protocol != nil {
				pr = *p.Protocol
			}
			if name == sp.Name && pr == sp.Protocol && p.Port != nil {
				port, found = uint16(*p.Port), true
				break
			}
		}
		if !found {
			if len(sl.Endpoints) > 0 {
				unmatched = append(unmatched, sl.Name)
			}
			continue
		}
		for _, ep := range sl.Endpoints {
			st := stateOf(svc, ep.Conditions)
			usable := st.ready || (st.serving && st.terminating)
			if !usable {
				continue
			}
			isLocal := ep.NodeName != nil && *ep.NodeName == nodeName
			for _, a := range ep.Addresses {
				ip, perr := netip.ParseAddr(a)
				if perr != nil || !ip.Is4() {
					continue
				}
				b := Backend{IP: ip, Port: port}
				if seen[b] {
					continue
				}
				seen[b] = true
				if st.ready {
					ready = append(ready, b)
					if isLocal {
						readyLocal = append(readyLocal, b)
					}
				} else {
					term = append(term, b)
					if isLocal {
						termLocal = append(termLocal, b)
					}
				}
			}
		}
	}
	all, local = ready, readyLocal
	if len(all) == 0 {
		all = term
	}
	if len(local) == 0 {
		local = termLocal
	}
	sortBackends(all)
	sortBackends(local)
	if len(unmatched) > 0 && len(all) == 0 {
		err = svcErr(svc, "PortNotInEndpoints", "service port %q (%s) matches no port of EndpointSlice(s) %v: name the Service port and the target port alike; the port refuses connections until fixed", sp.Name, sp.Protocol, unmatched)
	}
	return all, local, err
}

// sctpSamePort keeps the SCTP backends whose port is the Service port: the datapath cannot
// translate SCTP ports (its CRC32c checksum has no incremental update), as in Cilium. Others are
// left out and reported; with none left the frontend refuses (SERVICE_BACKEND_NOT_FOUND).
func sctpSamePort(svc *corev1.Service, sp corev1.ServicePort, all, local []Backend) ([]Backend, []Backend, error) {
	keep := func(bs []Backend) []Backend {
		var out []Backend
		for _, b := range bs {
			if b.Port == uint16(sp.Port) {
				out = append(out, b)
			}
		}
		return out
	}
	kAll := keep(all)
	if len(kAll) == len(all) {
		return all, local, nil
	}
	return kAll, keep(local), svcErr(svc, "SCTPPortTranslation", "port %q (SCTP): %d backend(s) with a target port other than %d left out: SCTP ports are not translated, set targetPort to the port", sp.Name, len(all)-len(kAll), sp.Port)
}

func sortBackends(b []Backend) {
	sort.Slice(b, func(i, j int) bool {
		if c := b[i].IP.Compare(b[j].IP); c != 0 {
			return c < 0
		}
		return b[i].Port < b[j].Port
	})
}

func protoNumber(p corev1.Protocol) (uint8, error) {
	switch p {
	case corev1.ProtocolTCP, "":
		return ProtoTCP, nil
	case corev1.ProtocolUDP:
		return ProtoUDP, nil
	case corev1.ProtocolSCTP:
		return ProtoSCTP, nil
	default:
		return 0, fmt.Errorf("protocol %s is not supported: use TCP, UDP or SCTP", p)
	}
}

func protoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}
