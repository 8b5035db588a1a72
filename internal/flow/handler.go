package flow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Source answers flow queries; *Store is one.
type Source interface {
	Query(ctx context.Context, q Query, emit func(*Flow) error, flush func()) error
}

// streamBuffer is how many bytes of a flow stream Handler batches into one write (~90 flows).
const streamBuffer = 64 << 10

// ContentType is the media type of a flow stream.
const ContentType = "application/x-ndjson"

// Handler serves `GET ?follow=&last=&since=&until=&<filters>` from src as NDJSON, or in the binary
// wire form to a client whose Accept header names WireContentType, flushing after the buffered
// flows and whenever the followed stream is idle. Bad parameters get 400 with the reason.
func Handler(src Source, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		q, err := ParseQuery(r.URL.Query(), time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		wire := AcceptsWire(r.Header.Get("Accept"))
		if wire {
			w.Header().Set("Content-Type", WireContentType)
		} else {
			w.Header().Set("Content-Type", ContentType)
		}
		w.Header().Set("Vary", "Accept")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		rc := http.NewResponseController(w)
		// net/http buffers 4 KiB, a write (and a TLS record) every few flows; a stream at 50,000
		// flows/s spent most of its CPU in those syscalls. Batch up to streamBuffer between flushes.
		bw := bufio.NewWriterSize(w, streamBuffer)
		var enc interface{ Encode(*Flow) error } = NewEncoder(bw)
		if wire {
			enc = NewWireEncoder(bw)
		}
		n := 0
		err = src.Query(r.Context(), q, func(f *Flow) error {
			n++
			return enc.Encode(f)
		}, func() {
			if bw.Flush() == nil {
				_ = rc.Flush()
			}
		})
		if ferr := bw.Flush(); err == nil && ferr != nil {
			err = ferr
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			log.Debug("flow stream ended", "remote", r.RemoteAddr, "flows", n, "err", err)
		}
	})
}

// AcceptsWire reports whether an Accept header asks for WireContentType.
func AcceptsWire(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		if mt, _, err := mime.ParseMediaType(part); err == nil && mt == WireContentType {
			return true
		}
	}
	return false
}

// StreamDecoder decodes a flow stream flow by flow; Decode returns io.EOF at its end.
type StreamDecoder interface {
	Decode() (*Flow, error)
}

// NewStreamDecoder returns the decoder of a flow stream answered with Content-Type contentType:
// the wire form for WireContentType, else NDJSON (whose decoder names a line that is not a flow).
func NewStreamDecoder(contentType string, r io.Reader) StreamDecoder {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == WireContentType {
		return NewWireDecoder(r)
	}
	return NewDecoder(r)
}

// ReadStream sends each flow decoded from a flow stream to out until EOF (it returns nil), a decode
// error, or ctx ends. It does not close out.
func ReadStream(ctx context.Context, dec StreamDecoder, out chan<- *Flow) error {
	for {
		f, err := dec.Decode()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read flow stream: %w", err)
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
