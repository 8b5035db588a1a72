package observer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starlab-dev/starlab/internal/flow"
)

// BenchmarkPipelineRate: the agent -> observer -> follow client part of the flow pipeline in one
// process, at a fixed input rate: an agent's flow store and HTTP API (flow.Handler, NDJSON), the real
// Observer (peer stream, merge, store, graph, metrics) and a follow client of its /api/v1/flows
// decoding every line. It reports what each stage passed on per second and what each lost; cores is
// the process's CPU time (user+sys) per wall second, all stages together. The ring buffer stage is
// BenchmarkRingbufDrain (datapath/flowevent, -tags datapath); the lab measures the whole path
// (BenchmarkFlowThroughput, -tags e2e).
func BenchmarkPipelineRate(b *testing.B) {
	for _, rate := range []int{10000, 50000, 100000} {
		b.Run(fmt.Sprintf("%dk", rate/1000), func(b *testing.B) {
			for b.Loop() {
				pipelineRate(b, rate, 5*time.Second)
			}
		})
	}
}

func pipelineRate(b *testing.B, rate int, d time.Duration) {
	agentStore := flow.NewStore(100000)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/flows", flow.Handler(agentStore, nil))
	agent := httptest.NewServer(mux)
	defer agent.Close()
	obs, err := New(Config{StatusEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); obs.Wait() }()
	obs.Start(ctx)
	srv := httptest.NewServer(obs.Handler())
	defer srv.Close()
	if err := obs.SetAgent("node-1", strings.TrimPrefix(agent.URL, "http://"), ""); err != nil {
		b.Fatal(err)
	}
	for agentStore.Subscribers() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	received := make(chan uint64, 1)
	var clientN uint64
	go func() {
		c := &Client{Base: srv.URL}
		_ = c.Flows(ctx, flow.Query{Follow: true, NoHistory: true}, func(*flow.Flow) error {
			clientN++
			return nil
		})
		received <- clientN
	}()
	for obs.Store().Subscribers() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// The flows an agent enriches: a few hundred pods, distinct UUIDs and ports.
	pre := make([]*flow.Flow, 0, 4096)
	for i := range cap(pre) {
		pre = append(pre, benchPodFlow(i))
	}
	cpu0 := cpuTime()
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	for time.Since(start) < d {
		owed := int(time.Since(start).Seconds()*float64(rate)) - sent
		for ; owed > 0; owed-- {
			f := *pre[sent%len(pre)]
			f.Time = time.Now()
			f.UUID = fmt.Sprintf("8a3f2c10-0000-4e1b-9c7d-%012x", sent)
			agentStore.Add(&f)
			sent++
		}
		<-tick.C
	}
	tick.Stop()
	wall := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for obs.Store().Total() < uint64(sent)-agentStore.Lost() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the follow client reads the tail
	cores := (cpuTime() - cpu0).Seconds() / time.Since(start).Seconds()
	cancel()
	srv.CloseClientConnections()
	got := <-received
	per := func(n uint64) float64 { return float64(n) / wall.Seconds() }
	b.ReportMetric(per(uint64(sent)), "agent-flows/s")
	b.ReportMetric(per(obs.Store().Total()), "observer-flows/s")
	b.ReportMetric(per(got), "client-flows/s")
	b.ReportMetric(float64(agentStore.Lost()), "lost-agent-subscriber")
	b.ReportMetric(float64(obs.Store().Lost()), "lost-observer-subscriber")
	b.ReportMetric(cores, "cores")
}

func benchPodFlow(i int) *flow.Flow {
	src := fmt.Sprintf("10.244.1.%d", 2+i%200)
	dst := fmt.Sprintf("10.244.1.%d", 2+(i*7)%200)
	return &flow.Flow{Verdict: flow.VerdictForwarded, EventType: flow.EventNew, NodeName: "node-1",
		IP: flow.IP{Source: src, Destination: dst},
		L4: flow.L4{Protocol: flow.ProtoUDP, SourcePort: uint16(32768 + i), DestinationPort: uint16(9000 + i%64)},
		Source: flow.Endpoint{Identity: uint32(256 + i%200), Namespace: fmt.Sprintf("ns-%d", i%50), PodName: fmt.Sprintf("load-%d", i%200), IP: src,
			Labels: []string{"k8s:app=load", fmt.Sprintf("k8s:io.kubernetes.pod.namespace=ns-%d", i%50)}, Workload: &flow.Workload{Name: "load", Kind: "Deployment"}},
		Destination: flow.Endpoint{Identity: uint32(256 + (i*7)%200), Namespace: fmt.Sprintf("ns-%d", (i*7)%50), PodName: fmt.Sprintf("load-%d", (i*7)%200), IP: dst,
			Labels: []string{"k8s:app=load"}},
		TrafficDirection: flow.DirectionIngress, TraceObservationPoint: flow.ObsToEndpoint,
		AllowedBy: []flow.Policy{{Kind: flow.PolicyKindNetworkPolicy, Namespace: "ns-1", Name: "allow-load"}}}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
