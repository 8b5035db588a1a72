package flow

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchFlow is a realistic flow: distinct strings per flow (as decoded from an agent stream), labels,
// workload, service and a deciding policy.
func benchFlow(i int, t time.Time) *Flow {
	f := &Flow{
		Time: t, UUID: fmt.Sprintf("8a3f2c10-%04x-4e1b-9c7d-%012x", i%65536, i), Verdict: VerdictForwarded, EventType: EventNew,
		IP: IP{Source: fmt.Sprintf("10.244.%d.%d", i%3, i%250+2), Destination: fmt.Sprintf("10.244.%d.%d", (i+1)%3, i%200+2)},
		L4: L4{Protocol: ProtoTCP, SourcePort: uint16(32768 + i%28000), DestinationPort: 6379, Flags: &TCPFlags{SYN: true}},
		Source: Endpoint{Identity: uint32(256 + i%40), Namespace: fmt.Sprintf("ns-%d", i%8), PodName: fmt.Sprintf("client-%d-7d9f8", i%50),
			Labels: []string{fmt.Sprintf("role=client-%d", i%5), "app=stars"}, Workload: &Workload{Name: fmt.Sprintf("client-%d", i%5), Kind: "Deployment"}},
		Destination: Endpoint{Identity: 300, Namespace: "stars", PodName: fmt.Sprintf("backend-%d-abc", i%3), Labels: []string{"role=backend"},
			Workload: &Workload{Name: "backend", Kind: "Deployment"}},
		NodeName: fmt.Sprintf("starlab-worker%d", i%3), DestinationService: &Service{Name: "backend", Namespace: "stars"},
		TrafficDirection: DirectionIngress, TraceObservationPoint: ObsToEndpoint,
		AllowedBy: []Policy{{Kind: PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow-client"}},
	}
	if i%100 == 0 {
		f.Verdict, f.EventType, f.DropReasonDesc, f.AllowedBy = VerdictDropped, EventDrop, DropPolicyDenied, nil
		f.DeniedBy = []Policy{{Kind: PolicyKindDefaultDeny}}
	}
	f.Source.IP, f.Destination.IP = f.IP.Source, f.IP.Destination
	return f
}

// BenchmarkPipeline: flows/s end to end: three time-ordered node streams -> Merge -> Store.Add ->
// a following HTTP client (Handler, NDJSON over loopback, decoded). One op is one flow.
func BenchmarkPipeline(b *testing.B) {
	const nodes = 3
	base := time.Now()
	pre := make([][]*Flow, nodes)
	for n := range nodes {
		for i := n; i < b.N+nodes; i += nodes {
			pre[n] = append(pre[n], benchFlow(i, base.Add(time.Duration(i)*time.Microsecond)))
		}
	}
	store := NewStore(100000)
	srv := httptest.NewServer(Handler(store, nil))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?follow=true&no-history=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	for store.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	received := make(chan int, 1)
	var got atomic.Int64
	go func() {
		dec := NewDecoder(resp.Body)
		n := 0
		for n < b.N {
			if _, err := dec.Decode(); err != nil {
				break
			}
			n++
			got.Store(int64(n))
		}
		received <- n
	}()
	b.ResetTimer()
	start := time.Now()
	streams := make([]<-chan *Flow, nodes)
	for n := range nodes {
		c := make(chan *Flow, 1024)
		streams[n] = c
		go func(fs []*Flow) {
			defer close(c)
			for _, f := range fs {
				c <- f
			}
		}(pre[n])
	}
	sent := 0
	for f := range Merge(ctx, 0, streams...) {
		if sent == b.N {
			continue
		}
		// Keep the follower within its subscription buffer: this measures throughput, not loss.
		for int64(sent)-got.Load() >= SubscriberBuffer/2 {
			runtime.Gosched()
		}
		store.Add(f)
		sent++
	}
	n := <-received
	elapsed := time.Since(start)
	b.StopTimer()
	if n != b.N {
		b.Fatalf("follower got %d of %d flows (lost %d)", n, b.N, store.Lost())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "flows/s")
	b.ReportMetric(float64(store.Lost()), "lost")
}

// BenchmarkStoreMemory: heap held by a store buffering 100k realistic flows. One op fills one store.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 100000
	base := time.Now()
	var perFlow float64
	for range b.N {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		s := NewStore(n)
		for i := range n {
			s.Add(benchFlow(i, base.Add(time.Duration(i))))
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perFlow = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
		b.StartTimer()
	}
	b.ReportMetric(perFlow, "B/flow")
	b.ReportMetric(perFlow*n/(1<<20), "MiB/100k")
}

// BenchmarkQuery100k: latency of queries over a full 100k store. One op is one query.
func BenchmarkQuery100k(b *testing.B) {
	const n = 100000
	base := time.Now()
	s := NewStore(n)
	for i := range n {
		s.Add(benchFlow(i, base.Add(time.Duration(i)*time.Microsecond)))
	}
	for _, tc := range []struct {
		name string
		q    Query
	}{
		{"last20-nofilter", Query{Last: 20}},
		{"last20-dropped", Query{Last: 20, Allow: []Filter{{Verdict: []Verdict{VerdictDropped}}}}},
		{"all-dropped-from-ns", Query{Allow: []Filter{{Verdict: []Verdict{VerdictDropped}, SourceNamespace: []string{"ns-0"}}}}},
		{"all-label-selector", Query{Allow: []Filter{{SourceLabel: []string{"role in (client-1,client-2)"}, DestinationPort: []uint16{6379}}}, Deny: []Filter{{NodeName: []string{"starlab-worker0"}}}}},
		{"all-cidr", Query{Allow: []Filter{{SourceIP: []string{"10.244.1.0/24"}}}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			matched := 0
			for b.Loop() {
				matched = 0
				if err := s.Query(context.Background(), tc.q, func(*Flow) error { matched++; return nil }, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(matched), "matched")
		})
	}
}

// BenchmarkMergeStore: flows/s through the strict three-way Merge into Store.Add (no HTTP, no JSON).
func BenchmarkMergeStore(b *testing.B) {
	const nodes = 3
	base := time.Now()
	pre := make([][]*Flow, nodes)
	for i := range b.N {
		pre[i%nodes] = append(pre[i%nodes], benchFlow(i, base.Add(time.Duration(i)*time.Microsecond)))
	}
	store := NewStore(100000)
	b.ResetTimer()
	start := time.Now()
	streams := make([]<-chan *Flow, nodes)
	for n := range nodes {
		c := make(chan *Flow, 1024)
		streams[n] = c
		go func(fs []*Flow) {
			defer close(c)
			for _, f := range fs {
				c <- f
			}
		}(pre[n])
	}
	for f := range Merge(context.Background(), 0, streams...) {
		store.Add(f)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "flows/s")
}

// BenchmarkNDJSONEncode: encoding one realistic flow as an NDJSON line.
func BenchmarkNDJSONEncode(b *testing.B) {
	f := benchFlow(1, time.Now())
	enc := NewEncoder(io.Discard)
	for b.Loop() {
		if err := enc.Encode(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNDJSONDecode: decoding one NDJSON line from a stream.
func BenchmarkNDJSONDecode(b *testing.B) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	for i := range b.N {
		_ = enc.Encode(benchFlow(i, time.Now()))
	}
	b.SetBytes(int64(buf.Len() / b.N))
	dec := NewDecoder(&buf)
	b.ResetTimer()
	for range b.N {
		if _, err := dec.Decode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWireEncode: encoding one flow in the binary wire form (its strings already in the dictionary).
func BenchmarkWireEncode(b *testing.B) {
	f := benchFlow(1, time.Now())
	enc := NewWireEncoder(io.Discard)
	for b.Loop() {
		if err := enc.Encode(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWireDecode: decoding one flow of a wire stream of distinct flows (as BenchmarkNDJSONDecode).
func BenchmarkWireDecode(b *testing.B) {
	var buf bytes.Buffer
	enc := NewWireEncoder(&buf)
	for i := range b.N {
		_ = enc.Encode(benchFlow(i, time.Now()))
	}
	b.SetBytes(int64(buf.Len() / b.N))
	dec := NewWireDecoder(&buf)
	b.ResetTimer()
	for range b.N {
		if _, err := dec.Decode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreAddTimeOrder measures Store.Add into a full 100k store that keeps time order: flows in
// time order (O(1)), and a stream where every 100th flow is 5 s late at 1,000 flows/s (it moves back
// past 5,000 newer flows), as after an agent reconnect.
func BenchmarkStoreAddTimeOrder(b *testing.B) {
	const capacity = 100000
	for _, tc := range []struct {
		name      string
		lateEvery int
	}{{"in-order", 0}, {"1pct-5s-late", 100}} {
		b.Run(tc.name, func(b *testing.B) {
			base := time.Unix(1_800_000_000, 0)
			flows := make([]*Flow, 4096)
			for i := range flows {
				flows[i] = benchFlow(i, base)
			}
			s := NewStore(capacity)
			for i := range capacity {
				f := *flows[i%len(flows)]
				f.Time = base.Add(time.Duration(i) * time.Millisecond)
				s.Add(&f)
			}
			adds := make([]Flow, b.N)
			for i := range adds {
				adds[i] = *flows[i%len(flows)]
				adds[i].Time = base.Add(time.Duration(capacity+i) * time.Millisecond)
				if tc.lateEvery > 0 && i%tc.lateEvery == 0 {
					adds[i].Time = adds[i].Time.Add(-5 * time.Second)
				}
			}
			b.ResetTimer()
			for i := range adds {
				s.Add(&adds[i])
			}
		})
	}
}

// BenchmarkSubscriberReadsRing: a follower that fell a whole ring (131,072 flows, the agent's default)
// behind reads it back: the cost per flow of reading from the ring instead of its channel.
func BenchmarkSubscriberReadsRing(b *testing.B) {
	const ring = 131072
	flows := make([]*Flow, ring)
	for i := range flows {
		flows[i] = benchFlow(i, t0.Add(time.Duration(i)*time.Microsecond))
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := NewStore(ring)
		sub := s.Subscribe(nil, 1)
		for _, f := range flows {
			s.Add(f)
		}
		b.StartTimer()
		for range ring {
			if _, err := sub.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
		sub.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ring), "ns/flow")
}
