package observer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/starlab-dev/starlab/internal/flow"
	"github.com/starlab-dev/starlab/internal/hubbleapi"
)

// followServeEnv makes the test binary the server of BenchmarkFollowClient (TestMain): it fills one
// flow store with that many flows and serves it over both APIs.
const followServeEnv = "STARLAB_FOLLOWBENCH_SERVE"

func TestMain(m *testing.M) {
	if n := os.Getenv(followServeEnv); n != "" {
		if err := serveFollowBench(n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveFollowBench fills a store with n flows, serves it as the observer does (flow.Handler on
// /api/v1/flows, hubbleapi.Server), prints "ready <http addr> <grpc addr> <CPU ns spent filling>" and
// serves until stdin closes.
func serveFollowBench(n string) error {
	count, err := strconv.Atoi(n)
	if err != nil || count <= 0 {
		return fmt.Errorf("%s=%q: a number of flows > 0", followServeEnv, n)
	}
	store := flow.NewStore(count)
	t0 := time.Now().Add(-time.Hour)
	for i := range count {
		f := benchFollowFlow(i)
		f.Time = t0.Add(time.Duration(i) * time.Microsecond)
		store.Add(f)
	}
	fill := cpuTime()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+PathFlows, flow.Handler(store, nil))
	go func() { _ = http.Serve(hl, mux) }()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	g := grpc.NewServer()
	hubbleapi.NewServer(store, nil, nil, "bench").Register(g)
	go func() { _ = g.Serve(gl) }()
	fmt.Printf("ready %s %s %d\n", hl.Addr(), gl.Addr(), fill.Nanoseconds())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// benchFollowFlow is benchPodFlow with what real traffic adds: every third flow through a Service
// (orig destination: Flow.extensions over gRPC), every fourth a close with counters.
func benchFollowFlow(i int) *flow.Flow {
	f := benchPodFlow(i)
	f.UUID = fmt.Sprintf("8a3f2c10-0000-4e1b-9c7d-%012x", i)
	if i%3 == 0 {
		f.DestinationService = &flow.Service{Name: "load", Namespace: f.Destination.Namespace}
		f.IP.OrigDestination, f.L4.OrigDestinationPort = "10.96.0.42", 8080
	}
	if i%4 == 3 {
		f.EventType, f.Packets, f.Bytes = flow.EventClose, uint64(2+i%10), uint64(200+i%1000)
	}
	return f
}

// BenchmarkFollowClient: one follow client consuming N flows from one store, over the observer's
// HTTP API (the binary wire form, and NDJSON with the goccy decoder: observer.Client) and over
// Hubble's gRPC API (protobuf, FromProto: hubbleapi.Client), the query `starlab observe --follow --since <before the buffer>` makes. The
// server is this test binary in another process, so the process CPU and allocations measured here are
// the client's alone; the server's CPU per flow is read from its rusage at exit. One op is N flows.
func BenchmarkFollowClient(b *testing.B) {
	const n = 100000
	for _, transport := range []string{"wire", "ndjson", "grpc"} {
		b.Run(transport, func(b *testing.B) {
			httpAddr, grpcAddr, stop := startFollowServer(b, n)
			var follow func(ctx context.Context, q flow.Query, emit func(*flow.Flow) error) error
			switch transport {
			case "wire":
				follow = (&Client{Base: "http://" + httpAddr}).Flows
			case "ndjson":
				follow = (&Client{Base: "http://" + httpAddr, NDJSON: true}).Flows
			case "grpc":
				conn, err := hubbleapi.Dial(grpcAddr)
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				follow = (&hubbleapi.Client{Conn: conn}).Flows
			}
			q := flow.Query{Follow: true, Since: time.Now().Add(-2 * time.Hour)}
			errEnough := errors.New("N flows read")
			var flows, bytes uint64
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0, start := cpuTime(), time.Now()
			for b.Loop() {
				got := 0
				err := follow(context.Background(), q, func(f *flow.Flow) error {
					got++
					bytes += uint64(len(f.UUID)) // touch the flow
					if got == n {
						return errEnough
					}
					return nil
				})
				if !errors.Is(err, errEnough) {
					b.Fatalf("%s: %d of %d flows, then %v", transport, got, n, err)
				}
				flows += uint64(got)
			}
			wall, cpu := time.Since(start), cpuTime()-cpu0
			runtime.ReadMemStats(&ms1)
			serverCPU := stop()
			b.ReportMetric(float64(flows)/wall.Seconds(), "flows/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(flows), "client-us/flow")
			b.ReportMetric(cpu.Seconds()/wall.Seconds(), "client-cores")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(flows), "client-allocs/flow")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(flows), "client-B/flow")
			b.ReportMetric(float64(serverCPU.Microseconds())/float64(flows), "server-us/flow")
		})
	}
}

// startFollowServer runs serveFollowBench with n flows in a child process and returns its
// addresses and a stop that ends it and returns the CPU it spent serving (after filling the store).
func startFollowServer(b *testing.B, n int) (httpAddr, grpcAddr string, stop func() time.Duration) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), followServeEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	fields := strings.Fields(line)
	if err != nil || len(fields) != 4 || fields[0] != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.Fatalf("follow bench server: %q, %v", line, err)
	}
	fillNs, _ := strconv.ParseInt(fields[3], 10, 64)
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("follow bench server: %v", err)
			return 0
		}
		st := cmd.ProcessState
		return st.UserTime() + st.SystemTime() - time.Duration(fillNs)
	}
	b.Cleanup(func() { stop() })
	return fields[1], fields[2], stop
}
