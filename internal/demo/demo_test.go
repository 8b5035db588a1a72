package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// listenLoopback returns a loopback listener that accepts and closes connections.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go acceptAndClose(l)
	return l
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in      string
		wantURL bool
		wantErr string
	}{
		{in: "backend.stars:6379"},
		{in: "http://frontend.stars:80/", wantURL: true},
		{in: "frontend.stars", wantErr: "want host:port"},
		{in: "ftp://x:1", wantErr: "http(s) URL"},
		{in: "http://", wantErr: "http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePeer(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantURL, p.URL != nil)
			assert.Equal(t, tt.in, p.Raw)
		})
	}
}

func TestProberProbeOnce(t *testing.T) {
	open := listenLoopback(t).Addr().String()
	closed := closedPort(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	t.Cleanup(web.Close)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(broken.Close)

	var peers []Peer
	for _, s := range []string{open, closed, web.URL + "/", broken.URL} {
		p, err := ParsePeer(s)
		require.NoError(t, err)
		peers = append(peers, p)
	}
	p, err := NewProber(ProbeConfig{Port: 1, Peers: peers, Timeout: 500 * time.Millisecond}, nil)
	require.NoError(t, err)
	before := p.Status()
	require.Len(t, before, 4)
	assert.False(t, before[0].Reachable, "nothing is reachable before the first round")

	p.ProbeOnce(t.Context())
	st := p.Status()
	require.Len(t, st, 4)
	want := []bool{true, false, true, false}
	for i, s := range st {
		assert.Equal(t, peers[i].Raw, s.Peer)
		assert.Equal(t, want[i], s.Reachable, "peer %s: %s", s.Peer, s.Error)
		assert.False(t, s.CheckedAt.IsZero())
	}
	assert.Contains(t, st[1].Error, "connection refused")
	assert.Contains(t, st[3].Error, "502")
}

func TestProberRunServesStatusAndListens(t *testing.T) {
	httpPort := tcpPort(t, closedPort(t))
	extra := tcpPort(t, closedPort(t))
	target := listenLoopback(t).Addr().String()
	peer, err := ParsePeer(target)
	require.NoError(t, err)
	p, err := NewProber(ProbeConfig{Addr: "127.0.0.1", Port: httpPort, Listen: []int{extra}, Peers: []Peer{peer}, Interval: 50 * time.Millisecond}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	base := "http://127.0.0.1:" + itoa(httpPort)
	require.Eventually(t, func() bool {
		var st []PeerStatus
		return getJSON(base+"/status", &st) == nil && len(st) == 1 && st[0].Reachable
	}, 5*time.Second, 20*time.Millisecond)
	// The extra port accepts connections.
	res := Dial(t.Context(), "tcp", "127.0.0.1:"+itoa(extra))
	assert.True(t, res.Reachable, res.Error)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("probe did not stop after its context ended")
	}
}

func TestProbeEndpoint(t *testing.T) {
	srv := httptest.NewServer(newCommonMux())
	t.Cleanup(srv.Close)
	open := listenLoopback(t).Addr().String()
	closed := closedPort(t)

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { udp.Close() })
	go func() { // UDP echo
		buf := make([]byte, 512)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = udp.WriteTo(buf[:n], from)
		}
	}()

	tests := []struct {
		name      string
		query     string
		code      int
		reachable bool
		errHas    string
	}{
		{name: "tcp open", query: "target=" + open, code: 200, reachable: true},
		{name: "tcp closed", query: "target=" + closed + "&timeout=500ms", code: 200, errHas: "refused"},
		{name: "udp echo", query: "target=" + udp.LocalAddr().String() + "&protocol=udp", code: 200, reachable: true},
		{name: "udp closed", query: "target=" + closed + "&protocol=udp&timeout=300ms", code: 200, errHas: "udp answer"},
		{name: "no port", query: "target=localhost", code: 400, errHas: "want host:port"},
		{name: "bad protocol", query: "target=" + open + "&protocol=icmp", code: 400, errHas: "want tcp, udp or sctp"},
		{name: "bad timeout", query: "target=" + open + "&timeout=soon", code: 400, errHas: "duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/probe?" + tt.query)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, tt.code, resp.StatusCode)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			if tt.code != 200 {
				assert.Contains(t, string(body), tt.errHas)
				return
			}
			var res ProbeResult
			require.NoError(t, json.Unmarshal(body, &res))
			assert.Equal(t, tt.reachable, res.Reachable, res.Error)
			assert.Contains(t, res.Error, tt.errHas)
			assert.Positive(t, res.ElapsedMs)
			if res.Protocol == "tcp" {
				assert.Positive(t, res.ConnectMs, "a TCP probe times its connect")
				assert.LessOrEqual(t, res.ConnectMs, res.ElapsedMs, "the connect is part of the probe")
			}
			if tt.reachable || res.Protocol == "tcp" {
				_, port, err := net.SplitHostPort(res.LocalAddr)
				require.NoError(t, err, "local address %q", res.LocalAddr)
				assert.NotEqual(t, "0", port, "a failed TCP connect still reports its source port")
			}
		})
	}
}

func TestHostnameEndpoint(t *testing.T) {
	srv := httptest.NewServer(newCommonMux())
	t.Cleanup(srv.Close)
	want, err := os.Hostname()
	require.NoError(t, err)
	resp, err := http.Get(srv.URL + "/hostname")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, want+"\n", string(body))
}

func TestUIRefreshBuildsGraph(t *testing.T) {
	// Three stars: C reaches F; F reaches B and itself (self ignored); B's status cannot be fetched.
	statusServer := func(st []PeerStatus) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			require.Equal(t, "/status", r.URL.Path)
			writeJSON(w, 200, st)
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	bAddr := closedPort(t)
	var fAddr string
	fSrv := httptest.NewUnstartedServer(nil)
	fAddr = fSrv.Listener.Addr().String()
	cAddr := statusServer([]PeerStatus{{Peer: fAddr, Reachable: true}, {Peer: bAddr, Reachable: false}})
	fSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, []PeerStatus{{Peer: "http://" + bAddr + "/", Reachable: true}, {Peer: fAddr, Reachable: true}, {Peer: cAddr, Reachable: false}})
	})
	fSrv.Start()
	t.Cleanup(fSrv.Close)

	ui, err := NewUI(UIConfig{Nodes: []UINode{{ID: "C", Address: cAddr}, {ID: "F", Address: fAddr}, {ID: "B", Address: bAddr}}}, nil)
	require.NoError(t, err)
	g := ui.Refresh(t.Context())
	require.Len(t, g.Nodes, 3)
	assert.True(t, g.Nodes[0].Present)
	assert.True(t, g.Nodes[1].Present)
	assert.False(t, g.Nodes[2].Present)
	assert.Contains(t, g.Nodes[2].Error, "refused")
	assert.ElementsMatch(t, []UIEdge{{From: "C", To: "F"}, {From: "F", To: "B"}}, g.Edges)

	srv := httptest.NewServer(ui.Handler())
	t.Cleanup(srv.Close)
	var got Graph
	require.NoError(t, getJSON(srv.URL+"/api/graph", &got))
	assert.Equal(t, g.Edges, got.Edges)
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(page), `class="edge" data-from="C" data-to="F"`)
	assert.Contains(t, string(page), `class="edge" data-from="F" data-to="B"`)
	assert.Contains(t, string(page), `class="node missing" data-id="B" data-present="false"`)
	assert.NotContains(t, string(page), `data-to="C"`)
}

func TestParseUINode(t *testing.T) {
	n, err := ParseUINode("F=frontend.stars:80")
	require.NoError(t, err)
	assert.Equal(t, UINode{ID: "F", Address: "frontend.stars:80"}, n)
	_, err = ParseUINode("frontend.stars:80")
	require.ErrorContains(t, err, "want ID=host:port")
	_, err = ParseUINode("F=frontend")
	require.ErrorContains(t, err, "want host:port")
	_, err = NewUI(UIConfig{Nodes: []UINode{n, n}}, nil)
	require.ErrorContains(t, err, "given twice")
}

func TestDBExec(t *testing.T) {
	db := NewDB()
	steps := []struct{ in, want string }{
		{"PING", "PONG"},
		{"GET a", "NIL"},
		{"SET a hello world", "OK"},
		{"GET a", "VAL hello world"},
		{"INCRBY n 5", "INT 5"},
		{"incrby n -7", "INT -2"},
		{"INCRBY a 1", "ERR value of a is not an integer"},
		{"INCRBY n x", "ERR usage: INCRBY <key> <integer>"},
		{"SET a", "ERR usage: SET <key> <value>"},
		{"FLUSH", `ERR unknown command "FLUSH": use PING, GET, SET or INCRBY`},
	}
	for _, s := range steps {
		assert.Equal(t, s.want, db.Exec(s.in), s.in)
	}
}

// startDB serves a fresh db on loopback.
func startDB(t *testing.T) DBClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeDB(ctx, l, NewDB(), nil) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return DBClient{Addr: l.Addr().String(), Timeout: 2 * time.Second}
}

func TestDBClientOverTCP(t *testing.T) {
	c := startDB(t)
	ctx := t.Context()
	_, err := c.Get(ctx, "k")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, c.Set(ctx, "k", `{"a": 1}`))
	v, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, `{"a": 1}`, v)
	n, err := c.IncrBy(ctx, "seq", 3)
	require.NoError(t, err)
	assert.EqualValues(t, 3, n)
	_, err = c.IncrBy(ctx, "k", 1)
	require.ErrorContains(t, err, "not an integer")
	require.ErrorContains(t, c.Set(ctx, "bad key", "v"), "no spaces")
	_, err = DBClient{Addr: closedPort(t), Timeout: time.Second}.Get(ctx, "k")
	require.ErrorContains(t, err, "connect to db")
}

func TestOrdersAndInventory(t *testing.T) {
	db := startDB(t)
	inv, err := NewAPIHandler(APIConfig{Name: "inventory", DB: db.Addr}, nil)
	require.NoError(t, err)
	invSrv := httptest.NewServer(inv)
	t.Cleanup(invSrv.Close)
	orders, err := NewAPIHandler(APIConfig{Name: "orders", DB: db.Addr, Inventory: invSrv.URL}, nil)
	require.NoError(t, err)
	ordSrv := httptest.NewServer(orders)
	t.Cleanup(ordSrv.Close)

	do := func(method, url, body string) (int, string) {
		req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := do("PUT", invSrv.URL+"/items/widget", `{"stock": 5}`)
	require.Equal(t, 200, code, body)
	code, body = do("POST", ordSrv.URL+"/orders", `{"item": "widget", "qty": 3}`)
	require.Equal(t, 201, code, body)
	assert.JSONEq(t, `{"id":1,"item":"widget","qty":3}`, body)
	code, body = do("GET", invSrv.URL+"/items/widget", "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"item":"widget","stock":2}`, body)
	code, body = do("POST", ordSrv.URL+"/orders", `{"item": "widget", "qty": 3}`)
	assert.Equal(t, 409, code, body)
	code, _ = do("GET", invSrv.URL+"/items/widget", "")
	require.Equal(t, 200, code)
	code, body = do("GET", ordSrv.URL+"/orders/1", "")
	require.Equal(t, 200, code)
	assert.JSONEq(t, `{"id":1,"item":"widget","qty":3}`, body)
	code, _ = do("GET", ordSrv.URL+"/orders/2", "")
	assert.Equal(t, 404, code)
	code, body = do("POST", ordSrv.URL+"/orders", `{"item": ""}`)
	assert.Equal(t, 400, code, body)

	_, err = NewAPIHandler(APIConfig{Name: "payments", DB: db.Addr}, nil)
	require.ErrorContains(t, err, "want orders or inventory")
	_, err = NewAPIHandler(APIConfig{Name: "orders"}, nil)
	require.ErrorContains(t, err, "--db")
}

func tcpPort(t *testing.T, addr string) int {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", addr)
	require.NoError(t, err)
	return a.Port
}

func itoa(n int) string { return strconv.Itoa(n) }

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
