package hubbleapi

import (
	"bytes"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/proto"

	"github.com/starlab-dev/starlab/internal/flow"
)

// BenchmarkWire compares the two encodings a follow client can read, for one realistic flow (labels,
// workload, service, a deciding policy): Hubble's Flow message (protobuf, as GetFlows sends it) and
// Starlab's NDJSON line. One op is one flow.
func BenchmarkWire(b *testing.B) {
	f := sampleFlows()[0]
	f.UUID = "8a3f2c10-0001-4e1b-9c7d-000000000001"
	f.Source.Labels = []string{"k8s:app=stars", "k8s:io.kubernetes.pod.namespace=stars", "k8s:role=frontend"}
	f.Source.IP, f.Destination.IP = f.IP.Source, f.IP.Destination
	pb, err := proto.Marshal(ToProto(f, "bench"))
	if err != nil {
		b.Fatal(err)
	}
	var line bytes.Buffer
	if err := flow.NewEncoder(&line).Encode(f); err != nil {
		b.Fatal(err)
	}
	b.Run("protobuf-encode", func(b *testing.B) {
		b.ReportMetric(float64(len(pb)), "bytes/flow")
		for b.Loop() {
			if _, err := proto.Marshal(ToProto(f, "bench")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protobuf-decode", func(b *testing.B) {
		for b.Loop() {
			var m flowpb.Flow
			if err := proto.Unmarshal(pb, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ndjson-encode", func(b *testing.B) {
		b.ReportMetric(float64(line.Len()), "bytes/flow")
		var out bytes.Buffer
		enc := flow.NewEncoder(&out)
		for b.Loop() {
			out.Reset()
			if err := enc.Encode(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ndjson-decode", func(b *testing.B) {
		lines := bytes.Repeat(line.Bytes(), 1024)
		var dec *flow.Decoder
		n := 0
		for b.Loop() {
			if n%1024 == 0 {
				dec = flow.NewDecoder(bytes.NewReader(lines))
			}
			n++
			if _, err := dec.Decode(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
