package flow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sample is a denied TCP connection from stars/client to management-ui's backend on port 6379.
func sample() *Flow {
	return &Flow{
		Time:           t0,
		UUID:           "u1",
		Verdict:        VerdictDropped,
		EventType:      EventDrop,
		DropReasonDesc: DropPolicyDenied,
		IP:             IP{Source: "10.244.1.5", Destination: "10.244.2.7", OrigDestination: "10.96.0.10"},
		L4:             L4{Protocol: ProtoTCP, SourcePort: 40000, DestinationPort: 6379, OrigDestinationPort: 80, Flags: &TCPFlags{SYN: true}},
		Source: Endpoint{Identity: 256, Namespace: "client", PodName: "client-7d9f", Labels: []string{"role=client", "k8s:tier=edge"},
			Workload: &Workload{Name: "client", Kind: "Deployment"}, IP: "10.244.1.5"},
		Destination:           Endpoint{Identity: 300, Namespace: "stars", PodName: "backend-abc", Labels: []string{"role=backend"}, IP: "10.244.2.7"},
		NodeName:              "starlab-worker2",
		DestinationService:    &Service{Name: "backend", Namespace: "stars"},
		TrafficDirection:      DirectionIngress,
		TraceObservationPoint: ObsToEndpoint,
		DeniedBy:              []Policy{{Kind: PolicyKindDefaultDeny}, {Kind: PolicyKindNetworkPolicy, Namespace: "stars", Name: "default-deny"}},
	}
}

func TestFilterMatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter Filter
		want   bool
	}{
		{"empty matches", Filter{}, true},
		{"source pod ns/prefix", Filter{SourcePod: []string{"client/client-"}}, true},
		{"source pod prefix any ns", Filter{SourcePod: []string{"client"}}, true},
		{"source pod wrong ns", Filter{SourcePod: []string{"stars/client"}}, false},
		{"destination pod", Filter{DestinationPod: []string{"stars/backend"}}, true},
		{"pod either side", Filter{Pod: []string{"backend"}}, true},
		{"pod values ORed", Filter{SourcePod: []string{"nope", "client"}}, true},
		{"namespace source", Filter{SourceNamespace: []string{"client"}}, true},
		{"namespace dest mismatch", Filter{DestinationNamespace: []string{"client"}}, false},
		{"namespace either", Filter{Namespace: []string{"stars"}}, true},
		{"label eq", Filter{SourceLabel: []string{"role=client"}}, true},
		{"label k8s: prefix", Filter{SourceLabel: []string{"tier=edge"}}, true},
		{"label neq", Filter{SourceLabel: []string{"role!=client"}}, false},
		{"label in", Filter{DestinationLabel: []string{"role in (frontend,backend)"}}, true},
		{"label notin", Filter{DestinationLabel: []string{"role notin (backend)"}}, false},
		{"label exists", Filter{Label: []string{"tier"}}, true},
		{"label not exists", Filter{SourceLabel: []string{"!tier"}}, false},
		{"label AND inside selector", Filter{SourceLabel: []string{"role=client,tier=core"}}, false},
		{"service dest ns/name", Filter{DestinationService: []string{"stars/backend"}}, true},
		{"service any side", Filter{Service: []string{"backend"}}, true},
		{"service source missing", Filter{SourceService: []string{"backend"}}, false},
		{"ip exact", Filter{SourceIP: []string{"10.244.1.5"}}, true},
		{"ip cidr", Filter{DestinationIP: []string{"10.244.2.0/24"}}, true},
		{"ip cidr miss", Filter{DestinationIP: []string{"10.244.1.0/24"}}, false},
		{"ip either", Filter{IP: []string{"10.244.1.0/24"}}, true},
		{"port dest", Filter{DestinationPort: []uint16{6379}}, true},
		{"port either", Filter{Port: []uint16{40000}}, true},
		{"port miss", Filter{Port: []uint16{80}}, false},
		{"protocol", Filter{Protocol: []string{"tcp"}}, true},
		{"protocol miss", Filter{Protocol: []string{"UDP"}}, false},
		{"verdict", Filter{Verdict: []Verdict{VerdictDropped}}, true},
		{"verdict miss", Filter{Verdict: []Verdict{VerdictForwarded}}, false},
		{"drop reason", Filter{DropReason: []string{DropPolicyDenied}}, true},
		{"direction", Filter{TrafficDirection: []TrafficDirection{DirectionEgress}}, false},
		{"node", Filter{NodeName: []string{"starlab-worker2"}}, true},
		{"identity", Filter{DestinationIdentity: []uint32{300}}, true},
		{"identity either miss", Filter{Identity: []uint32{2}}, false},
		{"event type", Filter{EventType: []EventType{EventDrop}}, true},
		{"workload ns/name", Filter{SourceWorkload: []string{"client/client"}}, true},
		{"workload name any ns", Filter{Workload: []string{"client"}}, true},
		{"workload missing", Filter{DestinationWorkload: []string{"backend"}}, false},
		{"tcp flags set", Filter{TCPFlags: []string{"syn"}}, true},
		{"tcp flags all must be set", Filter{TCPFlags: []string{"SYN,ACK"}}, false},
		{"tcp flags ORed", Filter{TCPFlags: []string{"SYN,ACK", "SYN"}}, true},
		{"whole namespace as pod ref (hubble --namespace)", Filter{SourcePod: []string{"client/"}}, true},
		{"whole other namespace as pod ref", Filter{SourcePod: []string{"stars/"}}, false},
		{"not a reply", Filter{Reply: []bool{false}}, true},
		{"replies only", Filter{Reply: []bool{true}}, false},
		{"fields ANDed all match", Filter{SourceNamespace: []string{"client"}, Verdict: []Verdict{VerdictDropped}, DestinationPort: []uint16{6379}}, true},
		{"fields ANDed one fails", Filter{SourceNamespace: []string{"client"}, Verdict: []Verdict{VerdictForwarded}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMatcher([]Filter{tc.filter}, nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.Match(sample()))
		})
	}
}

func TestMatcherAllowDeny(t *testing.T) {
	f := sample()
	for _, tc := range []struct {
		name        string
		allow, deny []Filter
		want        bool
	}{
		{"no filters", nil, nil, true},
		{"allow list ORed", []Filter{{Verdict: []Verdict{VerdictForwarded}}, {Namespace: []string{"stars"}}}, nil, true},
		{"allow list none", []Filter{{Verdict: []Verdict{VerdictForwarded}}, {Namespace: []string{"kube-system"}}}, nil, false},
		{"deny wins", []Filter{{Namespace: []string{"stars"}}}, []Filter{{Verdict: []Verdict{VerdictDropped}}}, false},
		{"deny not matching", nil, []Filter{{Verdict: []Verdict{VerdictForwarded}}}, true},
		{"deny list ORed", nil, []Filter{{Port: []uint16{1}}, {DestinationPort: []uint16{6379}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewMatcher(tc.allow, tc.deny)
			require.NoError(t, err)
			assert.Equal(t, tc.want, m.Match(f))
		})
	}
}

func TestFilterCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		filter Filter
		want   string
	}{
		{Filter{Verdict: []Verdict{"NOPE"}}, "use one of FORWARDED"},
		{Filter{DropReason: []string{"X"}}, "POLICY_DENIED"},
		{Filter{SourceIP: []string{"10.0.0.300"}}, "use an address"},
		{Filter{SourceLabel: []string{"a in ("}}, "label selector"},
		{Filter{Pod: []string{"/frontend"}}, "[namespace/]pod-name-prefix"},
		{Filter{Protocol: []string{"gre"}}, "TCP, UDP"},
		{Filter{TCPFlags: []string{"SYN,NOPE"}}, "flag names from SYN"},
	} {
		_, err := NewMatcher([]Filter{tc.filter}, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func TestParseQueryURL(t *testing.T) {
	v := url.Values{}
	v.Add("from-namespace", "client")
	v.Add("verdict", "dropped")
	v.Add("to-port", "6379")
	v.Add("not-to-pod", "stars/frontend")
	v.Set("last", "5")
	v.Set("since", "1m")
	q, err := ParseQuery(v, t0)
	require.NoError(t, err)
	require.Len(t, q.Allow, 1)
	assert.Equal(t, []string{"client"}, q.Allow[0].SourceNamespace)
	assert.Equal(t, []Verdict{VerdictDropped}, q.Allow[0].Verdict)
	assert.Equal(t, []uint16{6379}, q.Allow[0].DestinationPort)
	require.Len(t, q.Deny, 1)
	assert.Equal(t, []string{"stars/frontend"}, q.Deny[0].DestinationPod)
	assert.Equal(t, 5, q.Last)
	assert.Equal(t, t0.Add(-time.Minute), q.Since)

	// Values round-trips through ParseQuery.
	q2, err := ParseQuery(q.Values(), t0)
	require.NoError(t, err)
	assert.Equal(t, q.Allow, q2.Allow)
	assert.Equal(t, q.Deny, q2.Deny)
	assert.Equal(t, q.Last, q2.Last)
	assert.True(t, q.Since.Equal(q2.Since))

	for _, tc := range []struct {
		query, want string
	}{
		{"verdict=FOO", "query parameter verdict: verdict \"FOO\": use one of FORWARDED"},
		{"bogus=1", "unknown query parameter \"bogus\""},
		{"last=-1", "last=\"-1\""},
		{"follow=maybe", "follow=\"maybe\""},
		{"since=yesterday", "query parameter since"},
		{"follow=true&until=1m", "until cannot be combined with follow"},
		{"to-port=0", "use a number from 1 to 65535"},
		{"allow=%7Bnope", "JSON flow filter"},
		{"traffic-direction=sideways", "use ingress or egress"},
	} {
		v, err := url.ParseQuery(tc.query)
		require.NoError(t, err)
		_, err = ParseQuery(v, t0)
		require.Error(t, err, tc.query)
		assert.Contains(t, err.Error(), tc.want, tc.query)
	}
}

func TestFlags(t *testing.T) {
	parse := func(args ...string) (Query, error) {
		fl := &Flags{}
		fs := pflag.NewFlagSet("observe", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fl.Register(fs)
		if err := fs.Parse(args); err != nil {
			return Query{}, err
		}
		return fl.Query(t0)
	}
	q, err := parse("--from-pod", "client/client", "--verdict", "DROPPED", "--verdict", "forwarded", "--not", "--to-namespace", "kube-system", "-n", "stars")
	require.NoError(t, err)
	require.Len(t, q.Allow, 1)
	assert.Equal(t, []string{"client/client"}, q.Allow[0].SourcePod)
	assert.Equal(t, []Verdict{VerdictDropped, VerdictForwarded}, q.Allow[0].Verdict)
	assert.Equal(t, []string{"stars"}, q.Allow[0].Namespace)
	require.Len(t, q.Deny, 1)
	assert.Equal(t, []string{"kube-system"}, q.Deny[0].DestinationNamespace)
	assert.Equal(t, 20, q.Last, "default like hubble observe")

	q, err = parse("--follow")
	require.NoError(t, err)
	assert.True(t, q.NoHistory)

	q, err = parse("--follow", "--last", "3")
	require.NoError(t, err)
	assert.False(t, q.NoHistory)
	assert.Equal(t, 3, q.Last)

	_, err = parse("--verdict", "nope")
	require.ErrorContains(t, err, `"--verdict"`)
	require.ErrorContains(t, err, "FORWARDED, DROPPED")
	_, err = parse("--verdict", "DROPPED", "--not")
	require.ErrorContains(t, err, "--not must be followed by a filter flag")
	_, err = parse("-A", "--from-namespace", "x")
	require.ErrorContains(t, err, "--all-namespaces cannot be combined")
	_, err = parse("--follow", "--until", "1m")
	require.ErrorContains(t, err, "--until cannot be combined with --follow")
	_, err = parse("--since", "later")
	require.ErrorContains(t, err, "--since")
}

func TestNDJSONRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	a := sample()
	b := sample()
	b.UUID, b.Verdict, b.DropReasonDesc, b.DeniedBy = "u2", VerdictForwarded, "", nil
	b.AllowedBy = []Policy{{Kind: PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow-client"}}
	require.NoError(t, enc.Encode(a))
	require.NoError(t, enc.Encode(b))
	assert.Equal(t, 2, strings.Count(buf.String(), "\n"))
	// Hubble field names on the wire.
	var raw map[string]any
	line, _, _ := strings.Cut(buf.String(), "\n")
	require.NoError(t, json.Unmarshal([]byte(line), &raw))
	for _, k := range []string{"time", "uuid", "verdict", "drop_reason_desc", "event_type", "ip", "l4", "source", "destination",
		"node_name", "destination_service", "traffic_direction", "is_reply", "trace_observation_point", "denied_by"} {
		assert.Contains(t, raw, k)
	}
	assert.Equal(t, "10.96.0.10", raw["ip"].(map[string]any)["orig_destination"])

	dec := NewDecoder(strings.NewReader("\n" + buf.String() + "\n"))
	got1, err := dec.Decode()
	require.NoError(t, err)
	got2, err := dec.Decode()
	require.NoError(t, err)
	_, err = dec.Decode()
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, a, got1)
	assert.Equal(t, b, got2)

	_, err = NewDecoder(strings.NewReader("{}\n[1]\n")).Decode()
	require.NoError(t, err)
	d := NewDecoder(strings.NewReader("{}\n[1]\n"))
	_, _ = d.Decode()
	_, err = d.Decode()
	require.ErrorContains(t, err, "ndjson line 2")
}

func TestStoreRingAndLast(t *testing.T) {
	s := NewStore(3)
	for i := range 5 {
		f := sample()
		f.Time = t0.Add(time.Duration(i) * time.Second)
		f.UUID = string(rune('a' + i))
		s.Add(f)
	}
	assert.Equal(t, 3, s.Len())
	assert.Equal(t, uint64(5), s.Total())
	uuids := func(fs []*Flow) string {
		var b strings.Builder
		for _, f := range fs {
			b.WriteString(f.UUID)
		}
		return b.String()
	}
	assert.Equal(t, "cde", uuids(s.Snapshot(nil, 0)))
	assert.Equal(t, "de", uuids(s.Snapshot(nil, 2)))
	m, err := Query{Since: t0.Add(3 * time.Second)}.Matcher()
	require.NoError(t, err)
	assert.Equal(t, "de", uuids(s.Snapshot(m, 0)))
}

func TestStoreQueryAnswersInTimeOrder(t *testing.T) {
	s := NewStore(10)
	for _, sec := range []int{1, 3, 2, 5, 4} {
		s.Add(at(sec, "n"))
	}
	var got []int
	require.NoError(t, s.Query(context.Background(), Query{Last: 3}, func(f *Flow) error {
		got = append(got, int(f.Time.Sub(t0)/time.Second))
		return nil
	}, nil))
	assert.Equal(t, []int{3, 4, 5}, got, "the newest 3 by time, in time order")
}

func TestStoreKeepsTimeOrderAcrossLateArrivals(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		arrivals []int // seconds after t0, in arrival order
		want     []int // the buffer, oldest first
		last2    []int
	}{
		{"in order", 5, []int{1, 2, 3}, []int{1, 2, 3}, []int{2, 3}},
		{"one late flow", 5, []int{1, 3, 4, 2}, []int{1, 2, 3, 4}, []int{3, 4}},
		{"late flow in a full ring", 3, []int{1, 3, 5, 7, 4}, []int{4, 5, 7}, []int{5, 7}},
		{"late flow older than everything kept", 3, []int{5, 6, 7, 1}, []int{1, 6, 7}, []int{6, 7}},
		{"ties keep arrival order", 4, []int{2, 2, 1, 2}, []int{1, 2, 2, 2}, []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(tt.capacity)
			for _, sec := range tt.arrivals {
				s.Add(at(sec, "n"))
			}
			secs := func(fs []*Flow) []int {
				out := []int{}
				for _, f := range fs {
					out = append(out, int(f.Time.Sub(t0)/time.Second))
				}
				return out
			}
			assert.Equal(t, tt.want, secs(s.Snapshot(nil, 0)))
			assert.Equal(t, tt.last2, secs(s.Snapshot(nil, 2)))
			assert.Equal(t, uint64(len(tt.arrivals)), s.Total())
		})
	}
}

func TestStoreBackfillDoesNotReachFollowers(t *testing.T) {
	s := NewStore(10)
	sub := s.Subscribe(nil, 10)
	defer sub.Close()
	s.Add(at(5, "n"))
	s.Backfill(at(1, "n"))
	assert.Equal(t, []int{5}, readSecs(t, sub, 1), "only the live flow is offered to the follower")
	assert.False(t, sub.Pending())
	assert.Equal(t, t0.Add(time.Second), s.Snapshot(nil, 0)[0].Time, "backfilled history is in time order")
}

// readSecs reads n flows of sub (failing after 5 s) and returns their times in seconds after t0.
func readSecs(t *testing.T, sub *Subscription, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []int
	for range n {
		f, err := sub.Next(ctx)
		require.NoError(t, err, "after %d flows", len(out))
		out = append(out, int(f.Time.Sub(t0)/time.Second))
	}
	return out
}

func mustMatcher(t *testing.T, allow ...Filter) *Matcher {
	t.Helper()
	m, err := NewMatcher(allow, nil)
	require.NoError(t, err)
	return m
}

func seqSecs(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// A subscriber whose channel is full goes on from the ring: it loses only what the ring overwrote,
// gets the rest in the order added (late flows and backfilled history included or left out as live
// followers get them), and never blocks Add.
func TestStoreSlowSubscriberReadsTheRing(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		add      func(s *Store)
		match    *Matcher
		want     []int
		fastWant []int // nil: want
		lost     uint64
	}{
		{name: "ring holds the backlog", capacity: 100, add: func(s *Store) {
			for i := 1; i <= 10; i++ {
				s.Add(at(i, "n"))
			}
		}, want: seqSecs(1, 10)},
		{name: "ring overwrote 3", capacity: 5, add: func(s *Store) {
			for i := 1; i <= 10; i++ {
				s.Add(at(i, "n"))
			}
		}, want: append([]int{1, 2}, seqSecs(6, 10)...), fastWant: seqSecs(1, 10), lost: 3},
		{name: "late flows and backfill", capacity: 100, add: func(s *Store) {
			for _, sec := range []int{10, 11, 3, 12, 4, 13} {
				s.Add(at(sec, "n"))
				s.Backfill(at(sec-1, "old"))
			}
		}, want: []int{10, 11, 3, 12, 4, 13}},
		{name: "filtered", capacity: 100, match: mustMatcher(t, Filter{SourcePort: []uint16{1}}), add: func(s *Store) {
			for i := 1; i <= 20; i++ {
				f := at(i, "n")
				if i%3 == 0 {
					f.L4.SourcePort = 1
				}
				s.Add(f)
			}
		}, want: []int{3, 6, 9, 12, 15, 18}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(tt.capacity)
			slow := s.Subscribe(tt.match, 2)
			defer slow.Close()
			fast := s.Subscribe(tt.match, 100)
			defer fast.Close()
			done := make(chan struct{})
			go func() {
				tt.add(s) // must not block on the slow subscriber
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Add blocked on a slow subscriber")
			}
			assert.True(t, slow.Pending())
			assert.Equal(t, tt.want, readSecs(t, slow, len(tt.want)))
			fastWant := tt.fastWant
			if fastWant == nil {
				fastWant = tt.want
			}
			assert.Equal(t, fastWant, readSecs(t, fast, len(fastWant)))
			assert.False(t, slow.Pending(), "caught up")
			assert.Equal(t, tt.lost, slow.Lost())
			assert.Equal(t, uint64(0), fast.Lost())
			assert.Equal(t, tt.lost, s.Lost())
			late := at(100, "n")
			late.L4.SourcePort = 1
			s.Add(late)
			assert.Equal(t, []int{100}, readSecs(t, slow, 1), "after catching up, new flows come through the channel")
			slow.Close()
			assert.Equal(t, 1, s.Subscribers())
		})
	}
}

// A reader far slower than Add, concurrently: every flow is read once, in order, or counted lost, and
// none is lost while the ring still holds it.
func TestStoreSlowSubscriberConcurrent(t *testing.T) {
	for _, capacity := range []int{50_000, 200_000} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) { testSlowSubscriberConcurrent(t, capacity) })
	}
}

func testSlowSubscriberConcurrent(t *testing.T, capacity int) {
	const flows = 200_000
	s := NewStore(capacity)
	sub := s.Subscribe(nil, 64)
	defer sub.Close()
	go func() {
		for i := 1; i <= flows; i++ {
			f := at(0, "n")
			f.Time = t0.Add(time.Duration(i) * time.Microsecond)
			if i%1000 == 0 {
				f.Time = f.Time.Add(-600_001 * time.Nanosecond) // a late flow now and then, 600 flows late
			}
			s.Add(f)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	read, prev := 0, 0
	for read+int(sub.Lost()) < flows {
		f, err := sub.Next(ctx)
		require.NoError(t, err, "read %d, lost %d of %d", read, sub.Lost(), flows)
		ns := f.Time.Sub(t0).Nanoseconds()
		if ns%1000 != 0 {
			ns += 600_001
		}
		i := int(ns / 1000)
		require.Greater(t, i, prev, "flows in the order added")
		prev = i
		read++
		if read%10_000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	assert.Equal(t, flows, read+int(sub.Lost()))
	if capacity >= flows {
		assert.Zero(t, sub.Lost(), "the ring held every flow")
	}
	t.Logf("read %d, lost %d (ring %d)", read, sub.Lost(), s.Capacity())
}

func TestStoreQueryFollowNoGap(t *testing.T) {
	s := NewStore(1000)
	for range 5 {
		s.Add(sample())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Flow, 100)
	errc := make(chan error, 1)
	go func() {
		errc <- s.Query(ctx, Query{Follow: true, Last: 2}, func(f *Flow) error { got <- f; return nil }, nil)
	}()
	// Two buffered, then every new one.
	for range 2 {
		<-got
	}
	require.Eventually(t, func() bool { return s.Subscribers() == 1 }, 2*time.Second, time.Millisecond)
	for range 3 {
		s.Add(sample())
	}
	for range 3 {
		select {
		case <-got:
		case <-time.After(2 * time.Second):
			t.Fatal("followed flow not delivered")
		}
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	assert.Equal(t, 0, s.Subscribers())
}

func feed(fs ...*Flow) <-chan *Flow {
	c := make(chan *Flow, len(fs))
	for _, f := range fs {
		c <- f
	}
	close(c)
	return c
}

func at(sec int, node string) *Flow {
	f := sample()
	f.Time = t0.Add(time.Duration(sec) * time.Second)
	f.NodeName = node
	return f
}

func TestMergeStrictOrder(t *testing.T) {
	out := Merge(context.Background(), 0,
		feed(at(1, "a"), at(4, "a"), at(7, "a")),
		feed(at(2, "b"), at(3, "b"), at(9, "b")),
		feed(),
		feed(at(0, "c"), at(8, "c")),
	)
	var got []int
	for f := range out {
		got = append(got, int(f.Time.Sub(t0)/time.Second))
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4, 7, 8, 9}, got)
}

func TestMergeWindowQuietStream(t *testing.T) {
	quiet := make(chan *Flow) // never sends, never closes
	busy := make(chan *Flow, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := Merge(ctx, 50*time.Millisecond, quiet, busy)
	busy <- &Flow{Time: time.Now(), UUID: "x"}
	select {
	case f := <-out:
		assert.Equal(t, "x", f.UUID)
	case <-time.After(2 * time.Second):
		t.Fatal("a quiet stream stalled the merge")
	}
	// Old timestamps (a backlog) pass at once, in order.
	start := time.Now()
	busy <- &Flow{Time: start.Add(-time.Hour), UUID: "old"}
	f := <-out
	assert.Equal(t, "old", f.UUID)
	assert.Less(t, time.Since(start), time.Second)
}

func TestHandler(t *testing.T) {
	s := NewStore(100)
	a := sample()
	b := sample()
	b.UUID, b.Verdict, b.DropReasonDesc = "u2", VerdictForwarded, ""
	s.Add(a)
	s.Add(b)
	srv := httptest.NewServer(Handler(s, nil))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "?verdict=FORWARDED")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, ContentType, resp.Header.Get("Content-Type"))
	dec := NewDecoder(resp.Body)
	f, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, "u2", f.UUID)
	_, err = dec.Decode()
	require.ErrorIs(t, err, io.EOF)

	resp2, err := http.Get(srv.URL + "?verdict=nope")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp2.StatusCode)
	assert.Contains(t, string(body), "use one of FORWARDED")

	// Follow: a new flow arrives on the open stream (flushed).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"?follow=true&no-history=true", nil)
	resp3, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp3.Body.Close()
	require.Eventually(t, func() bool { return s.Subscribers() == 1 }, 2*time.Second, time.Millisecond)
	c := sample()
	c.UUID = "live"
	s.Add(c)
	line, err := bufio.NewReader(resp3.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, `"uuid":"live"`)
}

func TestMergeDynamic(t *testing.T) {
	add := make(chan (<-chan *Flow), 2)
	add <- feed(at(1, "a"), at(5, "a"))
	add <- feed(at(2, "b"), at(3, "b"))
	close(add)
	var got []int
	for f := range MergeDynamic(context.Background(), 0, add, feed(at(4, "c"))) {
		got = append(got, int(f.Time.Sub(t0)/time.Second))
	}
	assert.Equal(t, []int{1, 2, 3, 4, 5}, got)
}

// TestMergeOneSlowStream reproduces the observer's ordering bug: one node's flows reach the merge in
// batches, 100-150 ms after their time (as a batched ring-buffer reader and an HTTP stream deliver
// them), another's at once, and a third node is quiet. Within the 200 ms window the output must be in
// time order; a flow later than the window is still delivered, and counted late.
func TestMergeOneSlowStream(t *testing.T) {
	const window = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fast, slow, quiet := make(chan *Flow, 1024), make(chan *Flow, 1024), make(chan *Flow)
	type lateFlow struct {
		uuid   string
		behind time.Duration
	}
	lateC := make(chan lateFlow, 1<<16)
	out := MergeStreams(ctx, MergeOptions{Window: window, OnLate: func(f *Flow, behind time.Duration) {
		lateC <- lateFlow{f.UUID, behind}
	}}, nil, fast, slow, quiet)

	const dur = 1500 * time.Millisecond
	start := time.Now()
	go func() { // fast: every 2 ms, sent at its time
		for time.Since(start) < dur {
			fast <- &Flow{Time: time.Now(), UUID: "fast", NodeName: "fast"}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() { // slow: a batch every 50 ms of the flows 100-150 ms old
		var pending []*Flow
		next := time.Now()
		for time.Since(start) < dur {
			pending = append(pending, &Flow{Time: time.Now(), UUID: "slow", NodeName: "slow"})
			time.Sleep(3 * time.Millisecond)
			if time.Now().After(next) {
				cut := time.Now().Add(-100 * time.Millisecond)
				i := 0
				for i < len(pending) && pending[i].Time.Before(cut) {
					slow <- pending[i]
					i++
				}
				pending = pending[i:]
				next = time.Now().Add(50 * time.Millisecond)
			}
		}
		time.Sleep(window) // then one flow far beyond the window
		slow <- &Flow{Time: time.Now().Add(-2 * time.Second), UUID: "very-late", NodeName: "slow"}
	}()

	var got []*Flow
	var veryLate *Flow
	deadline := time.After(dur + 3*time.Second)
	for veryLate == nil {
		select {
		case f := <-out:
			if f.UUID == "very-late" {
				veryLate = f
				continue
			}
			got = append(got, f)
		case <-deadline:
			t.Fatalf("the late flow was not delivered (%d flows merged)", len(got))
		}
	}
	inversions := 0
	nodes := map[string]int{}
	for i, f := range got {
		nodes[f.NodeName]++
		if i > 0 && f.Time.Before(got[i-1].Time) {
			inversions++
		}
	}
	assert.Greater(t, nodes["fast"], 100)
	assert.Greater(t, nodes["slow"], 100)
	assert.Zero(t, inversions, "flows within the window come out in time order")
	require.Len(t, lateC, 1, "only the flow beyond the window is late")
	l := <-lateC
	assert.Equal(t, "very-late", l.uuid)
	assert.InDelta(t, 2*time.Second, l.behind, float64(time.Second))
}

// --policy and --tier match any policy a flow names (the Pass and the deciding rule alike).
func TestFilterPolicyAndTier(t *testing.T) {
	passed := &Flow{AllowedBy: []Policy{
		{Kind: PolicyKindClusterNetworkPolicy, Name: "guard", Tier: TierAdmin, Rule: "0", Action: ActionPass},
		{Kind: PolicyKindNetworkPolicy, Namespace: "stars", Name: "allow-client", Tier: TierNetworkPolicy},
	}}
	baseline := &Flow{DeniedBy: []Policy{{Kind: PolicyKindClusterNetworkPolicy, Name: "baseline-deny", Tier: TierBaseline, Action: ActionDeny}}}
	for _, tc := range []struct {
		filter Filter
		flow   *Flow
		want   bool
	}{
		{Filter{Policy: []string{"guard"}}, passed, true},
		{Filter{Policy: []string{"stars/allow-client"}}, passed, true},
		{Filter{Policy: []string{"allow-client"}}, passed, true},
		{Filter{Policy: []string{"other/allow-client"}}, passed, false},
		{Filter{Policy: []string{"guard"}}, baseline, false},
		{Filter{Tier: []string{TierAdmin}}, passed, true},
		{Filter{Tier: []string{TierBaseline}}, passed, false},
		{Filter{Tier: []string{TierBaseline}}, baseline, true},
		{Filter{Tier: []string{TierBaseline}, Policy: []string{"guard"}}, baseline, false},
	} {
		m, err := NewMatcher([]Filter{tc.filter}, nil)
		require.NoError(t, err)
		assert.Equal(t, tc.want, m.Match(tc.flow), "%+v", tc.filter)
	}
	_, err := NewMatcher([]Filter{{Tier: []string{"admin"}}}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "use one of Admin, NetworkPolicy, Baseline")
	q, err := ParseQuery(url.Values{"tier": {"Admin"}, "policy": {"guard"}}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, []Filter{{Tier: []string{"Admin"}, Policy: []string{"guard"}}}, q.Allow)
}

// A followed burst costs few flushes, and a lone flow is still flushed soon after it arrives.
func TestStoreQueryFollowBatchesFlushes(t *testing.T) {
	s := NewStore(10000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var emitted, flushes atomic.Int64
	flushed := make(chan int64, 10000)
	errc := make(chan error, 1)
	go func() {
		errc <- s.Query(ctx, Query{Follow: true, NoHistory: true}, func(*Flow) error { emitted.Add(1); return nil },
			func() { flushes.Add(1); flushed <- emitted.Load() })
	}()
	require.Eventually(t, func() bool { return s.Subscribers() == 1 }, 2*time.Second, time.Millisecond)
	const burst = 5000
	for range burst {
		s.Add(sample())
	}
	require.Eventually(t, func() bool { return emitted.Load() == burst && flushes.Load() > 0 }, 5*time.Second, time.Millisecond)
	for n := range flushed {
		if n == burst {
			break
		}
	}
	assert.Less(t, flushes.Load(), int64(burst/10), "a burst of %d flows should be flushed in batches", burst)

	start := time.Now()
	s.Add(sample())
	select {
	case n := <-flushed:
		assert.Equal(t, int64(burst+1), n)
		assert.Less(t, time.Since(start), time.Second, "a lone flow waits about FlushDelay (%s)", FlushDelay)
	case <-time.After(5 * time.Second):
		t.Fatal("a lone followed flow was never flushed")
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}
