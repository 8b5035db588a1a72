package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/cni"
)

// fakeEndpointPolicy records what the endpoint part asks of the policy part.
type fakeEndpointPolicy struct {
	calls   []string
	unowned []netip.Addr // IPs keepEndpoints reports as deleted
}

func (f *fakeEndpointPolicy) compileNow(context.Context) error {
	f.calls = append(f.calls, "compile")
	return nil
}

func (f *fakeEndpointPolicy) writeEndpoint(ifindex uint32, base maps.Endpoint, keep bool) error {
	f.calls = append(f.calls, fmt.Sprintf("write %d %s keep=%v", ifindex, base.IP, keep))
	return nil
}

func (f *fakeEndpointPolicy) removeEndpoint(ifindex uint32) error {
	f.calls = append(f.calls, fmt.Sprintf("remove %d", ifindex))
	return nil
}

func (f *fakeEndpointPolicy) keepEndpoints(keep map[uint32]bool) ([]netip.Addr, error) {
	f.calls = append(f.calls, fmt.Sprintf("keep %d", len(keep)))
	return f.unowned, nil
}

func (f *fakeEndpointPolicy) trigger() { f.calls = append(f.calls, "trigger") }

// fakeAttacher records attachments; fail makes AttachEndpoint fail.
type fakeAttacher struct {
	calls []string
	fail  bool
}

func (f *fakeAttacher) AttachEndpoint(ifindex int) error {
	if f.fail {
		return errors.New("tcx: operation not supported")
	}
	f.calls = append(f.calls, fmt.Sprintf("attach %d", ifindex))
	return nil
}

func (f *fakeAttacher) DetachEndpoint(ifindex int) error {
	f.calls = append(f.calls, fmt.Sprintf("detach %d", ifindex))
	return nil
}

func newTestEndpoints(t *testing.T, links map[string]int) (*endpoints, *fakeEndpointPolicy, *fakeAttacher) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	ready := &atomic.Bool{}
	ready.Store(true)
	m := newEndpoints(cfg, slog.Default(), ready)
	pol, att := &fakeEndpointPolicy{}, &fakeAttacher{}
	m.policy, m.attach = pol, att
	m.podCIDR = netip.MustParsePrefix("10.244.1.0/24")
	m.linkIndex = func(name string) (int, error) {
		if idx, ok := links[name]; ok {
			return idx, nil
		}
		return 0, fmt.Errorf("link %s: not found", name)
	}
	return m, pol, att
}

func request(id, ip string) cni.EndpointRequest {
	return cni.EndpointRequest{ContainerID: id, HostIfName: "veth-" + id, IP: ip, MAC: "02:00:00:00:00:05", PodNamespace: "shop", PodName: "pod-" + id}
}

func post(t *testing.T, h http.Handler, req any) *httptest.ResponseRecorder {
	t.Helper()
	b, err := json.Marshal(req)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, cni.PathEndpoints, bytes.NewReader(b)))
	return rec
}

func TestEndpointsAddAndDelete(t *testing.T) {
	m, pol, att := newTestEndpoints(t, map[string]int{"veth-a": 12})
	h := m.handler()

	rec := post(t, h, request("a", "10.244.1.5"))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, []string{"compile", "write 12 10.244.1.5 keep=false", "trigger"}, pol.calls, "compiled with the endpoint before its programs attach")
	assert.Equal(t, []string{"attach 12"}, att.calls)
	assert.FileExists(t, m.path("a"))
	ns, name, ok := m.PodByIP(netip.MustParseAddr("10.244.1.5"))
	require.True(t, ok)
	assert.Equal(t, "shop/pod-a", ns+"/"+name)

	pol.calls, att.calls = nil, nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, cni.PathEndpoint+"a", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []string{"remove 12", "trigger"}, pol.calls)
	assert.Equal(t, []string{"detach 12"}, att.calls)
	assert.NoFileExists(t, m.path("a"))
	assert.Zero(t, m.count())
	_, _, ok = m.PodByIP(netip.MustParseAddr("10.244.1.5"))
	assert.False(t, ok)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, cni.PathEndpoint+"unknown", nil))
	assert.Equal(t, http.StatusOK, rec.Code, "DEL of an unknown ID is fine")
}

func TestEndpointsAddFailures(t *testing.T) {
	m, pol, att := newTestEndpoints(t, map[string]int{"veth-a": 12})
	h := m.handler()

	assert.Equal(t, http.StatusBadRequest, post(t, h, request("a", "not-an-ip")).Code)
	assert.Equal(t, http.StatusBadRequest, post(t, h, "{").Code)
	rec := post(t, h, request("b", "10.244.1.6"))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Contains(t, rec.Body.String(), "host veth veth-b")

	att.fail = true
	rec = post(t, h, request("a", "10.244.1.5"))
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	assert.Contains(t, rec.Body.String(), "attach programs to veth-a")
	assert.Equal(t, []string{"compile", "write 12 10.244.1.5 keep=false", "remove 12"}, pol.calls, "a failed ADD leaves no entry")
	assert.Zero(t, m.count())
	assert.NoFileExists(t, m.path("a"))
}

func TestEndpointsReconcile(t *testing.T) {
	m, pol, att := newTestEndpoints(t, map[string]int{"veth-live": 12, "veth-moved": 14})
	for _, ep := range []*Endpoint{
		{EndpointRequest: request("live", "10.244.1.5"), Ifindex: 12},
		{EndpointRequest: request("moved", "10.244.1.6"), Ifindex: 13}, // its veth got a new ifindex
		{EndpointRequest: request("gone", "10.244.1.7"), Ifindex: 15},  // its veth vanished
	} {
		require.NoError(t, ep.parse())
		require.NoError(t, m.persist(ep))
	}
	require.NoError(t, os.WriteFile(m.path("broken"), []byte("{"), 0o644))

	require.NoError(t, m.reconcile(t.Context()))
	assert.Equal(t, 2, m.count())
	moved, ok := m.get("moved")
	require.True(t, ok)
	assert.Equal(t, 14, moved.Ifindex)
	assert.ElementsMatch(t, []string{"write 12 10.244.1.5 keep=true", "remove 13", "write 14 10.244.1.6 keep=true", "remove 15", "keep 2"}, pol.calls)
	assert.Equal(t, "keep 2", pol.calls[len(pol.calls)-1], "unowned entries pruned last")
	assert.ElementsMatch(t, []string{"attach 12", "attach 14"}, att.calls)
	assert.NoFileExists(t, m.path("gone"))
	assert.NoFileExists(t, m.path("broken"), "unreadable records are dropped")
}

// fakeConntrack is an in-memory sl_ct (no pairs).
type fakeConntrack struct{ entries map[maps.CTKey]maps.CTEntry }

func (f *fakeConntrack) DeleteCTWhere(_ context.Context, match func(maps.CTKey, maps.CTEntry) bool) (int, error) {
	n := 0
	for k, e := range f.entries {
		if match(k, e) {
			delete(f.entries, k)
			n++
		}
	}
	return n, nil
}

// peers returns the pod IPs that still have conntrack entries (flows from 10.244.2.9).
func (f *fakeConntrack) peers() []string {
	var out []string
	for k := range f.entries {
		out = append(out, k.Dst.String())
	}
	return out
}

// TestEndpointsFlushConntrack (issue 11 item 4): conntrack naming an endpoint's IP goes when the
// endpoint goes (DEL, restart reconciliation of a vanished veth or an unowned map entry) and
// before a new endpoint with that IP is programmed; live endpoints keep theirs.
func TestEndpointsFlushConntrack(t *testing.T) {
	m, pol, _ := newTestEndpoints(t, map[string]int{"veth-live": 12, "veth-new": 16})
	ct := &fakeConntrack{entries: map[maps.CTKey]maps.CTEntry{}}
	for _, ip := range []string{"10.244.1.5", "10.244.1.7", "10.244.1.8", "10.244.1.99"} {
		ct.entries[maps.CTKey{Src: netip.MustParseAddr("10.244.2.9"), Dst: netip.MustParseAddr(ip), Proto: maps.ProtoUDP}] = maps.CTEntry{}
	}
	m.ct = ct
	pol.unowned = []netip.Addr{netip.MustParseAddr("10.244.1.99")}
	for _, ep := range []*Endpoint{
		{EndpointRequest: request("live", "10.244.1.5"), Ifindex: 12},
		{EndpointRequest: request("gone", "10.244.1.7"), Ifindex: 15},
	} {
		require.NoError(t, ep.parse())
		require.NoError(t, m.persist(ep))
	}

	require.NoError(t, m.reconcile(t.Context()))
	assert.ElementsMatch(t, []string{"10.244.1.5", "10.244.1.8"}, ct.peers(), "the vanished endpoint's and the unowned entry's flows are flushed")

	require.NoError(t, m.add(t.Context(), request("new", "10.244.1.8")))
	assert.ElementsMatch(t, []string{"10.244.1.5"}, ct.peers(), "a new endpoint starts without the flows of its IP's previous owner")

	m.delete(t.Context(), "live")
	assert.Empty(t, ct.peers(), "DEL flushes the endpoint's flows")
}
