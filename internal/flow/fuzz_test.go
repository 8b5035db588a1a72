package flow

import (
	"bytes"
	"errors"
	"io"
	"reflect"
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

// FuzzWireDecoder: any byte stream decodes to flows or an error (no panic, no allocation beyond the
// record's bounds), and what decodes re-encodes to a stream that decodes to the same flows.
func FuzzWireDecoder(f *testing.F) {
	var buf bytes.Buffer
	enc := NewWireEncoder(&buf)
	for _, fl := range wireCases() {
		_ = enc.Encode(fl)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(wireMagic))
	f.Add(append([]byte(wireMagic), 3, wireZeroTime, 2, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := NewWireDecoder(bytes.NewReader(data))
		var flows []*Flow
		for range 1000 {
			fl, err := dec.Decode()
			if err != nil {
				break
			}
			flows = append(flows, fl)
		}
		var out bytes.Buffer
		enc := NewWireEncoder(&out)
		for _, fl := range flows {
			if err := enc.Encode(fl); err != nil {
				t.Fatalf("re-encode decoded flow: %v", err)
			}
		}
		again := NewWireDecoder(&out)
		for i, fl := range flows {
			got, err := again.Decode()
			if err != nil {
				t.Fatalf("decode re-encoded flow %d: %v", i, err)
			}
			if !reflect.DeepEqual(fl, got) {
				t.Fatalf("round trip changed flow %d:\n%+v\n%+v", i, fl, got)
			}
		}
	})
}
