package hubbleapi

import (
	"fmt"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/internal/flow"
)

// queryOf is the query `starlab observe <args>` builds.
func queryOf(t *testing.T, args ...string) flow.Query {
	t.Helper()
	var fl flow.Flags
	fs := pflag.NewFlagSet("observe", pflag.ContinueOnError)
	fl.Register(fs)
	require.NoError(t, fs.Parse(args))
	q, err := fl.Query(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	return q
}

// requestCorpus is flows to judge filters on: the round-trip flows and the server's samples.
func requestCorpus() []*flow.Flow {
	var out []*flow.Flow
	for _, f := range roundTripFlows() {
		out = append(out, f)
	}
	return append(out, sampleFlows()...)
}

// The request a query becomes selects, on Starlab's server (Query, FilterFromProto), exactly the flows
// the query selects; where Hubble's filters cannot say it all, a superset (the client then matches).
func TestRequestSelectsWhatTheQuerySelects(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		exact bool
	}{
		{[]string{"--verdict", "DROPPED"}, true},
		{[]string{"--verdict", "DROPPED", "--verdict", "FORWARDED", "--to-namespace", "stars"}, true},
		{[]string{"--from-pod", "stars/frontend", "--to-port", "6379", "--protocol", "tcp"}, true},
		{[]string{"--pod", "stars/backend"}, true},
		{[]string{"--namespace", "stars", "--not", "--verdict", "FORWARDED"}, true},
		{[]string{"--not", "--from-namespace", "client", "--not", "--protocol", "UDP"}, true},
		{[]string{"--label", "role=backend", "--port", "6379"}, true},
		{[]string{"--from-label", "role=frontend", "--to-label", "role in (backend)"}, true},
		{[]string{"--service", "stars/backend"}, true},
		{[]string{"--to-service", "backend", "--from-ip", "10.244.1.0/24"}, true},
		{[]string{"--ip", "10.244.2.7", "--identity", "world"}, true},
		{[]string{"--from-identity", "256", "--to-identity", "257"}, true},
		{[]string{"--drop-reason", "POLICY_DENIED", "--traffic-direction", "egress"}, true},
		{[]string{"--type", "DROP"}, true},
		{[]string{"--type", "NEW", "--type", "CLOSE"}, true},
		{[]string{"--node", "w", "--tcp-flags", "SYN", "--tcp-flags", "FIN,ACK"}, true},
		{[]string{"--workload", "stars/backend"}, true},
		{[]string{"--from-workload", "frontend", "--to-workload", "stars/backend"}, true},
		{[]string{"--not", "--pod", "stars/frontend"}, true},
		// What Hubble's FlowFilter cannot say.
		{[]string{"--policy", "stars/backend-policy"}, false},
		{[]string{"--tier", "Admin"}, false},
		{[]string{"--drop-reason", "POLICY_UNREPRESENTABLE"}, false},
		{[]string{"--from-pod", "stars/frontend", "--from-namespace", "stars"}, false},
		{[]string{"--port", "6379", "--to-port", "40000"}, false},
		{[]string{"--not", "--policy", "backend-policy", "--verdict", "DROPPED"}, false},
		{[]string{"--not", "--tier", "Baseline"}, false},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			q := queryOf(t, tc.args...)
			req, exact, err := Request(q)
			require.NoError(t, err)
			assert.Equal(t, tc.exact, exact)
			served, err := Query(req) // what Starlab's server makes of the request
			require.NoError(t, err)
			want, err := q.Matcher()
			require.NoError(t, err)
			got, err := served.Matcher()
			require.NoError(t, err)
			matches := 0
			for _, f := range requestCorpus() {
				w, g := want.Match(f), got.Match(f)
				if w {
					matches++
				}
				if exact {
					assert.Equal(t, w, g, "flow %s", f.UUID)
				} else if w {
					assert.True(t, g, "flow %s: the relaxed request must keep every flow the query keeps", f.UUID)
				}
			}
			assert.True(t, matches > 0 && matches < len(requestCorpus()), "the corpus tells this filter apart: %d of %d match", matches, len(requestCorpus()))
			if !tc.exact {
				return
			}
			assert.Equal(t, q.Last, int(req.GetNumber()))
		})
	}
}

// Hubble's own shape of the filters: --pod is a source and a destination filter, namespaces are pod
// references, Starlab's names are Hubble's enums.
func TestRequestAsHubbleSendsIt(t *testing.T) {
	req, exact, err := Request(queryOf(t, "--namespace", "stars", "--verdict", "DROPPED", "--type", "DROP", "--not", "--to-port", "53"))
	require.NoError(t, err)
	require.True(t, exact)
	require.Len(t, req.GetWhitelist(), 2)
	assert.Equal(t, []string{"stars/"}, req.GetWhitelist()[0].GetSourcePod())
	assert.Equal(t, []string{"stars/"}, req.GetWhitelist()[1].GetDestinationPod())
	for _, w := range req.GetWhitelist() {
		assert.Equal(t, []flowpb.Verdict{flowpb.Verdict_DROPPED}, w.GetVerdict())
		assert.Equal(t, int32(messageTypeDrop), w.GetEventType()[0].GetType())
	}
	require.Len(t, req.GetBlacklist(), 1)
	assert.Equal(t, []string{"53"}, req.GetBlacklist()[0].GetDestinationPort())
	assert.Equal(t, uint64(20), req.GetNumber(), "observe's default: the last 20")
}

// The window: --last as number, --since/--until as timestamps, --follow alone as only new flows;
// an inexact query asks for the whole window (the client keeps the last N).
func TestRequestWindow(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		args   []string
		number uint64
		since  time.Time
		until  time.Time
		follow bool
	}{
		{[]string{"--last", "50"}, 50, time.Time{}, time.Time{}, false},
		{[]string{"--follow"}, 0, time.Time{}, time.Time{}, true},
		{[]string{"--follow", "--last", "5"}, 5, time.Time{}, time.Time{}, true},
		{[]string{"--since", "5m", "--until", "1m"}, 0, now.Add(-5 * time.Minute), now.Add(-time.Minute), false},
		{[]string{"--since", "2026-12-02T11:00:00Z", "--follow"}, 0, now.Add(-time.Hour), time.Time{}, true},
		{[]string{"--since", "10m", "--last", "3"}, 3, now.Add(-10 * time.Minute), time.Time{}, false},
		{[]string{"--policy", "x", "--last", "7"}, 0, time.Time{}, time.Time{}, false},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			req, _, err := Request(queryOf(t, tc.args...))
			require.NoError(t, err)
			assert.Equal(t, tc.number, req.GetNumber())
			assert.Equal(t, tc.follow, req.GetFollow())
			if tc.since.IsZero() {
				assert.Nil(t, req.GetSince())
			} else {
				assert.Equal(t, tc.since, req.GetSince().AsTime())
			}
			if tc.until.IsZero() {
				assert.Nil(t, req.GetUntil())
			} else {
				assert.Equal(t, tc.until, req.GetUntil().AsTime())
			}
			served, err := Query(req)
			require.NoError(t, err)
			assert.Equal(t, tc.follow && tc.number == 0 && tc.since.IsZero(), served.NoHistory, "follow alone: only new flows, as Hubble")
		})
	}
}

func TestRequestRefusesABadQuery(t *testing.T) {
	_, _, err := Request(flow.Query{Allow: []flow.Filter{{SourceLabel: []string{"a in ("}}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "source_label")
}
