package flow

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Filter selects flows. Hubble semantics: every non-empty field must match (fields are ANDed), a field
// matches when any of its values matches (values are ORed), and a list of filters matches when any filter
// does. The "either side" fields (Pod, Namespace, Label, Service, IP, Port, Identity) match the source
// or the destination.
type Filter struct {
	SourcePod            []string           `json:"source_pod,omitempty"`
	DestinationPod       []string           `json:"destination_pod,omitempty"`
	Pod                  []string           `json:"pod,omitempty"`
	SourceNamespace      []string           `json:"source_namespace,omitempty"`
	DestinationNamespace []string           `json:"destination_namespace,omitempty"`
	Namespace            []string           `json:"namespace,omitempty"`
	SourceLabel          []string           `json:"source_label,omitempty"`
	DestinationLabel     []string           `json:"destination_label,omitempty"`
	Label                []string           `json:"label,omitempty"`
	SourceService        []string           `json:"source_service,omitempty"`
	DestinationService   []string           `json:"destination_service,omitempty"`
	Service              []string           `json:"service,omitempty"`
	SourceIP             []string           `json:"source_ip,omitempty"`
	DestinationIP        []string           `json:"destination_ip,omitempty"`
	IP                   []string           `json:"ip,omitempty"`
	SourcePort           []uint16           `json:"source_port,omitempty"`
	DestinationPort      []uint16           `json:"destination_port,omitempty"`
	Port                 []uint16           `json:"port,omitempty"`
	SourceIdentity       []uint32           `json:"source_identity,omitempty"`
	DestinationIdentity  []uint32           `json:"destination_identity,omitempty"`
	Identity             []uint32           `json:"identity,omitempty"`
	Protocol             []string           `json:"protocol,omitempty"`
	Verdict              []Verdict          `json:"verdict,omitempty"`
	DropReason           []string           `json:"drop_reason_desc,omitempty"`
	TrafficDirection     []TrafficDirection `json:"traffic_direction,omitempty"`
	EventType            []EventType        `json:"event_type,omitempty"`
	NodeName             []string           `json:"node_name,omitempty"`
	SourceWorkload       []string           `json:"source_workload,omitempty"`      // [namespace/]name
	DestinationWorkload  []string           `json:"destination_workload,omitempty"` // [namespace/]name
	Workload             []string           `json:"workload,omitempty"`             // either side
	TCPFlags             []string           `json:"tcp_flags,omitempty"`            // "SYN" or "SYN,ACK": all of them set
	Reply                []bool             `json:"reply,omitempty"`                // is_reply true or false
	// Policy matches flows a policy decided: [namespace/]name of a policy in allowed_by or denied_by
	// (any kind; "namespace/" alone: every policy of that namespace).
	Policy []string `json:"policy,omitempty"`
	// Tier: a policy in allowed_by or denied_by is of this tier (Admin, NetworkPolicy, Baseline).
	Tier []string `json:"tier,omitempty"`
}

// IsEmpty reports whether the filter has no field set (it then matches every flow).
func (f Filter) IsEmpty() bool {
	return len(f.SourcePod)+len(f.DestinationPod)+len(f.Pod)+len(f.SourceNamespace)+len(f.DestinationNamespace)+
		len(f.Namespace)+len(f.SourceLabel)+len(f.DestinationLabel)+len(f.Label)+len(f.SourceService)+
		len(f.DestinationService)+len(f.Service)+len(f.SourceIP)+len(f.DestinationIP)+len(f.IP)+
		len(f.SourcePort)+len(f.DestinationPort)+len(f.Port)+len(f.SourceIdentity)+len(f.DestinationIdentity)+
		len(f.Identity)+len(f.Protocol)+len(f.Verdict)+len(f.DropReason)+len(f.TrafficDirection)+
		len(f.EventType)+len(f.NodeName)+len(f.SourceWorkload)+len(f.DestinationWorkload)+len(f.Workload)+
		len(f.TCPFlags)+len(f.Reply)+len(f.Policy)+len(f.Tier) == 0
}

// predicate is one compiled field of a filter.
type predicate func(*Flow) bool

// compiledFilter is a Filter ready to match: all predicates must hold.
type compiledFilter []predicate

func (c compiledFilter) match(f *Flow) bool {
	for _, p := range c {
		if !p(f) {
			return false
		}
	}
	return true
}

// Matcher decides whether a flow passes an allowlist and a denylist.
type Matcher struct {
	allow []compiledFilter
	deny  []compiledFilter
	since time.Time
	until time.Time
}

// NewMatcher compiles allow and deny filters. A flow matches when the allowlist is empty or any allow
// filter matches, and no deny filter matches.
func NewMatcher(allow, deny []Filter) (*Matcher, error) {
	m := &Matcher{}
	for i, f := range allow {
		c, err := f.compile()
		if err != nil {
			return nil, fmt.Errorf("allow filter %d: %w", i, err)
		}
		m.allow = append(m.allow, c)
	}
	for i, f := range deny {
		c, err := f.compile()
		if err != nil {
			return nil, fmt.Errorf("deny filter %d: %w", i, err)
		}
		m.deny = append(m.deny, c)
	}
	return m, nil
}

// Match reports whether the flow passes the filters (and the time window, when the matcher has one).
func (m *Matcher) Match(f *Flow) bool {
	if m == nil {
		return true
	}
	if !m.since.IsZero() && f.Time.Before(m.since) {
		return false
	}
	if !m.until.IsZero() && f.Time.After(m.until) {
		return false
	}
	if len(m.allow) > 0 {
		ok := false
		for _, c := range m.allow {
			if c.match(f) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, c := range m.deny {
		if c.match(f) {
			return false
		}
	}
	return true
}

func (f Filter) compile() (compiledFilter, error) {
	// Every field in a fixed order, so the first bad value reported is always the same one.
	fields := []compiledField{
		field(anyParsed(f.SourcePod, named("source_pod", parsePodRef), podRef.match, srcEP)),
		field(anyParsed(f.DestinationPod, named("destination_pod", parsePodRef), podRef.match, dstEP)),
		field(anyParsed(f.Pod, named("pod", parsePodRef), podRef.match, srcEP, dstEP)),
		field(anyOf(f.SourceNamespace, srcNamespace), nil),
		field(anyOf(f.DestinationNamespace, dstNamespace), nil),
		field(anyOf(f.Namespace, srcNamespace, dstNamespace), nil),
		field(anyParsed(f.SourceLabel, named("source_label", ParseLabelSelector), selects, srcEP)),
		field(anyParsed(f.DestinationLabel, named("destination_label", ParseLabelSelector), selects, dstEP)),
		field(anyParsed(f.Label, named("label", ParseLabelSelector), selects, srcEP, dstEP)),
		field(anyParsed(f.SourceService, named("source_service", parseSvcRef), svcRef.matchSet, srcSvc)),
		field(anyParsed(f.DestinationService, named("destination_service", parseSvcRef), svcRef.matchSet, dstSvc)),
		field(anyParsed(f.Service, named("service", parseSvcRef), svcRef.matchSet, srcSvc, dstSvc)),
		field(anyParsed(f.SourceIP, named("source_ip", ParseIPOrCIDR), netip.Prefix.Contains, srcIP)),
		field(anyParsed(f.DestinationIP, named("destination_ip", ParseIPOrCIDR), netip.Prefix.Contains, dstIP)),
		field(anyParsed(f.IP, named("ip", ParseIPOrCIDR), netip.Prefix.Contains, srcIP, dstIP)),
		field(anyOf(f.SourcePort, srcPort), nil),
		field(anyOf(f.DestinationPort, dstPort), nil),
		field(anyOf(f.Port, srcPort, dstPort), nil),
		field(anyOf(f.SourceIdentity, srcIdentity), nil),
		field(anyOf(f.DestinationIdentity, dstIdentity), nil),
		field(anyOf(f.Identity, srcIdentity, dstIdentity), nil),
		field(anyParsed(f.Protocol, normalizeProtocol, equal, protocol)),
		field(anyKnown(f.Verdict, "verdict", verdicts, verdict)),
		field(anyKnown(f.DropReason, "drop reason", dropReasons, dropReason)),
		field(anyKnown(f.TrafficDirection, "traffic direction", directions, trafficDirection)),
		field(anyKnown(f.EventType, "event type", eventTypes, eventType)),
		field(anyOf(f.NodeName, nodeName), nil),
		field(anyParsed(f.SourceWorkload, workloadRef("source_workload"), workloadMatch, srcEP)),
		field(anyParsed(f.DestinationWorkload, workloadRef("destination_workload"), workloadMatch, dstEP)),
		field(anyParsed(f.Workload, workloadRef("workload"), workloadMatch, srcEP, dstEP)),
		field(anyParsed(f.TCPFlags, ParseTCPFlags, TCPFlags.setIn, tcpFlags)),
		field(anyOf(f.Reply, isReply), nil),
		field(anyParsed(f.Policy, policyRef, svcRef.decided, decidingPolicies)),
		field(anyKnownPolicyTier(f.Tier)),
	}
	var c compiledFilter
	for _, x := range fields {
		if x.err != nil {
			return nil, x.err
		}
		if x.p != nil {
			c = append(c, x.p)
		}
	}
	return c, nil
}

// policyTiers are the values of Filter.Tier.
var policyTiers = []string{TierAdmin, TierNetworkPolicy, TierBaseline}

// anyPolicy matches a flow when one of its allowed_by/denied_by policies matches one of vals.
func anyPolicy(vals []string, match func(Policy, string) bool) predicate {
	if len(vals) == 0 {
		return nil
	}
	return func(fl *Flow) bool {
		for _, ps := range [][]Policy{fl.AllowedBy, fl.DeniedBy} {
			for _, p := range ps {
				for _, v := range vals {
					if match(p, v) {
						return true
					}
				}
			}
		}
		return false
	}
}

func anyKnownPolicyTier(vals []string) (predicate, error) {
	for _, v := range vals {
		if !slices.Contains(policyTiers, v) {
			return nil, fmt.Errorf("tier %q: use one of %s", v, strings.Join(policyTiers, ", "))
		}
	}
	return anyPolicy(vals, func(p Policy, v string) bool { return p.Tier == v }), nil
}

// compiledField is one filter field compiled (p is nil when the field is unset) or its error.
type compiledField struct {
	p   predicate
	err error
}

// field takes a helper's (predicate, error) results, so compile can list the fields as one table.
func field(p predicate, err error) compiledField { return compiledField{p, err} }

// anyOf matches a flow when a value read by any of gets (source side, destination side or either)
// is one of vals. No vals: no predicate (the field is unset).
func anyOf[T comparable](vals []T, gets ...func(*Flow) T) predicate {
	if len(vals) == 0 {
		return nil
	}
	return func(fl *Flow) bool {
		for _, g := range gets {
			if slices.Contains(vals, g(fl)) {
				return true
			}
		}
		return false
	}
}

// anyParsed parses every value and matches a flow when any parsed value matches a value read by any
// of gets. No vals: no predicate.
func anyParsed[P, V any](vals []string, parse func(string) (P, error), match func(P, V) bool, gets ...func(*Flow) V) (predicate, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	ps := make([]P, 0, len(vals))
	for _, v := range vals {
		p, err := parse(v)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return func(fl *Flow) bool {
		for _, g := range gets {
			got := g(fl)
			for _, p := range ps {
				if match(p, got) {
					return true
				}
			}
		}
		return false
	}, nil
}

// anyKnown is anyOf for an enum: every value must be one of known.
func anyKnown[T ~string](vals []T, what string, known []string, get func(*Flow) T) (predicate, error) {
	for _, v := range vals {
		if !slices.Contains(known, string(v)) {
			return nil, fmt.Errorf("%s %q: use one of %s", what, v, strings.Join(known, ", "))
		}
	}
	return anyOf(vals, get), nil
}

// named prefixes parse errors with the filter field's name.
func named[P any](name string, parse func(string) (P, error)) func(string) (P, error) {
	return func(v string) (P, error) {
		p, err := parse(v)
		if err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
		return p, nil
	}
}

// workloadRef parses "[namespace/]workload-name" for the named field.
func workloadRef(name string) func(string) (svcRef, error) {
	return func(v string) (svcRef, error) {
		r, err := parseSvcRef(v)
		if err != nil {
			return svcRef{}, fmt.Errorf("%s %q: use [namespace/]workload-name, e.g. stars/backend or backend", name, v)
		}
		return r, nil
	}
}

// policyRef parses a policy filter value: [namespace/]name or namespace/.
func policyRef(v string) (svcRef, error) {
	r, err := parseSvcRef(v)
	if err != nil {
		return svcRef{}, fmt.Errorf("policy %q: use [namespace/]policy-name or namespace/, e.g. stars/backend-policy or backend-policy", v)
	}
	return r, nil
}

// decided says whether one of the policies that allowed or denied the flow is r.
func (r svcRef) decided(ps [2][]Policy) bool {
	for _, list := range ps {
		for _, p := range list {
			if p.Name != "" && r.match(&Service{Name: p.Name, Namespace: p.Namespace}) {
				return true
			}
		}
	}
	return false
}

func decidingPolicies(f *Flow) [2][]Policy { return [2][]Policy{f.AllowedBy, f.DeniedBy} }

func workloadMatch(r svcRef, e *Endpoint) bool {
	return e.Workload != nil && r.match(&Service{Name: e.Workload.Name, Namespace: e.Namespace})
}

func selects(s labels.Selector, e *Endpoint) bool { return s.Matches(endpointLabels(e.Labels)) }

func equal[T comparable](a, b T) bool { return a == b }

// setIn reports whether every flag set in want is set in got (nil got: no flags seen).
func (want TCPFlags) setIn(got *TCPFlags) bool {
	return got != nil && (!want.SYN || got.SYN) && (!want.ACK || got.ACK) && (!want.FIN || got.FIN) &&
		(!want.RST || got.RST) && (!want.PSH || got.PSH) && (!want.URG || got.URG) && (!want.ECE || got.ECE) &&
		(!want.CWR || got.CWR)
}

// Flow accessors the filter fields read.
func srcEP(f *Flow) *Endpoint                   { return &f.Source }
func dstEP(f *Flow) *Endpoint                   { return &f.Destination }
func srcNamespace(f *Flow) string               { return f.Source.Namespace }
func dstNamespace(f *Flow) string               { return f.Destination.Namespace }
func srcIdentity(f *Flow) uint32                { return f.Source.Identity }
func dstIdentity(f *Flow) uint32                { return f.Destination.Identity }
func srcSvc(f *Flow) *Service                   { return f.SourceService }
func dstSvc(f *Flow) *Service                   { return f.DestinationService }
func srcIP(f *Flow) netip.Addr                  { return parseAddr(f.IP.Source) }
func dstIP(f *Flow) netip.Addr                  { return parseAddr(f.IP.Destination) }
func srcPort(f *Flow) uint16                    { return f.L4.SourcePort }
func dstPort(f *Flow) uint16                    { return f.L4.DestinationPort }
func protocol(f *Flow) string                   { return f.L4.Protocol }
func tcpFlags(f *Flow) *TCPFlags                { return f.L4.Flags }
func verdict(f *Flow) Verdict                   { return f.Verdict }
func dropReason(f *Flow) string                 { return f.DropReasonDesc }
func trafficDirection(f *Flow) TrafficDirection { return f.TrafficDirection }
func eventType(f *Flow) EventType               { return f.EventType }
func nodeName(f *Flow) string                   { return f.NodeName }
func isReply(f *Flow) bool                      { return f.IsReply }

// parseAddr is the flow's address, or the zero Addr (which no prefix contains) when it has none.
func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// podRef is "namespace/name-prefix", "name-prefix" (any namespace) or "namespace/" (any pod of the
// namespace, as Hubble's `--namespace` sends it).
type podRef struct {
	namespace string
	prefix    string
}

func parsePodRef(v string) (podRef, error) {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = ns, ""
	}
	if (name == "" && !found) || (found && ns == "") || strings.Contains(name, "/") {
		return podRef{}, fmt.Errorf("pod %q: use [namespace/]pod-name-prefix or namespace/, e.g. stars/frontend, frontend or stars/", v)
	}
	return podRef{namespace: ns, prefix: name}, nil
}

func (p podRef) match(e *Endpoint) bool {
	if e.PodName == "" {
		return false
	}
	if p.namespace != "" && e.Namespace != p.namespace {
		return false
	}
	return strings.HasPrefix(e.PodName, p.prefix)
}

// svcRef is "namespace/name", "name" (any namespace) or "namespace/" (any service of the namespace).
type svcRef struct {
	namespace string
	name      string
}

func parseSvcRef(v string) (svcRef, error) {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = ns, ""
	}
	if (name == "" && !found) || (found && ns == "") || strings.Contains(name, "/") {
		return svcRef{}, fmt.Errorf("service %q: use [namespace/]service-name or namespace/, e.g. stars/backend, backend or stars/", v)
	}
	return svcRef{namespace: ns, name: name}, nil
}

func (r svcRef) match(s *Service) bool {
	return (r.name == "" || s.Name == r.name) && (r.namespace == "" || s.Namespace == r.namespace)
}

// matchSet is match for a flow's optional service (nil: the flow has none).
func (r svcRef) matchSet(s *Service) bool { return s != nil && r.match(s) }

// ParseTCPFlags parses "SYN" or "SYN,ACK" (case-insensitive) into the flags that must all be set.
func ParseTCPFlags(v string) (TCPFlags, error) {
	var f TCPFlags
	for _, p := range strings.Split(v, ",") {
		switch strings.ToUpper(strings.TrimSpace(p)) {
		case "SYN":
			f.SYN = true
		case "ACK":
			f.ACK = true
		case "FIN":
			f.FIN = true
		case "RST":
			f.RST = true
		case "PSH":
			f.PSH = true
		case "URG":
			f.URG = true
		case "ECE":
			f.ECE = true
		case "CWR":
			f.CWR = true
		default:
			return TCPFlags{}, fmt.Errorf("tcp flags %q: use flag names from SYN, ACK, FIN, RST, PSH, URG, ECE, CWR separated by commas (all must be set)", v)
		}
	}
	return f, nil
}

// ParseIPOrCIDR parses "10.0.0.1" (a /32) or "10.0.0.0/8".
func ParseIPOrCIDR(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ip %q: use an address (10.244.1.5) or a CIDR (10.244.0.0/16): %w", v, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip %q: use an address (10.244.1.5) or a CIDR (10.244.0.0/16): %w", v, err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseLabelSelector parses a Kubernetes label selector: "k=v", "k!=v", "k in (a,b)", "k notin (a)",
// "k", "!k", requirements separated by commas (ANDed).
func ParseLabelSelector(v string) (labels.Selector, error) {
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("label selector is empty: use k=v, k!=v, 'k in (a,b)', k or !k")
	}
	s, err := labels.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: use k=v, k!=v, 'k in (a,b)', k or !k: %w", v, err)
	}
	return s, nil
}

func normalizeProtocol(p string) (string, error) {
	switch strings.ToUpper(p) {
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "ICMP", "ICMPV4":
		return ProtoICMPv4, nil
	case "SCTP":
		return ProtoSCTP, nil
	}
	return "", fmt.Errorf("protocol %q: use one of %s", p, strings.Join(protocols, ", "))
}

// endpointLabels adapts "key=value" strings (optionally "k8s:"-prefixed, Hubble style) to labels.Labels
// without building a map.
type endpointLabels []string

func (l endpointLabels) lookup(key string) (string, bool) {
	for _, s := range l {
		s = strings.TrimPrefix(s, "k8s:")
		k, v, _ := strings.Cut(s, "=")
		if k == key {
			return v, true
		}
	}
	return "", false
}

func (l endpointLabels) Has(key string) bool { _, ok := l.lookup(key); return ok }
func (l endpointLabels) Get(key string) string {
	v, _ := l.lookup(key)
	return v
}
func (l endpointLabels) Lookup(key string) (string, bool) { return l.lookup(key) }
