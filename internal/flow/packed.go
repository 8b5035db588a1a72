package flow

import (
	"hash/maphash"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
)

// packed is the Store's representation of one buffered flow: fixed-size fields by value, the values
// many flows share (endpoint metadata, services, policies, node names, addresses) as pointers into
// an interner. A flow that does not pack losslessly (a non-canonical UUID or address, a value outside
// the known enums) is kept whole in full. BenchmarkStoreMemory measures the bytes per buffered flow.
type packed struct {
	time           time.Time
	seq            uint64 // Store: order of the insert that stored it, from 1
	full           *Flow  // non-nil: the flow as given (it did not pack)
	uuid           [16]byte
	src, dst       *endpointMeta
	srcSvc, dstSvc *Service
	allowed        *policySet
	denied         *policySet
	ipSrc, ipDst   *string
	ipOrig         *string
	node           *string
	packets, bytes uint64
	sport, dport   uint16
	origDport      uint16
	verdict        uint8 // index in verdicts + 1 (0: "")
	eventType      uint8 // index in eventTypes + 1
	direction      uint8 // index in directions + 1
	protocol       uint8 // index in protocols + 1
	dropReason     uint8 // index in dropReasons + 1
	obsPoint       uint8 // index in obsPoints + 1
	tcpFlags       uint8 // bit per flag (tcpFlagBits)
	bits           uint8 // packedBit*
	backfilled     bool  // Store: stored by Backfill (not offered to subscribers)
}

const (
	bitUUID       uint8 = 1 << iota // uuid holds the flow's UUID ("" otherwise)
	bitReply                        // IsReply
	bitTCPFlags                     // L4.Flags is set
	bitSrcEPIP                      // Source.IP == IP.Source (else "")
	bitDstEPIP                      // Destination.IP == IP.Destination (else "")
	bitHasSrcMeta                   // src is set
	bitHasDstMeta                   // dst is set
)

var obsPoints = []string{ObsFromEndpoint, ObsToEndpoint, ObsFromNetwork}

// endpointMeta is an Endpoint without its address: what the flows of one pod share.
type endpointMeta struct {
	identity  uint32
	namespace string
	podName   string
	labels    []string
	workload  *Workload
}

type policySet struct{ ps []Policy }

// interner deduplicates the shared parts of packed flows. Its maps forget everything when they grow
// past internLimit (pod churn must not grow them forever); entries keep their pointers, so a reset
// only costs duplicates until the working set is interned again.
type interner struct {
	seed      maphash.Seed
	strs      map[string]*string
	endpoints map[uint64][]*endpointMeta
	services  map[Service]*Service
	policies  map[uint64][]*policySet
	n         int
}

const internLimit = 1 << 16

func newInterner() *interner {
	in := &interner{seed: maphash.MakeSeed()}
	in.reset()
	return in
}

func (in *interner) reset() {
	in.strs = map[string]*string{}
	in.endpoints = map[uint64][]*endpointMeta{}
	in.services = map[Service]*Service{}
	in.policies = map[uint64][]*policySet{}
	in.n = 0
}

func (in *interner) grow() {
	in.n++
	if in.n > internLimit {
		in.reset()
	}
}

func (in *interner) str(s string) *string {
	if s == "" {
		return nil
	}
	if p, ok := in.strs[s]; ok {
		return p
	}
	in.grow()
	p := new(string) // not &s: that would move s to the heap on every call, hits included
	*p = s
	in.strs[s] = p
	return p
}

func (in *interner) service(s *Service) *Service {
	if s == nil {
		return nil
	}
	if p, ok := in.services[*s]; ok {
		return p
	}
	in.grow()
	p := &Service{Name: s.Name, Namespace: s.Namespace}
	in.services[*s] = p
	return p
}

func (in *interner) endpoint(e *Endpoint) *endpointMeta {
	if e.Identity == 0 && e.Namespace == "" && e.PodName == "" && e.Labels == nil && e.Workload == nil {
		return nil
	}
	var h maphash.Hash
	h.SetSeed(in.seed)
	h.WriteString(e.Namespace)
	h.WriteByte(0)
	h.WriteString(e.PodName)
	for _, l := range e.Labels {
		h.WriteByte(0)
		h.WriteString(l)
	}
	key := h.Sum64() ^ uint64(e.Identity)
	for _, m := range in.endpoints[key] {
		if m.identity == e.Identity && m.namespace == e.Namespace && m.podName == e.PodName &&
			sameLabels(m.labels, e.Labels) && sameWorkload(m.workload, e.Workload) {
			return m
		}
	}
	in.grow()
	m := &endpointMeta{identity: e.Identity, namespace: e.Namespace, podName: e.PodName, labels: slices.Clone(e.Labels)}
	if e.Workload != nil {
		w := *e.Workload
		m.workload = &w
	}
	in.endpoints[key] = append(in.endpoints[key], m)
	return m
}

// sameLabels compares two label lists, nil and empty apart (they encode differently nowhere, but a
// round trip keeps exactly what was given).
func sameLabels(a, b []string) bool {
	return (a == nil) == (b == nil) && slices.Equal(a, b)
}

func sameWorkload(a, b *Workload) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func (in *interner) policySet(ps []Policy) *policySet {
	if ps == nil {
		return nil
	}
	var h maphash.Hash
	h.SetSeed(in.seed)
	for _, p := range ps {
		h.WriteString(p.Kind)
		h.WriteByte(0)
		h.WriteString(p.Namespace)
		h.WriteByte(0)
		h.WriteString(p.Name)
		h.WriteByte(1)
	}
	key := h.Sum64()
	for _, s := range in.policies[key] {
		if slices.Equal(s.ps, ps) {
			return s
		}
	}
	in.grow()
	s := &policySet{ps: slices.Clone(ps)}
	in.policies[key] = append(in.policies[key], s)
	return s
}

// enumIndex is i+1 for the i-th value of known, 0 for "", and ok=false for anything else.
func enumIndex(v string, known []string) (uint8, bool) {
	if v == "" {
		return 0, true
	}
	i := slices.Index(known, v)
	if i < 0 || i > 254 {
		return 0, false
	}
	return uint8(i + 1), true
}

func enumValue(i uint8, known []string) string {
	if i == 0 {
		return ""
	}
	return known[i-1]
}

// canonicalAddr says whether s is "" or an address that prints back as s (interned strings are:
// only canonical addresses are interned as addresses).
func (in *interner) canonicalAddr(s string) bool {
	if s == "" {
		return true
	}
	if _, ok := in.strs[s]; ok {
		return true
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.String() == s
}

// parseCanonicalUUID parses s when it has the form uuid.UUID.String prints (36 characters, dashes at
// 8, 13, 18 and 23, lower-case hex elsewhere), so that printing the bytes gives s back.
func parseCanonicalUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i--
			continue
		}
		hi, ok1 := lowerHex(s[i])
		lo, ok2 := lowerHex(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
	}
	return u, j == 16
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// pack returns f in its packed form; the flow is kept whole when some field does not pack exactly.
func (in *interner) pack(f *Flow) packed {
	p, ok := in.tryPack(f)
	if !ok {
		return packed{time: f.Time, full: f}
	}
	return p
}

func (in *interner) tryPack(f *Flow) (packed, bool) {
	p := packed{time: f.Time, packets: f.Packets, bytes: f.Bytes,
		sport: f.L4.SourcePort, dport: f.L4.DestinationPort, origDport: f.L4.OrigDestinationPort}
	var ok [6]bool
	p.verdict, ok[0] = enumIndex(string(f.Verdict), verdicts)
	p.eventType, ok[1] = enumIndex(string(f.EventType), eventTypes)
	p.direction, ok[2] = enumIndex(string(f.TrafficDirection), directions)
	p.protocol, ok[3] = enumIndex(f.L4.Protocol, protocols)
	p.dropReason, ok[4] = enumIndex(f.DropReasonDesc, dropReasons)
	p.obsPoint, ok[5] = enumIndex(f.TraceObservationPoint, obsPoints)
	for _, o := range ok {
		if !o {
			return p, false
		}
	}
	if f.UUID != "" {
		u, ok := parseCanonicalUUID(f.UUID)
		if !ok {
			return p, false
		}
		p.uuid, p.bits = u, p.bits|bitUUID
	}
	if !in.canonicalAddr(f.IP.Source) || !in.canonicalAddr(f.IP.Destination) || !in.canonicalAddr(f.IP.OrigDestination) {
		return p, false
	}
	switch f.Source.IP {
	case f.IP.Source:
		p.bits |= bitSrcEPIP
	case "":
	default:
		return p, false
	}
	switch f.Destination.IP {
	case f.IP.Destination:
		p.bits |= bitDstEPIP
	case "":
	default:
		return p, false
	}
	if f.IsReply {
		p.bits |= bitReply
	}
	if fl := f.L4.Flags; fl != nil {
		p.bits |= bitTCPFlags
		for i, on := range [8]bool{fl.FIN, fl.SYN, fl.RST, fl.PSH, fl.ACK, fl.URG, fl.ECE, fl.CWR} {
			if on {
				p.tcpFlags |= 1 << i
			}
		}
	}
	p.ipSrc, p.ipDst, p.ipOrig = in.str(f.IP.Source), in.str(f.IP.Destination), in.str(f.IP.OrigDestination)
	p.node = in.str(f.NodeName)
	if p.src = in.endpoint(&f.Source); p.src != nil {
		p.bits |= bitHasSrcMeta
	}
	if p.dst = in.endpoint(&f.Destination); p.dst != nil {
		p.bits |= bitHasDstMeta
	}
	p.srcSvc, p.dstSvc = in.service(f.SourceService), in.service(f.DestinationService)
	p.allowed, p.denied = in.policySet(f.AllowedBy), in.policySet(f.DeniedBy)
	return p, true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// flow returns the flow p holds. Flows share their label, workload, service and policy values with
// other buffered flows: treat them as read-only.
func (p *packed) flow() *Flow {
	if p.full != nil {
		return p.full
	}
	f := &Flow{}
	var flags *TCPFlags
	if p.bits&bitTCPFlags != 0 {
		flags = &TCPFlags{}
	}
	p.into(f, flags)
	if p.bits&bitUUID != 0 {
		f.UUID = uuid.UUID(p.uuid).String()
	}
	return f
}

// into fills f (all but its UUID, which no filter reads) without allocating; flags is where
// L4.Flags points when the flow has TCP flags.
func (p *packed) into(f *Flow, flags *TCPFlags) {
	*f = Flow{
		Time: p.time, Packets: p.packets, Bytes: p.bytes, IsReply: p.bits&bitReply != 0,
		Verdict:               Verdict(enumValue(p.verdict, verdicts)),
		EventType:             EventType(enumValue(p.eventType, eventTypes)),
		TrafficDirection:      TrafficDirection(enumValue(p.direction, directions)),
		DropReasonDesc:        enumValue(p.dropReason, dropReasons),
		TraceObservationPoint: enumValue(p.obsPoint, obsPoints),
		NodeName:              deref(p.node),
		IP:                    IP{Source: deref(p.ipSrc), Destination: deref(p.ipDst), OrigDestination: deref(p.ipOrig)},
		L4: L4{Protocol: enumValue(p.protocol, protocols), SourcePort: p.sport, DestinationPort: p.dport,
			OrigDestinationPort: p.origDport},
		SourceService: p.srcSvc, DestinationService: p.dstSvc,
	}
	if p.bits&bitTCPFlags != 0 {
		b := p.tcpFlags
		*flags = TCPFlags{FIN: b&1 != 0, SYN: b&2 != 0, RST: b&4 != 0, PSH: b&8 != 0, ACK: b&16 != 0,
			URG: b&32 != 0, ECE: b&64 != 0, CWR: b&128 != 0}
		f.L4.Flags = flags
	}
	p.src.into(&f.Source)
	p.dst.into(&f.Destination)
	if p.bits&bitSrcEPIP != 0 {
		f.Source.IP = f.IP.Source
	}
	if p.bits&bitDstEPIP != 0 {
		f.Destination.IP = f.IP.Destination
	}
	if p.allowed != nil {
		f.AllowedBy = p.allowed.ps
	}
	if p.denied != nil {
		f.DeniedBy = p.denied.ps
	}
}

// matches says whether m (nil: all) matches p, without allocating (scratch and flags are reused).
func (p *packed) matches(m *Matcher, scratch *Flow, flags *TCPFlags) bool {
	if m == nil {
		return true
	}
	if p.full != nil {
		return m.Match(p.full)
	}
	p.into(scratch, flags)
	return m.Match(scratch)
}

func (m *endpointMeta) into(e *Endpoint) {
	if m == nil {
		return
	}
	e.Identity, e.Namespace, e.PodName, e.Labels, e.Workload = m.identity, m.namespace, m.podName, m.labels, m.workload
}
