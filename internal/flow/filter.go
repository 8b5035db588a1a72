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
}

// IsEmpty reports whether the filter has no field set (it then matches every flow).
func (f Filter) IsEmpty() bool {
	return len(f.SourcePod)+len(f.DestinationPod)+len(f.Pod)+len(f.SourceNamespace)+len(f.DestinationNamespace)+
		len(f.Namespace)+len(f.SourceLabel)+len(f.DestinationLabel)+len(f.Label)+len(f.SourceService)+
		len(f.DestinationService)+len(f.Service)+len(f.SourceIP)+len(f.DestinationIP)+len(f.IP)+
		len(f.SourcePort)+len(f.DestinationPort)+len(f.Port)+len(f.SourceIdentity)+len(f.DestinationIdentity)+
		len(f.Identity)+len(f.Protocol)+len(f.Verdict)+len(f.DropReason)+len(f.TrafficDirection)+
		len(f.EventType)+len(f.NodeName)+len(f.SourceWorkload)+len(f.DestinationWorkload)+len(f.Workload)+
		len(f.TCPFlags) == 0
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
	var c compiledFilter
	add := func(p predicate) { c = append(c, p) }
	src := func(fl *Flow) *Endpoint { return &fl.Source }
	dst := func(fl *Flow) *Endpoint { return &fl.Destination }

	for _, x := range []struct {
		vals []string
		side []func(*Flow) *Endpoint
		name string
	}{
		{f.SourcePod, sides(src), "source_pod"},
		{f.DestinationPod, sides(dst), "destination_pod"},
		{f.Pod, sides(src, dst), "pod"},
	} {
		if len(x.vals) == 0 {
			continue
		}
		pods := make([]podRef, 0, len(x.vals))
		for _, v := range x.vals {
			p, err := parsePodRef(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", x.name, err)
			}
			pods = append(pods, p)
		}
		add(eitherSide(x.side, func(e *Endpoint) bool {
			for _, p := range pods {
				if p.match(e) {
					return true
				}
			}
			return false
		}))
	}
	for _, x := range []struct {
		vals []string
		side []func(*Flow) *Endpoint
	}{
		{f.SourceNamespace, sides(src)}, {f.DestinationNamespace, sides(dst)}, {f.Namespace, sides(src, dst)},
	} {
		if len(x.vals) == 0 {
			continue
		}
		vals := x.vals
		add(eitherSide(x.side, func(e *Endpoint) bool { return slices.Contains(vals, e.Namespace) }))
	}
	for _, x := range []struct {
		vals []string
		side []func(*Flow) *Endpoint
		name string
	}{
		{f.SourceLabel, sides(src), "source_label"}, {f.DestinationLabel, sides(dst), "destination_label"},
		{f.Label, sides(src, dst), "label"},
	} {
		if len(x.vals) == 0 {
			continue
		}
		sels := make([]labels.Selector, 0, len(x.vals))
		for _, v := range x.vals {
			s, err := ParseLabelSelector(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", x.name, err)
			}
			sels = append(sels, s)
		}
		add(eitherSide(x.side, func(e *Endpoint) bool {
			for _, s := range sels {
				if s.Matches(endpointLabels(e.Labels)) {
					return true
				}
			}
			return false
		}))
	}
	for _, x := range []struct {
		vals []string
		get  []func(*Flow) *Service
		name string
	}{
		{f.SourceService, []func(*Flow) *Service{srcSvc}, "source_service"},
		{f.DestinationService, []func(*Flow) *Service{dstSvc}, "destination_service"},
		{f.Service, []func(*Flow) *Service{srcSvc, dstSvc}, "service"},
	} {
		if len(x.vals) == 0 {
			continue
		}
		refs := make([]svcRef, 0, len(x.vals))
		for _, v := range x.vals {
			r, err := parseSvcRef(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", x.name, err)
			}
			refs = append(refs, r)
		}
		gets := x.get
		add(func(fl *Flow) bool {
			for _, g := range gets {
				s := g(fl)
				if s == nil {
					continue
				}
				for _, r := range refs {
					if r.match(s) {
						return true
					}
				}
			}
			return false
		})
	}
	for _, x := range []struct {
		vals []string
		get  []func(*Flow) string
		name string
	}{
		{f.SourceIP, []func(*Flow) string{srcIP}, "source_ip"},
		{f.DestinationIP, []func(*Flow) string{dstIP}, "destination_ip"},
		{f.IP, []func(*Flow) string{srcIP, dstIP}, "ip"},
	} {
		if len(x.vals) == 0 {
			continue
		}
		prefixes := make([]netip.Prefix, 0, len(x.vals))
		for _, v := range x.vals {
			p, err := ParseIPOrCIDR(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", x.name, err)
			}
			prefixes = append(prefixes, p)
		}
		gets := x.get
		add(func(fl *Flow) bool {
			for _, g := range gets {
				a, err := netip.ParseAddr(g(fl))
				if err != nil {
					continue
				}
				for _, p := range prefixes {
					if p.Contains(a) {
						return true
					}
				}
			}
			return false
		})
	}
	for _, x := range []struct {
		vals []uint16
		get  []func(*Flow) uint16
	}{
		{f.SourcePort, []func(*Flow) uint16{srcPort}},
		{f.DestinationPort, []func(*Flow) uint16{dstPort}},
		{f.Port, []func(*Flow) uint16{srcPort, dstPort}},
	} {
		if len(x.vals) == 0 {
			continue
		}
		vals, gets := x.vals, x.get
		add(func(fl *Flow) bool {
			for _, g := range gets {
				if slices.Contains(vals, g(fl)) {
					return true
				}
			}
			return false
		})
	}
	for _, x := range []struct {
		vals []uint32
		side []func(*Flow) *Endpoint
	}{
		{f.SourceIdentity, sides(src)}, {f.DestinationIdentity, sides(dst)}, {f.Identity, sides(src, dst)},
	} {
		if len(x.vals) == 0 {
			continue
		}
		vals := x.vals
		add(eitherSide(x.side, func(e *Endpoint) bool { return slices.Contains(vals, e.Identity) }))
	}
	if len(f.Protocol) > 0 {
		vals := make([]string, 0, len(f.Protocol))
		for _, p := range f.Protocol {
			n, err := normalizeProtocol(p)
			if err != nil {
				return nil, err
			}
			vals = append(vals, n)
		}
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.L4.Protocol) })
	}
	if len(f.Verdict) > 0 {
		vals := f.Verdict
		for _, v := range vals {
			if !slices.Contains(verdicts, string(v)) {
				return nil, fmt.Errorf("verdict %q: use one of %s", v, strings.Join(verdicts, ", "))
			}
		}
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.Verdict) })
	}
	if len(f.DropReason) > 0 {
		vals := f.DropReason
		for _, v := range vals {
			if !slices.Contains(dropReasons, v) {
				return nil, fmt.Errorf("drop reason %q: use one of %s", v, strings.Join(dropReasons, ", "))
			}
		}
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.DropReasonDesc) })
	}
	if len(f.TrafficDirection) > 0 {
		vals := f.TrafficDirection
		for _, v := range vals {
			if !slices.Contains(directions, string(v)) {
				return nil, fmt.Errorf("traffic direction %q: use one of %s", v, strings.Join(directions, ", "))
			}
		}
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.TrafficDirection) })
	}
	if len(f.EventType) > 0 {
		vals := f.EventType
		for _, v := range vals {
			if !slices.Contains(eventTypes, string(v)) {
				return nil, fmt.Errorf("event type %q: use one of %s", v, strings.Join(eventTypes, ", "))
			}
		}
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.EventType) })
	}
	if len(f.NodeName) > 0 {
		vals := f.NodeName
		add(func(fl *Flow) bool { return slices.Contains(vals, fl.NodeName) })
	}
	for _, x := range []struct {
		vals []string
		side []func(*Flow) *Endpoint
		name string
	}{
		{f.SourceWorkload, sides(src), "source_workload"}, {f.DestinationWorkload, sides(dst), "destination_workload"},
		{f.Workload, sides(src, dst), "workload"},
	} {
		if len(x.vals) == 0 {
			continue
		}
		refs := make([]svcRef, 0, len(x.vals))
		for _, v := range x.vals {
			r, err := parseSvcRef(v)
			if err != nil {
				return nil, fmt.Errorf("%s %q: use [namespace/]workload-name, e.g. stars/backend or backend", x.name, v)
			}
			refs = append(refs, r)
		}
		add(eitherSide(x.side, func(e *Endpoint) bool {
			if e.Workload == nil {
				return false
			}
			for _, r := range refs {
				if r.match(&Service{Name: e.Workload.Name, Namespace: e.Namespace}) {
					return true
				}
			}
			return false
		}))
	}
	if len(f.TCPFlags) > 0 {
		sets := make([]TCPFlags, 0, len(f.TCPFlags))
		for _, v := range f.TCPFlags {
			fs, err := ParseTCPFlags(v)
			if err != nil {
				return nil, err
			}
			sets = append(sets, fs)
		}
		add(func(fl *Flow) bool {
			got := fl.L4.Flags
			if got == nil {
				return false
			}
			for _, want := range sets {
				if (!want.SYN || got.SYN) && (!want.ACK || got.ACK) && (!want.FIN || got.FIN) && (!want.RST || got.RST) &&
					(!want.PSH || got.PSH) && (!want.URG || got.URG) && (!want.ECE || got.ECE) && (!want.CWR || got.CWR) {
					return true
				}
			}
			return false
		})
	}
	return c, nil
}

func sides(s ...func(*Flow) *Endpoint) []func(*Flow) *Endpoint { return s }

func eitherSide(get []func(*Flow) *Endpoint, match func(*Endpoint) bool) predicate {
	return func(fl *Flow) bool {
		for _, g := range get {
			if match(g(fl)) {
				return true
			}
		}
		return false
	}
}

func srcSvc(f *Flow) *Service { return f.SourceService }
func dstSvc(f *Flow) *Service { return f.DestinationService }
func srcIP(f *Flow) string    { return f.IP.Source }
func dstIP(f *Flow) string    { return f.IP.Destination }
func srcPort(f *Flow) uint16  { return f.L4.SourcePort }
func dstPort(f *Flow) uint16  { return f.L4.DestinationPort }

// podRef is "namespace/name-prefix" or "name-prefix" (any namespace).
type podRef struct {
	namespace string
	prefix    string
}

func parsePodRef(v string) (podRef, error) {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = ns, ""
	}
	if name == "" || (found && ns == "") || strings.Contains(name, "/") {
		return podRef{}, fmt.Errorf("pod %q: use [namespace/]pod-name-prefix, e.g. stars/frontend or frontend", v)
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

// svcRef is "namespace/name" or "name" (any namespace).
type svcRef struct {
	namespace string
	name      string
}

func parseSvcRef(v string) (svcRef, error) {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = ns, ""
	}
	if name == "" || (found && ns == "") || strings.Contains(name, "/") {
		return svcRef{}, fmt.Errorf("service %q: use [namespace/]service-name, e.g. stars/backend or backend", v)
	}
	return svcRef{namespace: ns, name: name}, nil
}

func (r svcRef) match(s *Service) bool {
	return s.Name == r.name && (r.namespace == "" || s.Namespace == r.namespace)
}

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
