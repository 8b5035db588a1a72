package flowevent

import "testing"

// BenchmarkDecode: one ring-buffer record into an Event (the agent's per-event cost before enrichment).
func BenchmarkDecode(b *testing.B) {
	buf := make([]byte, Size)
	var e Event
	for b.Loop() {
		if err := Decode(buf, &e); err != nil {
			b.Fatal(err)
		}
	}
}
