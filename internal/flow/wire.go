package flow

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
)

// WireContentType is the media type of a flow stream in Starlab's binary wire form, which a client
// asks for with an Accept header (Handler answers NDJSON to everyone else). The agents' streams to
// the observer and the observer's to Starlab's own clients use it: decoding it costs a fraction of
// NDJSON's (docs/BENCHMARKS.md "Flow throughput").
//
// The stream is wireMagic, then records: a uvarint length and that many bytes, one flow each. A
// record's strings are dictionary references: the first time the stream sends a string it sends its
// bytes and both sides append it to their dictionary; afterwards its index. The dictionary is
// bounded (wireDictMax strings of at most wireDictString bytes; longer strings and flow UUIDs are
// always sent whole) and starts empty again at a record that says so.
const WireContentType = "application/vnd.starlab.flows"

const (
	wireMagic      = "SLF\x01"
	wireDictMax    = 1 << 14
	wireDictString = 256

	// String tags: the low two bits of a string's uvarint.
	wireRef        = 0 // x>>2 == 0: "", else dictionary index (x>>2)-1
	wireNew        = 1 // x>>2 bytes follow, appended to the dictionary
	wireLiteral    = 2 // x>>2 bytes follow, not kept
	wireUUIDBinary = 3 // (UUID only) 16 bytes follow: the UUID in canonical form
)

// Record flag bits (the record's first uvarint).
const (
	wireReset = 1 << iota // the dictionary starts empty at this record
	wireZeroTime
	wireReply
	wireTCPFlags
	wireSrcWorkload
	wireDstWorkload
	wireSrcService
	wireDstService
)

// WireEncoder writes flows in the binary wire form (WireContentType).
type WireEncoder struct {
	w       io.Writer
	buf     []byte
	dict    map[string]uint32
	started bool
	reset   bool // the next record starts the dictionary again (a record was not sent)
}

// NewWireEncoder returns a wire encoder writing to w; the stream header goes out with the first flow.
func NewWireEncoder(w io.Writer) *WireEncoder {
	return &WireEncoder{w: w, dict: make(map[string]uint32)}
}

// Encode writes one flow.
func (e *WireEncoder) Encode(f *Flow) error {
	var flags uint64
	if e.reset || len(e.dict) >= wireDictMax {
		clear(e.dict)
		e.reset = false
		flags |= wireReset
	}
	if f.Time.IsZero() {
		flags |= wireZeroTime
	}
	if f.IsReply {
		flags |= wireReply
	}
	if f.L4.Flags != nil {
		flags |= wireTCPFlags
	}
	if f.Source.Workload != nil {
		flags |= wireSrcWorkload
	}
	if f.Destination.Workload != nil {
		flags |= wireDstWorkload
	}
	if f.SourceService != nil {
		flags |= wireSrcService
	}
	if f.DestinationService != nil {
		flags |= wireDstService
	}
	b := e.buf[:0]
	if !e.started {
		b = append(b, wireMagic...)
	}
	// Room for the record's length, filled in at the end (a uvarint of at most 3 bytes: records
	// are under MaxLineBytes).
	b = append(b, 0, 0, 0)
	start := len(b)
	b = binary.AppendUvarint(b, flags)
	if flags&wireZeroTime == 0 {
		b = binary.AppendVarint(b, f.Time.Unix())
		b = binary.AppendUvarint(b, uint64(f.Time.Nanosecond()))
	}
	if u, ok := parseCanonicalUUID(f.UUID); ok {
		b = binary.AppendUvarint(b, wireUUIDBinary)
		b = append(b, u[:]...)
	} else {
		b = appendWireLiteral(b, f.UUID)
	}
	b = e.str(b, string(f.Verdict))
	b = e.str(b, f.DropReasonDesc)
	b = e.str(b, string(f.EventType))
	b = e.str(b, f.IP.Source)
	b = e.str(b, f.IP.Destination)
	b = e.str(b, f.IP.OrigDestination)
	b = e.str(b, f.L4.Protocol)
	b = binary.AppendUvarint(b, uint64(f.L4.SourcePort))
	b = binary.AppendUvarint(b, uint64(f.L4.DestinationPort))
	b = binary.AppendUvarint(b, uint64(f.L4.OrigDestinationPort))
	if f.L4.Flags != nil {
		b = append(b, tcpFlagBits(f.L4.Flags))
	}
	b = e.endpoint(b, &f.Source)
	b = e.endpoint(b, &f.Destination)
	b = e.str(b, f.NodeName)
	if s := f.SourceService; s != nil {
		b = e.str(e.str(b, s.Name), s.Namespace)
	}
	if s := f.DestinationService; s != nil {
		b = e.str(e.str(b, s.Name), s.Namespace)
	}
	b = e.str(b, string(f.TrafficDirection))
	b = e.str(b, f.TraceObservationPoint)
	b = e.policies(b, f.AllowedBy)
	b = e.policies(b, f.DeniedBy)
	b = binary.AppendUvarint(b, f.Packets)
	b = binary.AppendUvarint(b, f.Bytes)
	n := len(b) - start
	if n >= MaxLineBytes {
		// The strings this record added to the dictionary never reach the decoder.
		e.buf, e.reset = b[:0], true
		return fmt.Errorf("encode flow %s: %d bytes is over the %d a record may have", f.UUID, n, MaxLineBytes)
	}
	// A fixed 3-byte uvarint: continuation bits on the first two.
	b[start-3], b[start-2], b[start-1] = byte(n)|0x80, byte(n>>7)|0x80, byte(n>>14)
	e.buf = b
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("write flow %s: %w", f.UUID, err)
	}
	e.started = true
	return nil
}

func appendWireLiteral(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s))<<2|wireLiteral)
	return append(b, s...)
}

func (e *WireEncoder) str(b []byte, s string) []byte {
	if s == "" {
		return append(b, wireRef)
	}
	if i, ok := e.dict[s]; ok {
		return binary.AppendUvarint(b, uint64(i+1)<<2|wireRef)
	}
	if len(s) > wireDictString || len(e.dict) >= wireDictMax {
		return appendWireLiteral(b, s)
	}
	e.dict[s] = uint32(len(e.dict))
	b = binary.AppendUvarint(b, uint64(len(s))<<2|wireNew)
	return append(b, s...)
}

func (e *WireEncoder) endpoint(b []byte, ep *Endpoint) []byte {
	b = binary.AppendUvarint(b, uint64(ep.Identity))
	b = e.str(b, ep.Namespace)
	b = e.str(b, ep.PodName)
	b = e.str(b, ep.IP)
	b = binary.AppendUvarint(b, uint64(len(ep.Labels)))
	for _, l := range ep.Labels {
		b = e.str(b, l)
	}
	if w := ep.Workload; w != nil {
		b = e.str(e.str(b, w.Name), w.Kind)
	}
	return b
}

func (e *WireEncoder) policies(b []byte, ps []Policy) []byte {
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = e.str(b, p.Kind)
		b = e.str(b, p.Namespace)
		b = e.str(b, p.Name)
		b = e.str(b, p.Tier)
		b = e.str(b, p.Rule)
		b = e.str(b, p.Action)
	}
	return b
}

func tcpFlagBits(t *TCPFlags) byte {
	var x byte
	for i, on := range [...]bool{t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG, t.ECE, t.CWR} {
		if on {
			x |= 1 << i
		}
	}
	return x
}

func tcpFlagsFrom(x byte) *TCPFlags {
	return &TCPFlags{FIN: x&1 != 0, SYN: x&2 != 0, RST: x&4 != 0, PSH: x&8 != 0, ACK: x&16 != 0, URG: x&32 != 0, ECE: x&64 != 0, CWR: x&128 != 0}
}

// WireDecoder reads a flow stream in the binary wire form (WireContentType).
type WireDecoder struct {
	r      *bufio.Reader
	rec    []byte
	dict   []string
	n      int // records read
	header bool
}

// NewWireDecoder returns a decoder of the wire stream r.
func NewWireDecoder(r io.Reader) *WireDecoder {
	return &WireDecoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// errWireTruncated is what a record that ends inside a field reads as.
var errWireTruncated = errors.New("record ends inside a field")

// Decode reads the next flow; it returns io.EOF at the end of the stream.
func (d *WireDecoder) Decode() (*Flow, error) {
	if !d.header {
		var m [len(wireMagic)]byte
		if _, err := io.ReadFull(d.r, m[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("flow wire stream header: %w", err)
		}
		if string(m[:]) != wireMagic {
			return nil, fmt.Errorf("flow wire stream header %q: not a %s stream (want %q)", m[:], WireContentType, wireMagic)
		}
		d.header = true
	}
	size, err := binary.ReadUvarint(d.r)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("flow wire record %d: length: %w", d.n+1, err)
	}
	d.n++
	if size == 0 || size >= MaxLineBytes {
		return nil, fmt.Errorf("flow wire record %d: length %d is outside 1..%d", d.n, size, MaxLineBytes-1)
	}
	if cap(d.rec) < int(size) {
		d.rec = make([]byte, size)
	}
	d.rec = d.rec[:size]
	if _, err := io.ReadFull(d.r, d.rec); err != nil {
		return nil, fmt.Errorf("flow wire record %d: %w", d.n, err)
	}
	f, err := d.record(d.rec)
	if err != nil {
		return nil, fmt.Errorf("flow wire record %d: %w", d.n, err)
	}
	return f, nil
}

// wireReader reads the fields of one record; the first error sticks and later reads return zeros.
type wireReader struct {
	b   []byte
	d   *WireDecoder
	err error
}

func (r *wireReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *wireReader) uvarint() uint64 { return wireNumber(r, binary.Uvarint) }

func (r *wireReader) varint() int64 { return wireNumber(r, binary.Varint) }

// wireNumber reads one varint with read (binary.Uvarint or binary.Varint).
func wireNumber[T uint64 | int64](r *wireReader, read func([]byte) (T, int)) T {
	x, n := read(r.b)
	if n <= 0 {
		r.fail(errWireTruncated)
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *wireReader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail(errWireTruncated)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *wireReader) port() uint16 {
	x := r.uvarint()
	if x > 0xffff {
		r.fail(fmt.Errorf("port %d is over 65535", x))
	}
	return uint16(x)
}

func (r *wireReader) str() string {
	x := r.uvarint()
	switch x & 3 {
	case wireRef:
		i := x >> 2
		if i == 0 {
			return ""
		}
		if i > uint64(len(r.d.dict)) {
			r.fail(fmt.Errorf("string reference %d: the dictionary holds %d", i-1, len(r.d.dict)))
			return ""
		}
		return r.d.dict[i-1]
	case wireNew:
		n := x >> 2
		if n == 0 || n > wireDictString || len(r.d.dict) >= wireDictMax {
			r.fail(fmt.Errorf("dictionary string of %d bytes with %d kept: over the bounds (%d bytes, %d strings)", n, len(r.d.dict), wireDictString, wireDictMax))
			return ""
		}
		s := string(r.bytes(n))
		if r.err == nil {
			r.d.dict = append(r.d.dict, s)
		}
		return s
	case wireLiteral:
		return string(r.bytes(x >> 2))
	}
	r.fail(fmt.Errorf("string tag %d is not one of ref, new, literal", x&3))
	return ""
}

// count reads a list length, bounded by the bytes left (each element takes at least one).
func (r *wireReader) count(what string) int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(fmt.Errorf("%s: %d elements in %d bytes", what, n, len(r.b)))
		return 0
	}
	return int(n)
}

func (r *wireReader) endpoint(e *Endpoint, workload bool) {
	id := r.uvarint()
	if id > 0xffffffff {
		r.fail(fmt.Errorf("identity %d is over 32 bits", id))
	}
	e.Identity = uint32(id)
	e.Namespace = r.str()
	e.PodName = r.str()
	e.IP = r.str()
	if n := r.count("labels"); n > 0 {
		e.Labels = make([]string, n)
		for i := range e.Labels {
			e.Labels[i] = r.str()
		}
	}
	if workload {
		e.Workload = &Workload{Name: r.str(), Kind: r.str()}
	}
}

func (r *wireReader) policies() []Policy {
	n := r.count("policies")
	if n == 0 {
		return nil
	}
	ps := make([]Policy, n)
	for i := range ps {
		ps[i] = Policy{Kind: r.str(), Namespace: r.str(), Name: r.str(), Tier: r.str(), Rule: r.str(), Action: r.str()}
	}
	return ps
}

func (d *WireDecoder) record(b []byte) (*Flow, error) {
	r := &wireReader{b: b, d: d}
	flags := r.uvarint()
	if flags&wireReset != 0 {
		clear(d.dict)
		d.dict = d.dict[:0]
	}
	f := &Flow{}
	if flags&wireZeroTime == 0 {
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.fail(fmt.Errorf("time: %d nanoseconds is over a second", nsec))
		}
		f.Time = time.Unix(sec, int64(nsec)).UTC()
	}
	if x := r.uvarint(); x == wireUUIDBinary {
		if u := r.bytes(16); u != nil {
			f.UUID = uuid.UUID(u).String()
		}
	} else if x&3 == wireLiteral {
		f.UUID = string(r.bytes(x >> 2))
	} else {
		r.fail(fmt.Errorf("uuid tag %d: want literal or binary", x&3))
	}
	f.Verdict = Verdict(r.str())
	f.DropReasonDesc = r.str()
	f.EventType = EventType(r.str())
	f.IP.Source = r.str()
	f.IP.Destination = r.str()
	f.IP.OrigDestination = r.str()
	f.L4.Protocol = r.str()
	f.L4.SourcePort = r.port()
	f.L4.DestinationPort = r.port()
	f.L4.OrigDestinationPort = r.port()
	if flags&wireTCPFlags != 0 {
		if t := r.bytes(1); t != nil {
			f.L4.Flags = tcpFlagsFrom(t[0])
		}
	}
	r.endpoint(&f.Source, flags&wireSrcWorkload != 0)
	r.endpoint(&f.Destination, flags&wireDstWorkload != 0)
	f.NodeName = r.str()
	if flags&wireSrcService != 0 {
		f.SourceService = &Service{Name: r.str(), Namespace: r.str()}
	}
	if flags&wireDstService != 0 {
		f.DestinationService = &Service{Name: r.str(), Namespace: r.str()}
	}
	f.TrafficDirection = TrafficDirection(r.str())
	f.IsReply = flags&wireReply != 0
	f.TraceObservationPoint = r.str()
	f.AllowedBy = r.policies()
	f.DeniedBy = r.policies()
	f.Packets = r.uvarint()
	f.Bytes = r.uvarint()
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last field", len(r.b))
	}
	return f, nil
}
