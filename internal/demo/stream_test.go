package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// freePort returns a loopback port nothing listens on (TCP and UDP).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamTCPAnswersThenBreaksWhenThePeerCloses(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := freePort(t)
	echoCtx, stopEcho := context.WithCancel(ctx)
	require.NoError(t, ListenTCPEcho(echoCtx, "127.0.0.1", port))
	s, err := StartStream(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Millisecond, time.Second)
	require.NoError(t, err)
	waitFor(t, "10 answers", func() bool { return s.Status().Answered >= 10 })
	st := s.Status()
	assert.False(t, st.Broken)
	assert.False(t, st.LastAnsweredSentAt.IsZero())
	assert.Less(t, st.MaxGapMs, 1000.0)
	assert.Zero(t, st.Retransmits, "nothing to send again on loopback")
	assert.GreaterOrEqual(t, st.MaxSendGapMs, 5.0, "lines go out every interval")

	stopEcho() // closes the echo's connections: the stream breaks, it does not redial
	waitFor(t, "the stream to break", func() bool { return s.Status().Broken })
	st = s.Close()
	assert.True(t, st.Broken)
	assert.True(t, st.Closed)
	assert.NotEmpty(t, st.Error)
	assert.False(t, st.BrokenAt.IsZero())
}

func TestStreamUDPStopsAnsweringButKeepsSending(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := freePort(t)
	echoCtx, stopEcho := context.WithCancel(ctx)
	require.NoError(t, ListenUDPEcho(echoCtx, "127.0.0.1", port))
	s, err := StartStream(ctx, "udp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Millisecond, time.Second)
	require.NoError(t, err)
	waitFor(t, "10 answers", func() bool { return s.Status().Answered >= 10 })

	stopEcho()
	time.Sleep(50 * time.Millisecond)
	before := s.Status()
	waitFor(t, "more lines sent", func() bool { return s.Status().Sent > before.Sent+10 })
	st := s.Close()
	assert.False(t, st.Broken, "a UDP stream never breaks by itself")
	assert.LessOrEqual(t, st.Answered, before.Answered+1, "no answers once the echo is gone")
	assert.GreaterOrEqual(t, st.MaxGapMs, 100.0, "the silence counts as a gap")
	assert.Equal(t, before.LastAnswerAt, st.MaxGapFrom, "the longest gap began with the last answer")
}

func TestStreamsHTTPAPI(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := freePort(t)
	require.NoError(t, ListenTCPEcho(ctx, "127.0.0.1", port))
	mux := http.NewServeMux()
	newStreamRegistry(ctx).register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	do := func(method, path string, body any) (int, StreamStatus) {
		var b bytes.Buffer
		if body != nil {
			require.NoError(t, json.NewEncoder(&b).Encode(body))
		}
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, &b)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var st StreamStatus
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}
	code, st := do(http.MethodPost, "/streams", StreamRequest{Target: "127.0.0.1:" + strconv.Itoa(port), Interval: "10ms"})
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, st.ID)
	assert.Equal(t, "tcp", st.Protocol)
	assert.NotEmpty(t, st.LocalAddr)
	waitFor(t, "answers", func() bool { _, s := do(http.MethodGet, "/streams/"+st.ID, nil); return s.Answered >= 5 })
	code, final := do(http.MethodDelete, "/streams/"+st.ID, nil)
	require.Equal(t, http.StatusOK, code)
	assert.True(t, final.Closed)
	assert.False(t, final.Broken)
	code, again := do(http.MethodGet, "/streams/"+st.ID, nil)
	assert.Equal(t, http.StatusOK, code, "a closed stream's final status stays readable")
	assert.Equal(t, final.Answered, again.Answered)

	code, _ = do(http.MethodPost, "/streams", StreamRequest{Target: "nohostport"})
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = do(http.MethodPost, "/streams", StreamRequest{Target: "127.0.0.1:1", Interval: "1ms"})
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = do(http.MethodPost, "/streams", StreamRequest{Target: closedPort(t)})
	assert.Equal(t, http.StatusBadGateway, code, "a TCP stream that cannot connect is refused")
	code, _ = do(http.MethodGet, "/streams/999", nil)
	assert.Equal(t, http.StatusNotFound, code)
}

// TestStreamUDPCountsLostLinesNotLateOnes echoes through a peer that drops lines 10 and 20, answers
// line 3 only after line 4, and answers nothing after line 25.
func TestStreamUDPCountsLostLinesNotLateOnes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer peer.Close()
	go func() {
		buf := make([]byte, 512)
		var held []byte
		var heldTo net.Addr
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			line := append([]byte(nil), buf[:n]...)
			seqText, _, _ := bytes.Cut(line, []byte(" "))
			seq, _ := strconv.Atoi(string(seqText))
			switch {
			case seq == 3:
				held, heldTo = line, from
			case seq == 10 || seq == 20 || seq > 25:
			default:
				_, _ = peer.WriteTo(line, from)
				if seq == 4 {
					_, _ = peer.WriteTo(held, heldTo)
				}
			}
		}
	}()
	s, err := StartStream(ctx, "udp", peer.LocalAddr().String(), 10*time.Millisecond, time.Second)
	require.NoError(t, err)
	waitFor(t, "30 lines sent", func() bool { return s.Status().Sent >= 30 })
	st := s.Close()
	assert.EqualValues(t, 23, st.Answered, "lines 1..25 but 10 and 20")
	assert.EqualValues(t, 2, st.Lost, "10 and 20 lost; 3 late, not lost; after 25 nothing came back to tell")
	assert.Zero(t, st.Retransmits, "UDP has none")
}
