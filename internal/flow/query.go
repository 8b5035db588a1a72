package flow

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Query is a request for flows: filters (allowlist ORed, denylist ORed), a time window, how many
// buffered flows to return and whether to keep streaming new ones.
type Query struct {
	Allow  []Filter
	Deny   []Filter
	Since  time.Time // zero: no lower bound
	Until  time.Time // zero: no upper bound
	Last   int       // >0: only the last N matching buffered flows; 0: every buffered flow in the window
	Follow bool      // keep streaming new flows after the buffered ones
	// NoHistory skips buffered flows entirely (follow only new flows).
	NoHistory bool
}

// Matcher compiles the query's filters and time window.
func (q Query) Matcher() (*Matcher, error) {
	m, err := NewMatcher(q.Allow, q.Deny)
	if err != nil {
		return nil, err
	}
	m.since, m.until = q.Since, q.Until
	return m, nil
}

// Validate checks the query for contradictions and bad filters.
func (q Query) Validate() error {
	if q.Last < 0 {
		return fmt.Errorf("last %d: use a number >= 0", q.Last)
	}
	if q.Follow && !q.Until.IsZero() {
		return fmt.Errorf("until cannot be combined with follow: a followed stream has no end")
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return fmt.Errorf("until %s is before since %s", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	_, err := q.Matcher()
	return err
}

// Query parameter and flag names. Every filter parameter has the same name as its `starlab observe` flag;
// the same name prefixed with "not-" adds a deny filter.
const (
	ParamFollow = "follow"
	ParamLast   = "last"
	ParamSince  = "since"
	ParamUntil  = "until"
	ParamAllow  = "allow" // a JSON-encoded Filter (repeatable)
	ParamDeny   = "deny"  // a JSON-encoded Filter (repeatable)
	ParamNoHist = "no-history"
)

// filterParams maps each filter flag/param name to how it sets a Filter field.
var filterParams = map[string]struct {
	help string
	set  func(f *Filter, v string) error
}{
	"from-pod":          {"flows from pods ([namespace/]name-prefix)", func(f *Filter, v string) error { return appendPod(&f.SourcePod, v) }},
	"to-pod":            {"flows to pods ([namespace/]name-prefix)", func(f *Filter, v string) error { return appendPod(&f.DestinationPod, v) }},
	"pod":               {"flows from or to pods ([namespace/]name-prefix)", func(f *Filter, v string) error { return appendPod(&f.Pod, v) }},
	"from-namespace":    {"flows from a namespace", func(f *Filter, v string) error { return appendName(&f.SourceNamespace, v, "namespace") }},
	"to-namespace":      {"flows to a namespace", func(f *Filter, v string) error { return appendName(&f.DestinationNamespace, v, "namespace") }},
	"namespace":         {"flows from or to a namespace", func(f *Filter, v string) error { return appendName(&f.Namespace, v, "namespace") }},
	"from-label":        {"flows from endpoints matching a label selector (k=v, k!=v, 'k in (a,b)')", func(f *Filter, v string) error { return appendLabel(&f.SourceLabel, v) }},
	"to-label":          {"flows to endpoints matching a label selector", func(f *Filter, v string) error { return appendLabel(&f.DestinationLabel, v) }},
	"label":             {"flows from or to endpoints matching a label selector", func(f *Filter, v string) error { return appendLabel(&f.Label, v) }},
	"from-service":      {"flows from a service ([namespace/]name)", func(f *Filter, v string) error { return appendSvc(&f.SourceService, v) }},
	"to-service":        {"flows to a service ([namespace/]name)", func(f *Filter, v string) error { return appendSvc(&f.DestinationService, v) }},
	"service":           {"flows from or to a service ([namespace/]name)", func(f *Filter, v string) error { return appendSvc(&f.Service, v) }},
	"from-ip":           {"flows from an IP or CIDR", func(f *Filter, v string) error { return appendIP(&f.SourceIP, v) }},
	"to-ip":             {"flows to an IP or CIDR", func(f *Filter, v string) error { return appendIP(&f.DestinationIP, v) }},
	"ip":                {"flows from or to an IP or CIDR", func(f *Filter, v string) error { return appendIP(&f.IP, v) }},
	"from-port":         {"flows from a port", func(f *Filter, v string) error { return appendPort(&f.SourcePort, v) }},
	"to-port":           {"flows to a port", func(f *Filter, v string) error { return appendPort(&f.DestinationPort, v) }},
	"port":              {"flows from or to a port", func(f *Filter, v string) error { return appendPort(&f.Port, v) }},
	"from-identity":     {"flows from a security identity (number or host, world, unmanaged, remote-node)", func(f *Filter, v string) error { return appendIdentity(&f.SourceIdentity, v) }},
	"to-identity":       {"flows to a security identity", func(f *Filter, v string) error { return appendIdentity(&f.DestinationIdentity, v) }},
	"identity":          {"flows from or to a security identity", func(f *Filter, v string) error { return appendIdentity(&f.Identity, v) }},
	"protocol":          {"L4 protocol: " + strings.Join(protocols, ", "), appendProtocol},
	"verdict":           {"verdict: " + strings.Join(verdicts, ", "), appendVerdict},
	"drop-reason":       {"drop reason: " + strings.Join(dropReasons, ", "), appendDropReason},
	"traffic-direction": {"traffic direction: ingress, egress", appendDirection},
	"type":              {"event type: " + strings.Join(eventTypes, ", "), appendEventType},
	"node":              {"flows observed on a node", func(f *Filter, v string) error { return appendName(&f.NodeName, v, "node") }},
	"from-workload":     {"flows from a workload ([namespace/]name of its Deployment, StatefulSet, ...)", func(f *Filter, v string) error { return appendWorkload(&f.SourceWorkload, v) }},
	"to-workload":       {"flows to a workload ([namespace/]name)", func(f *Filter, v string) error { return appendWorkload(&f.DestinationWorkload, v) }},
	"workload":          {"flows from or to a workload ([namespace/]name)", func(f *Filter, v string) error { return appendWorkload(&f.Workload, v) }},
	"policy": {"flows a policy decided: [namespace/]name in allowed_by or denied_by", func(f *Filter, v string) error {
		if _, err := policyRef(v); err != nil {
			return err
		}
		f.Policy = append(f.Policy, v)
		return nil
	}},
	"tier": {"flows a policy tier decided or passed: " + strings.Join(policyTiers, ", "), func(f *Filter, v string) error {
		if !slices.Contains(policyTiers, v) {
			return fmt.Errorf("tier %q: use one of %s", v, strings.Join(policyTiers, ", "))
		}
		f.Tier = append(f.Tier, v)
		return nil
	}},
	"tcp-flags": {"TCP flags that must all be set, e.g. SYN or SYN,ACK (repeat to OR)", func(f *Filter, v string) error {
		if _, err := ParseTCPFlags(v); err != nil {
			return err
		}
		f.TCPFlags = append(f.TCPFlags, v)
		return nil
	}},
}

// FilterParamNames lists the filter flag/param names, sorted.
func FilterParamNames() []string {
	names := make([]string, 0, len(filterParams))
	for n := range filterParams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func appendName(dst *[]string, v, what string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("%s is empty", what)
	}
	*dst = append(*dst, v)
	return nil
}

func appendPod(dst *[]string, v string) error {
	if _, err := parsePodRef(v); err != nil {
		return err
	}
	*dst = append(*dst, v)
	return nil
}

func appendSvc(dst *[]string, v string) error {
	if _, err := parseSvcRef(v); err != nil {
		return err
	}
	*dst = append(*dst, v)
	return nil
}

func appendWorkload(dst *[]string, v string) error {
	if _, err := parseSvcRef(v); err != nil {
		return fmt.Errorf("workload %q: use [namespace/]workload-name, e.g. stars/backend or backend", v)
	}
	*dst = append(*dst, v)
	return nil
}

func appendLabel(dst *[]string, v string) error {
	if _, err := ParseLabelSelector(v); err != nil {
		return err
	}
	*dst = append(*dst, v)
	return nil
}

func appendIP(dst *[]string, v string) error {
	if _, err := ParseIPOrCIDR(v); err != nil {
		return err
	}
	*dst = append(*dst, v)
	return nil
}

func appendPort(dst *[]uint16, v string) error {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("port %q: use a number from 1 to 65535", v)
	}
	*dst = append(*dst, uint16(n))
	return nil
}

func appendIdentity(dst *[]uint32, v string) error {
	for _, id := range []uint32{IdentityHost, IdentityWorld, IdentityUnmanaged, IdentityRemoteNode} {
		if strings.EqualFold(v, ReservedIdentityName(id)) {
			*dst = append(*dst, id)
			return nil
		}
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("identity %q: use a number or one of host, world, unmanaged, remote-node", v)
	}
	*dst = append(*dst, uint32(n))
	return nil
}

func appendProtocol(f *Filter, v string) error {
	p, err := normalizeProtocol(v)
	if err != nil {
		return err
	}
	f.Protocol = append(f.Protocol, p)
	return nil
}

func appendVerdict(f *Filter, v string) error {
	u := strings.ToUpper(v)
	if !slices.Contains(verdicts, u) {
		return fmt.Errorf("verdict %q: use one of %s", v, strings.Join(verdicts, ", "))
	}
	f.Verdict = append(f.Verdict, Verdict(u))
	return nil
}

func appendDropReason(f *Filter, v string) error {
	u := strings.ToUpper(v)
	if !slices.Contains(dropReasons, u) {
		return fmt.Errorf("drop reason %q: use one of %s", v, strings.Join(dropReasons, ", "))
	}
	f.DropReason = append(f.DropReason, u)
	return nil
}

func appendDirection(f *Filter, v string) error {
	u := strings.ToUpper(v)
	if u != string(DirectionIngress) && u != string(DirectionEgress) {
		return fmt.Errorf("traffic direction %q: use ingress or egress", v)
	}
	f.TrafficDirection = append(f.TrafficDirection, TrafficDirection(u))
	return nil
}

func appendEventType(f *Filter, v string) error {
	u := strings.ToUpper(v)
	if !slices.Contains(eventTypes, u) {
		return fmt.Errorf("event type %q: use one of %s", v, strings.Join(eventTypes, ", "))
	}
	f.EventType = append(f.EventType, EventType(u))
	return nil
}

// ParseTime parses an absolute time (RFC 3339) or a duration ago ("5m" = five minutes before now).
func ParseTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: use RFC 3339 (2026-01-02T15:04:05Z) or a duration ago (30s, 5m, 1h)", v)
}

// ParseQuery reads a Query from URL query parameters: follow, last, since, until, no-history, every
// filter parameter (see FilterParamNames; repeated values are ORed, different parameters ANDed, together
// they form one allow filter), "not-<filter>" (each adds a deny filter), and allow/deny (JSON Filters).
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	var q Query
	var allow Filter
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := v[k]
		last := vals[len(vals)-1]
		switch k {
		case ParamFollow, ParamNoHist:
			b := true
			if last != "" {
				var err error
				if b, err = strconv.ParseBool(last); err != nil {
					return Query{}, fmt.Errorf("query parameter %s=%q: use true or false", k, last)
				}
			}
			if k == ParamFollow {
				q.Follow = b
			} else {
				q.NoHistory = b
			}
		case ParamLast:
			n, err := strconv.Atoi(last)
			if err != nil || n < 0 {
				return Query{}, fmt.Errorf("query parameter last=%q: use a number >= 0", last)
			}
			q.Last = n
		case ParamSince, ParamUntil:
			t, err := ParseTime(last, now)
			if err != nil {
				return Query{}, fmt.Errorf("query parameter %s: %w", k, err)
			}
			if k == ParamSince {
				q.Since = t
			} else {
				q.Until = t
			}
		case ParamAllow, ParamDeny:
			for _, s := range vals {
				var f Filter
				dec := json.NewDecoder(strings.NewReader(s))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&f); err != nil {
					return Query{}, fmt.Errorf("query parameter %s: a JSON flow filter like {\"verdict\":[\"DROPPED\"]}: %w", k, err)
				}
				if k == ParamAllow {
					q.Allow = append(q.Allow, f)
				} else {
					q.Deny = append(q.Deny, f)
				}
			}
		default:
			name, negate := strings.CutPrefix(k, "not-")
			p, ok := filterParams[name]
			if !ok {
				return Query{}, fmt.Errorf("unknown query parameter %q: use follow, last, since, until, allow, deny, or a filter (%s, each also as not-<name>)",
					k, strings.Join(FilterParamNames(), ", "))
			}
			for _, s := range vals {
				if negate {
					var f Filter
					if err := p.set(&f, s); err != nil {
						return Query{}, fmt.Errorf("query parameter %s: %w", k, err)
					}
					q.Deny = append(q.Deny, f)
					continue
				}
				if err := p.set(&allow, s); err != nil {
					return Query{}, fmt.Errorf("query parameter %s: %w", k, err)
				}
			}
		}
	}
	if !allow.IsEmpty() {
		q.Allow = append(q.Allow, allow)
	}
	if err := q.Validate(); err != nil {
		return Query{}, fmt.Errorf("flow query: %w", err)
	}
	return q, nil
}

// Values encodes the query as URL parameters that ParseQuery reads back (filters as JSON).
func (q Query) Values() url.Values {
	v := url.Values{}
	if q.Follow {
		v.Set(ParamFollow, "true")
	}
	if q.NoHistory {
		v.Set(ParamNoHist, "true")
	}
	if q.Last > 0 {
		v.Set(ParamLast, strconv.Itoa(q.Last))
	}
	if !q.Since.IsZero() {
		v.Set(ParamSince, q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set(ParamUntil, q.Until.UTC().Format(time.RFC3339Nano))
	}
	for _, f := range q.Allow {
		b, _ := json.Marshal(f) // a Filter always marshals
		v.Add(ParamAllow, string(b))
	}
	for _, f := range q.Deny {
		b, _ := json.Marshal(f)
		v.Add(ParamDeny, string(b))
	}
	return v
}

// Flags binds the flow filter flags (the same names as the query parameters) to a pflag.FlagSet and
// builds a Query from them. Repeating a flag ORs its values; different flags are ANDed into one allow
// filter; `--not` turns the next filter flag into its own deny filter.
type Flags struct {
	allow      Filter
	deny       []Filter
	negateNext bool
	lastFlag   string

	AllNamespaces bool
	Last          int
	Follow        bool
	Since         string
	Until         string
}

// Register adds the filter and window flags to fs.
func (fl *Flags) Register(fs *pflag.FlagSet) {
	for _, name := range FilterParamNames() {
		p := filterParams[name]
		short := map[string]string{"namespace": "n", "label": "l"}[name]
		fs.VarP(&filterFlag{flags: fl, name: name}, name, short, p.help)
	}
	not := fs.VarPF(&notFlag{flags: fl}, "not", "", "turn the next filter flag into a deny filter (--not --verdict DROPPED)")
	not.NoOptDefVal = "true"
	fs.BoolVarP(&fl.AllNamespaces, "all-namespaces", "A", false, "flows in every namespace (cannot be combined with namespace flags)")
	fs.IntVar(&fl.Last, "last", 0, "the last N matching buffered flows (default 20 unless --follow or --since)")
	fs.BoolVarP(&fl.Follow, "follow", "f", false, "keep streaming new flows")
	fs.StringVar(&fl.Since, "since", "", "flows at or after this time (RFC 3339 or a duration ago: 5m)")
	fs.StringVar(&fl.Until, "until", "", "flows at or before this time (RFC 3339 or a duration ago)")
}

// Query builds the query the flags describe.
func (fl *Flags) Query(now time.Time) (Query, error) {
	if fl.negateNext {
		return Query{}, fmt.Errorf("--not must be followed by a filter flag, e.g. --not --verdict DROPPED")
	}
	if fl.AllNamespaces && (len(fl.allow.Namespace)+len(fl.allow.SourceNamespace)+len(fl.allow.DestinationNamespace) > 0) {
		return Query{}, fmt.Errorf("--all-namespaces cannot be combined with --namespace/--from-namespace/--to-namespace: drop one")
	}
	if fl.Last < 0 {
		return Query{}, fmt.Errorf("--last %d: use a number >= 0", fl.Last)
	}
	q := Query{Deny: fl.deny, Last: fl.Last, Follow: fl.Follow}
	if !fl.allow.IsEmpty() {
		q.Allow = []Filter{fl.allow}
	}
	var err error
	if fl.Since != "" {
		if q.Since, err = ParseTime(fl.Since, now); err != nil {
			return Query{}, fmt.Errorf("--since: %w", err)
		}
	}
	if fl.Until != "" {
		if q.Until, err = ParseTime(fl.Until, now); err != nil {
			return Query{}, fmt.Errorf("--until: %w", err)
		}
	}
	switch {
	case q.Follow && q.Last == 0 && q.Since.IsZero():
		q.NoHistory = true // like hubble observe --follow: only new flows
	case !q.Follow && q.Last == 0 && q.Since.IsZero() && q.Until.IsZero():
		q.Last = 20 // like hubble observe: the last 20
	}
	if err := q.Validate(); err != nil {
		if q.Follow && !q.Until.IsZero() {
			return Query{}, fmt.Errorf("--until cannot be combined with --follow")
		}
		return Query{}, err
	}
	return q, nil
}

type filterFlag struct {
	flags *Flags
	name  string
	vals  []string
}

func (f *filterFlag) String() string { return strings.Join(f.vals, ",") }
func (f *filterFlag) Type() string   { return "string" }
func (f *filterFlag) Set(v string) error {
	p := filterParams[f.name]
	fl := f.flags
	fl.lastFlag = f.name
	if fl.negateNext {
		fl.negateNext = false
		var d Filter
		if err := p.set(&d, v); err != nil {
			return err
		}
		fl.deny = append(fl.deny, d)
	} else if err := p.set(&fl.allow, v); err != nil {
		return err
	}
	f.vals = append(f.vals, v)
	return nil
}

type notFlag struct{ flags *Flags }

func (n *notFlag) String() string { return "" }
func (n *notFlag) Type() string   { return "" }
func (n *notFlag) Set(v string) error {
	if v != "true" {
		return fmt.Errorf("--not takes no value; put it before a filter flag: --not --verdict DROPPED")
	}
	n.flags.negateNext = true
	return nil
}
