package demo

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkProbeEndpoint measures one GET /probe (a real loopback TCP connect made by the handler).
func BenchmarkProbeEndpoint(b *testing.B) {
	target := listenLoopbackB(b)
	srv := httptest.NewServer(newCommonMux())
	b.Cleanup(srv.Close)
	url := srv.URL + "/probe?target=" + target
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}

// BenchmarkUIRefresh measures one management-UI refresh of three stars over loopback HTTP.
func BenchmarkUIRefresh(b *testing.B) {
	var nodes []UINode
	for _, id := range []string{"C", "F", "B"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 200, []PeerStatus{{Peer: "a:1", Reachable: true}, {Peer: "b:2", Reachable: false}})
		}))
		b.Cleanup(s.Close)
		nodes = append(nodes, UINode{ID: id, Address: strings.TrimPrefix(s.URL, "http://")})
	}
	ui, err := NewUI(UIConfig{Nodes: nodes}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if g := ui.Refresh(b.Context()); len(g.Nodes) != 3 || !g.Nodes[0].Present {
			b.Fatalf("bad graph %+v", g)
		}
	}
}

func listenLoopbackB(b *testing.B) string {
	b.Helper()
	l, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go acceptAndClose(l)
	return l.Addr().String()
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
