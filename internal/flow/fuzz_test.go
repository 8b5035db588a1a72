package flow

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecoder: any input either decodes to flows that re-encode and decode to the same values, or
// returns an error; it never panics.
func FuzzDecoder(f *testing.F) {
	var buf bytes.Buffer
	_ = NewEncoder(&buf).Encode(sample())
	f.Add(buf.Bytes())
	f.Add([]byte("{}\n\n{\"verdict\":\"DROPPED\"}\n"))
	f.Add([]byte("{\"l4\":{\"flags\":{\"SYN\":true}}}"))
	f.Add([]byte("[]"))
	f.Add([]byte("{\"time\":\"bad\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := NewDecoder(bytes.NewReader(data))
		for range 1000 {
			fl, err := dec.Decode()
			if errors.Is(err, io.EOF) || err != nil {
				return
			}
			var out bytes.Buffer
			if err := NewEncoder(&out).Encode(fl); err != nil {
				t.Fatalf("re-encode decoded flow: %v", err)
			}
			again, err := NewDecoder(&out).Decode()
			if err != nil {
				t.Fatalf("decode re-encoded flow %q: %v", out.String(), err)
			}
			var a, b bytes.Buffer
			_ = NewEncoder(&a).Encode(fl)
			_ = NewEncoder(&b).Encode(again)
			if a.String() != b.String() {
				t.Fatalf("round trip changed the flow:\n%s\n%s", a.String(), b.String())
			}
		}
	})
}
