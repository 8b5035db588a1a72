package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Streams: long-lived connections made from inside the pod, for tests that need a connection to
// stay open while something changes (a policy applied, the agents restarted). A stream sends one
// line ("<seq> <send time in unix ns>") every interval over one TCP connection or one UDP socket,
// never redials, and records every echoed line; the peer is an echo port (--echo for TCP,
// --listen-udp for UDP). The probe serves them on its HTTP port:
//
//	POST   /streams        {"target":"ip:port","protocol":"tcp|udp","interval":"50ms"} -> StreamStatus
//	GET    /streams/{id}   -> StreamStatus
//	DELETE /streams/{id}   -> the final StreamStatus (the stream is closed)

// MaxStreams bounds the streams one probe runs at once.
const MaxStreams = 64

// MinStreamInterval is the shortest time between two lines of a stream.
const MinStreamInterval = 10 * time.Millisecond

// StreamRequest is the body of POST /streams.
type StreamRequest struct {
	Target   string `json:"target"`             // host:port
	Protocol string `json:"protocol,omitempty"` // tcp (default) or udp
	Interval string `json:"interval,omitempty"` // time between lines, default 50ms
}

// StreamStatus is what a stream saw so far.
type StreamStatus struct {
	ID         string `json:"id"`
	Target     string `json:"target"`
	Protocol   string `json:"protocol"`
	IntervalMs int64  `json:"intervalMs"`
	// LocalAddr and RemoteAddr are the stream's connection (its source port names it in flows).
	LocalAddr  string    `json:"localAddr"`
	RemoteAddr string    `json:"remoteAddr"`
	StartedAt  time.Time `json:"startedAt"`
	// Sent and Answered count lines written and echoed lines read back.
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
	// LastSentAt is when the newest line was written; LastAnswerAt when the newest echo arrived;
	// LastAnsweredSentAt when the newest echoed line had been sent (a cut stream's last line that
	// got through).
	LastSentAt         time.Time `json:"lastSentAt,omitzero"`
	LastAnswerAt       time.Time `json:"lastAnswerAt,omitzero"`
	LastAnsweredSentAt time.Time `json:"lastAnsweredSentAt,omitzero"`
	// MaxGapMs is the longest time without an answer while the stream ran: between the start and
	// the first answer, between two answers, and from the last answer to now (or to the close).
	MaxGapMs float64 `json:"maxGapMs"`
	// MaxGapFrom is when that longest gap began (the answer before it, or the start): a stall
	// read next to the other events of its time (an agent restart, a program re-attach).
	MaxGapFrom time.Time `json:"maxGapFrom,omitzero"`
	// MaxSendGapMs is the longest time between two lines written: the interval while the sender's
	// host keeps up, more when the sender itself was not scheduled (a gap in answers no longer than
	// it is the host's stall, not the network's).
	MaxSendGapMs float64 `json:"maxSendGapMs"`
	// Lost counts lines never echoed while a later line was (UDP; a TCP stream cannot lose a line
	// without breaking).
	Lost uint64 `json:"lost"`
	// Retransmits counts the segments the kernel sent again on a TCP stream (TCP_INFO
	// tcpi_total_retrans): a segment dropped on the way and recovered, invisible in Answered, or
	// one sent again early (a tail loss probe a few ms after an ACK was late).
	Retransmits uint32 `json:"retransmits"`
	// SpuriousRetransmits counts the segments sent again that the peer reported it had already
	// (DSACK, TCP_INFO tcpi_dsack_dups): sent again because an answer was late, not because the
	// segment was lost. Retransmits minus these is what the network dropped.
	SpuriousRetransmits uint32 `json:"spuriousRetransmits"`
	// Errors counts failed sends and receives that did not end the stream (UDP: an ICMP error).
	Errors    uint64 `json:"errors"`
	LastError string `json:"lastError,omitempty"`
	// Broken is set when the TCP connection failed (reset, closed by the peer, a write that did not
	// complete): the stream ended by itself at BrokenAt with Error.
	Broken   bool      `json:"broken"`
	BrokenAt time.Time `json:"brokenAt,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Closed is set once the stream was stopped (DELETE).
	Closed bool `json:"closed"`
}

// Stream is one running stream.
type Stream struct {
	conn     net.Conn
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}

	mu         sync.Mutex
	st         StreamStatus
	highestSeq uint64 // the highest sequence number echoed so far
}

// StartStream connects to target and starts sending a line every interval until Close or ctx ends.
// TCP: the connect must succeed within timeout. UDP: the socket is connected (no handshake).
func StartStream(ctx context.Context, protocol, target string, interval, timeout time.Duration) (*Stream, error) {
	if protocol == "" {
		protocol = "tcp"
	}
	if protocol != "tcp" && protocol != "udp" {
		return nil, fmt.Errorf("stream protocol %q: want tcp or udp", protocol)
	}
	if interval < MinStreamInterval {
		return nil, fmt.Errorf("stream interval %s: at least %s", interval, MinStreamInterval)
	}
	dctx, dcancel := context.WithTimeout(ctx, timeout)
	defer dcancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, protocol, target)
	if err != nil {
		return nil, fmt.Errorf("stream %s connect %s: %w", protocol, target, err)
	}
	now := time.Now().UTC()
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Stream{conn: conn, interval: interval, cancel: cancel, done: make(chan struct{}), st: StreamStatus{
		Target: target, Protocol: protocol, IntervalMs: interval.Milliseconds(),
		LocalAddr: conn.LocalAddr().String(), RemoteAddr: conn.RemoteAddr().String(), StartedAt: now,
	}}
	go func() {
		<-sctx.Done()
		conn.Close()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { s.send(sctx) })
	wg.Go(func() { s.receive(sctx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

// send writes a line every interval until ctx ends or a TCP write fails.
func (s *Stream) send(ctx context.Context) {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		now := time.Now()
		line := strconv.FormatUint(seq, 10) + " " + strconv.FormatInt(now.UnixNano(), 10) + "\n"
		_ = s.conn.SetWriteDeadline(now.Add(5 * time.Second))
		_, err := io.WriteString(s.conn, line)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if err == nil {
			if !s.st.LastSentAt.IsZero() {
				if gap := float64(now.Sub(s.st.LastSentAt).Microseconds()) / 1000; gap > s.st.MaxSendGapMs {
					s.st.MaxSendGapMs = gap
				}
			}
			s.st.Sent++
			s.st.LastSentAt = now.UTC()
		} else {
			s.failLocked(err)
		}
		broken := s.st.Broken
		s.mu.Unlock()
		if broken {
			s.cancel()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// receive reads the echoed lines until ctx ends or the TCP connection fails.
func (s *Stream) receive(ctx context.Context) {
	if s.st.Protocol == "udp" {
		buf := make([]byte, 512)
		for {
			n, err := s.conn.Read(buf)
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			if err != nil {
				s.failLocked(err)
			} else {
				s.answerLocked(string(buf[:n]))
			}
			s.mu.Unlock()
		}
	}
	r := bufio.NewScanner(s.conn)
	for r.Scan() {
		s.mu.Lock()
		s.answerLocked(r.Text())
		s.mu.Unlock()
	}
	if ctx.Err() != nil {
		return
	}
	err := r.Err()
	if err == nil {
		err = io.EOF // the peer closed the connection
	}
	s.mu.Lock()
	s.failLocked(err)
	s.mu.Unlock()
	s.cancel()
}

// answerLocked records one echoed line (mu held).
func (s *Stream) answerLocked(line string) {
	now := time.Now().UTC()
	s.noteGapLocked(&s.st, now)
	s.st.Answered++
	s.st.LastAnswerAt = now
	seqText, ns, _ := strings.Cut(strings.TrimSpace(line), " ")
	if v, err := strconv.ParseInt(ns, 10, 64); err == nil {
		s.st.LastAnsweredSentAt = time.Unix(0, v).UTC()
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	switch {
	case err != nil:
	case seq > s.highestSeq:
		s.st.Lost += seq - s.highestSeq - 1 // the lines skipped, until one of them comes late
		s.highestSeq = seq
	case s.st.Lost > 0:
		s.st.Lost-- // a line that came after a later one: late, not lost
	}
}

// DroppedSegments is the number of a TCP stream's segments sent again and not reported back as
// duplicates: the segments the network lost.
func (st StreamStatus) DroppedSegments() uint32 {
	if st.SpuriousRetransmits >= st.Retransmits {
		return 0
	}
	return st.Retransmits - st.SpuriousRetransmits
}

// readRetransmitsLocked reads the kernel's retransmission count of a TCP stream into st (mu held;
// the connection still open).
func (s *Stream) readRetransmitsLocked(st *StreamStatus) {
	tc, ok := s.conn.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			st.Retransmits, st.SpuriousRetransmits = info.Total_retrans, info.Dsack_dups
		}
	})
}

// noteGapLocked counts the time from the last answer (or the start) to now in st's longest gap.
func (s *Stream) noteGapLocked(st *StreamStatus, now time.Time) {
	from := s.st.LastAnswerAt
	if from.IsZero() {
		from = s.st.StartedAt
	}
	if gap := float64(now.Sub(from).Microseconds()) / 1000; gap > st.MaxGapMs {
		st.MaxGapMs, st.MaxGapFrom = gap, from
	}
}

// failLocked records a send or receive error: it ends a TCP stream, a UDP stream counts it.
func (s *Stream) failLocked(err error) {
	s.st.Errors++
	s.st.LastError = err.Error()
	if s.st.Protocol == "tcp" && !s.st.Broken && !s.st.Closed {
		now := time.Now().UTC()
		s.noteGapLocked(&s.st, now)
		s.readRetransmitsLocked(&s.st)
		s.st.Broken, s.st.BrokenAt, s.st.Error = true, now, err.Error()
	}
}

// Status returns what the stream saw so far. While the stream runs, the time since its last
// answer counts in MaxGapMs too.
func (s *Stream) Status() StreamStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if !st.Closed && !st.Broken {
		s.noteGapLocked(&st, time.Now().UTC())
		s.readRetransmitsLocked(&st)
	}
	return st
}

// Close stops the stream, closes its connection and returns its final status.
func (s *Stream) Close() StreamStatus {
	s.mu.Lock()
	if !s.st.Closed && !s.st.Broken {
		s.noteGapLocked(&s.st, time.Now().UTC())
		s.readRetransmitsLocked(&s.st)
	}
	s.st.Closed = true
	s.mu.Unlock()
	s.cancel()
	<-s.done
	return s.Status()
}

// streamRegistry holds the streams of one HTTP server.
type streamRegistry struct {
	ctx context.Context // the streams' lifetime (the server's)

	mu     sync.Mutex
	next   int
	byID   map[string]*Stream
	closed map[string]StreamStatus // final status of streams closed by DELETE, kept for a later GET
}

func newStreamRegistry(ctx context.Context) *streamRegistry {
	return &streamRegistry{ctx: ctx, byID: map[string]*Stream{}, closed: map[string]StreamStatus{}}
}

func (g *streamRegistry) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /streams", g.handleStart)
	mux.HandleFunc("GET /streams/{id}", g.handleGet)
	mux.HandleFunc("DELETE /streams/{id}", g.handleDelete)
}

func (g *streamRegistry) handleStart(w http.ResponseWriter, r *http.Request) {
	var req StreamRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("decode stream request: %v", err)})
		return
	}
	if _, _, err := net.SplitHostPort(req.Target); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("target %q: want host:port", req.Target)})
		return
	}
	interval := 50 * time.Millisecond
	if req.Interval != "" {
		d, err := time.ParseDuration(req.Interval)
		if err != nil || d < MinStreamInterval || d > time.Minute {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("interval %q: want %s..1m", req.Interval, MinStreamInterval)})
			return
		}
		interval = d
	}
	if req.Protocol != "" && req.Protocol != "tcp" && req.Protocol != "udp" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("protocol %q: want tcp or udp", req.Protocol)})
		return
	}
	g.mu.Lock()
	full := len(g.byID) >= MaxStreams
	g.mu.Unlock()
	if full {
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": fmt.Sprintf("%d streams running: close one first", MaxStreams)})
		return
	}
	s, err := StartStream(g.ctx, req.Protocol, req.Target, interval, time.Second)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	g.mu.Lock()
	g.next++
	id := strconv.Itoa(g.next)
	g.byID[id] = s
	g.mu.Unlock()
	s.mu.Lock()
	s.st.ID = id
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, s.Status())
}

func (g *streamRegistry) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g.mu.Lock()
	s, ok := g.byID[id]
	final, wasClosed := g.closed[id]
	g.mu.Unlock()
	switch {
	case ok:
		writeJSON(w, http.StatusOK, s.Status())
	case wasClosed:
		writeJSON(w, http.StatusOK, final)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no stream %q", id)})
	}
}

func (g *streamRegistry) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g.mu.Lock()
	s, ok := g.byID[id]
	delete(g.byID, id)
	final, wasClosed := g.closed[id]
	g.mu.Unlock()
	if !ok {
		if wasClosed {
			writeJSON(w, http.StatusOK, final)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no stream %q", id)})
		return
	}
	st := s.Close()
	g.mu.Lock()
	g.closed[id] = st
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

// ListenTCPEcho accepts TCP connections on addr:port and echoes every byte back for as long as the
// peer keeps the connection open (no deadline: streams stay up for minutes). It serves until ctx
// ends, closing the listener and every connection.
func ListenTCPEcho(ctx context.Context, addr string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen on TCP echo port %d: %w", port, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				stop := context.AfterFunc(ctx, func() { c.Close() })
				defer stop()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return nil
}
