package flow

import (
	"bufio"
	"bytes"
	"fmt"
	json "github.com/goccy/go-json"
	"io"
)

// MaxLineBytes bounds one NDJSON line; a longer line is an error, not an allocation.
const MaxLineBytes = 1 << 20

// Encoder writes flows as NDJSON: one JSON object per line.
type Encoder struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

// NewEncoder returns an NDJSON encoder writing to w.
func NewEncoder(w io.Writer) *Encoder {
	e := &Encoder{w: w}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}

// Encode writes one flow and its newline.
func (e *Encoder) Encode(f *Flow) error {
	e.buf.Reset()
	if err := e.enc.Encode(f); err != nil { // json.Encoder appends the '\n'
		return fmt.Errorf("encode flow %s: %w", f.UUID, err)
	}
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return fmt.Errorf("write flow %s: %w", f.UUID, err)
	}
	return nil
}

// Decoder reads NDJSON flows. Blank lines are skipped; a bad line is an error naming its line number.
type Decoder struct {
	sc   *bufio.Scanner
	line int
}

// NewDecoder returns an NDJSON decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineBytes)
	return &Decoder{sc: sc}
}

// Decode reads the next flow; it returns io.EOF at the end of the input.
func (d *Decoder) Decode() (*Flow, error) {
	for d.sc.Scan() {
		d.line++
		b := bytes.TrimSpace(d.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if b[0] != '{' {
			return nil, fmt.Errorf("ndjson line %d: want a JSON object per line, got %q", d.line, truncate(b, 40))
		}
		f := &Flow{}
		if err := json.Unmarshal(b, f); err != nil {
			return nil, fmt.Errorf("ndjson line %d: %w", d.line, err)
		}
		return f, nil
	}
	if err := d.sc.Err(); err != nil {
		return nil, fmt.Errorf("ndjson line %d: %w", d.line+1, err)
	}
	return nil, io.EOF
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
