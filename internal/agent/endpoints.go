package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"github.com/starlab-dev/starlab/datapath/ipam"
	"github.com/starlab-dev/starlab/datapath/maps"
	"github.com/starlab-dev/starlab/internal/cni"
)

// Endpoint is a local pod as the agent knows it (persisted as endpoints/<containerID>.json).
type Endpoint struct {
	cni.EndpointRequest
	Ifindex int `json:"ifindex"`

	ip  netip.Addr
	mac net.HardwareAddr
}

func (e *Endpoint) parse() error {
	ip, err := netip.ParseAddr(e.IP)
	if err != nil {
		return fmt.Errorf("endpoint %s: ip %q: %w", e.ContainerID, e.IP, err)
	}
	mac, err := net.ParseMAC(e.MAC)
	if err != nil {
		return fmt.Errorf("endpoint %s: mac %q: %w", e.ContainerID, e.MAC, err)
	}
	e.ip, e.mac = ip, mac
	return nil
}

// base is the endpoint's sl_endpoints value before policy (identity and flags) is laid over.
func (e *Endpoint) base() maps.Endpoint {
	return maps.Endpoint{IP: e.ip, EpID: uint32(e.Ifindex), MAC: e.mac}
}

// endpointPolicy is what the endpoint part needs from the policy part, the one writer of
// sl_endpoints.
type endpointPolicy interface {
	// compileNow compiles with the current endpoints and writes the maps (nothing before the
	// informers synced).
	compileNow(ctx context.Context) error
	// writeEndpoint writes one endpoint's sl_endpoints value from the last compilation (deny-all
	// without one); keepExisting leaves a value already programmed.
	writeEndpoint(ifindex uint32, base maps.Endpoint, keepExisting bool) error
	// removeEndpoint deletes the endpoint's sl_endpoints (and sl_ep_by_ip) entry.
	removeEndpoint(ifindex uint32) error
	// keepEndpoints deletes every sl_endpoints entry whose ifindex is not in keep and returns the
	// IPs of the entries it deleted.
	keepEndpoints(keep map[uint32]bool) ([]netip.Addr, error)
	// trigger schedules a debounced compilation.
	trigger()
}

// attacher attaches the pod programs to a host veth (*loader.Datapath).
type attacher interface {
	AttachEndpoint(ifindex int) error
	DetachEndpoint(ifindex int) error
}

// conntrackFlusher deletes conntrack entries (*maps.Maps).
type conntrackFlusher interface {
	DeleteCTWhere(ctx context.Context, match func(maps.CTKey, maps.CTEntry) bool) (int, error)
}

// endpoints is the endpoint part: the CNI socket API, the endpoint records (memory and disk),
// program attachment, and restart reconciliation.
type endpoints struct {
	log     *slog.Logger
	dir     string // endpoint records
	ipamDir string
	// podCIDR is set once by Run before the CNI API serves, read-only afterwards.
	podCIDR   netip.Prefix
	ready     *atomic.Bool // datapath loaded and endpoint API serving
	attach    attacher
	policy    endpointPolicy
	ct        conntrackFlusher               // nil: no conntrack flushes (tests without a datapath)
	linkIndex func(name string) (int, error) // host veth name -> ifindex

	mu   sync.RWMutex // byID, byIP
	byID map[string]*Endpoint
	byIP map[netip.Addr]*Endpoint
}

func newEndpoints(cfg Config, log *slog.Logger, ready *atomic.Bool) *endpoints {
	return &endpoints{
		log: log, dir: cfg.EndpointsDir(), ipamDir: cfg.IPAMDir(), ready: ready, linkIndex: netlinkIndex,
		byID: map[string]*Endpoint{}, byIP: map[netip.Addr]*Endpoint{},
	}
}

func netlinkIndex(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("link %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// list returns the current endpoints (records are not modified once registered).
func (m *endpoints) list() []*Endpoint {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*Endpoint, 0, len(m.byID))
	for _, ep := range m.byID {
		out = append(out, ep)
	}
	return out
}

func (m *endpoints) count() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byID)
}

func (m *endpoints) get(containerID string) (*Endpoint, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ep, ok := m.byID[containerID]
	return ep, ok
}

// PodByIP names the local pod owning ip (the CNI knows IPs before the kubelet reports them).
func (m *endpoints) PodByIP(ip netip.Addr) (namespace, name string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ep, ok := m.byIP[ip]
	if !ok || ep.PodName == "" {
		return "", "", false
	}
	return ep.PodNamespace, ep.PodName, true
}

// register records ep and returns the endpoint it replaces under the same container ID.
func (m *endpoints) register(ep *Endpoint) (old *Endpoint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old = m.unregisterLocked(ep.ContainerID)
	m.byID[ep.ContainerID] = ep
	m.byIP[ep.ip] = ep
	return old
}

func (m *endpoints) unregister(containerID string) *Endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unregisterLocked(containerID)
}

func (m *endpoints) unregisterLocked(containerID string) *Endpoint {
	ep, ok := m.byID[containerID]
	if !ok {
		return nil
	}
	delete(m.byID, containerID)
	if m.byIP[ep.ip] == ep {
		delete(m.byIP, ep.ip)
	}
	return ep
}

func (m *endpoints) path(containerID string) string {
	return filepath.Join(m.dir, url.PathEscape(containerID)+".json")
}

func (m *endpoints) persist(ep *Endpoint) error {
	b, err := json.Marshal(ep)
	if err != nil {
		return fmt.Errorf("encode endpoint %s: %w", ep.ContainerID, err)
	}
	return writeFileAtomic(m.path(ep.ContainerID), b, 0o644)
}

// load reads the persisted endpoint records.
func (m *endpoints) load() ([]*Endpoint, error) {
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", m.dir, err)
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", m.dir, err)
	}
	var out []*Endpoint
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read endpoint record %s: %w", e.Name(), err)
		}
		ep := &Endpoint{}
		if err := json.Unmarshal(b, ep); err != nil || ep.parse() != nil {
			m.log.Warn("dropping unreadable endpoint record", "file", e.Name(), "err", err)
			_ = os.Remove(filepath.Join(m.dir, e.Name()))
			continue
		}
		out = append(out, ep)
	}
	return out, nil
}

// reconcile restores the endpoints of a previous run: live veths get their programs re-attached
// (the pinned maps still hold their state), records of vanished pods are dropped with their IPs
// and map entries, and map entries without a record are deleted.
func (m *endpoints) reconcile(ctx context.Context) error {
	eps, err := m.load()
	if err != nil {
		return err
	}
	alloc, allocErr := m.ipamAllocator()
	var stale []netip.Addr // IPs of endpoints that went away while the agent was down
	for _, ep := range eps {
		idx, err := m.linkIndex(ep.HostIfName)
		if err != nil {
			m.log.Info("endpoint gone while the agent was down; cleaning up", "container", ep.ContainerID, "pod", ep.PodNamespace+"/"+ep.PodName, "ip", ep.IP)
			if err := m.policy.removeEndpoint(uint32(ep.Ifindex)); err != nil {
				m.log.Warn("delete stale endpoint entry", "ifindex", ep.Ifindex, "err", err)
			}
			stale = append(stale, ep.ip)
			if allocErr == nil {
				if err := alloc.Release(ctx, ep.ContainerID); err != nil {
					m.log.Warn("release stale IP", "container", ep.ContainerID, "err", err)
				}
			}
			_ = removeIfExists(m.path(ep.ContainerID))
			continue
		}
		if idx != ep.Ifindex {
			if err := m.policy.removeEndpoint(uint32(ep.Ifindex)); err != nil {
				m.log.Warn("delete endpoint entry of the old ifindex", "ifindex", ep.Ifindex, "err", err)
			}
			ep.Ifindex = idx
			if err := m.persist(ep); err != nil {
				return err
			}
		}
		m.register(ep)
		if err := m.program(ep, true); err != nil {
			return fmt.Errorf("restore endpoint %s: %w", ep.ContainerID, err)
		}
	}
	known := map[uint32]bool{}
	for _, ep := range m.list() {
		known[uint32(ep.Ifindex)] = true
	}
	unowned, err := m.policy.keepEndpoints(known)
	if err != nil {
		return err
	}
	// Conntrack of the vanished endpoints goes with them, so a pod that gets one of their IPs
	// starts without their flows.
	for _, ip := range append(stale, unowned...) {
		m.flushConntrack(ctx, ip, "endpoint gone while the agent was down")
	}
	m.log.Info("endpoints restored", "count", len(known))
	return nil
}

func (m *endpoints) ipamAllocator() (*ipam.Allocator, error) {
	if !m.podCIDR.IsValid() {
		return nil, errors.New("node pod CIDR not known yet")
	}
	return ipam.New(m.ipamDir, m.podCIDR)
}

// program writes the endpoint's sl_endpoints value (through the policy part) and attaches the
// programs. keepExisting leaves a value already in the map (restart: the pinned map holds the last
// programmed state).
func (m *endpoints) program(ep *Endpoint, keepExisting bool) error {
	if err := m.policy.writeEndpoint(uint32(ep.Ifindex), ep.base(), keepExisting); err != nil {
		return fmt.Errorf("write endpoint %s (ifindex %d): %w", ep.ContainerID, ep.Ifindex, err)
	}
	if err := m.attach.AttachEndpoint(ep.Ifindex); err != nil {
		return fmt.Errorf("attach programs to %s: %w", ep.HostIfName, err)
	}
	return nil
}

// handler serves the CNI plugin's API.
func (m *endpoints) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cni.PathEndpoints, m.handleAdd)
	mux.HandleFunc("DELETE "+cni.PathEndpoint+"{id}", m.handleDelete)
	mux.HandleFunc("GET "+cni.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "datapath not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func (m *endpoints) handleAdd(w http.ResponseWriter, r *http.Request) {
	var req cni.EndpointRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "decode endpoint request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := req.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := m.add(r.Context(), req); err != nil {
		m.log.Error("endpoint add failed", "container", req.ContainerID, "pod", req.PodNamespace+"/"+req.PodName, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (m *endpoints) add(ctx context.Context, req cni.EndpointRequest) error {
	idx, err := m.linkIndex(req.HostIfName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", req.HostIfName, err)
	}
	ep := &Endpoint{EndpointRequest: req, Ifindex: idx}
	if err := ep.parse(); err != nil {
		return err
	}
	if err := m.persist(ep); err != nil {
		return err
	}
	// The IP is free (IPAM gave it to this pod): whatever conntrack still names it belongs to a
	// previous owner whose DEL flush did not happen or did not finish. The new pod must not
	// inherit those flows, so they go before its programs attach.
	m.flushConntrack(ctx, ep.ip, "new endpoint")
	if old := m.register(ep); old != nil && old.Ifindex != ep.Ifindex {
		if err := m.policy.removeEndpoint(uint32(old.Ifindex)); err != nil {
			m.log.Warn("delete endpoint entry of the replaced veth", "ifindex", old.Ifindex, "err", err)
		}
	}
	// Compile now with the new endpoint (its identity and policy flags), then attach.
	if err := m.policy.compileNow(ctx); err != nil {
		m.log.Warn("policy compile for new endpoint failed; it stays deny-all until the next compile", "container", req.ContainerID, "err", err)
	}
	if err := m.program(ep, false); err != nil {
		m.unregister(req.ContainerID)
		_ = removeIfExists(m.path(req.ContainerID))
		_ = m.policy.removeEndpoint(uint32(ep.Ifindex))
		return err
	}
	m.log.Info("endpoint added", "container", req.ContainerID, "pod", req.PodNamespace+"/"+req.PodName, "ip", req.IP, "ifindex", ep.Ifindex)
	m.policy.trigger()
	return nil
}

func (m *endpoints) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m.delete(r.Context(), id)
	w.WriteHeader(http.StatusOK)
}

// delete removes an endpoint and the conntrack entries of its IP; unknown IDs are fine
// (idempotent). Cleanup errors are logged, never returned: the endpoint is gone from the agent's
// view either way, and DEL must not block.
func (m *endpoints) delete(ctx context.Context, containerID string) {
	ep := m.unregister(containerID)
	if ep == nil {
		return
	}
	var errs []error
	if err := m.attach.DetachEndpoint(ep.Ifindex); err != nil {
		errs = append(errs, err)
	}
	if err := m.policy.removeEndpoint(uint32(ep.Ifindex)); err != nil {
		errs = append(errs, err)
	}
	if err := removeIfExists(m.path(containerID)); err != nil {
		errs = append(errs, err)
	}
	m.flushConntrack(ctx, ep.ip, "endpoint deleted")
	m.log.Info("endpoint deleted", "container", containerID, "pod", ep.PodNamespace+"/"+ep.PodName, "ip", ep.IP)
	m.policy.trigger()
	if len(errs) > 0 {
		m.log.Warn("endpoint cleanup incomplete", "container", containerID, "err", errors.Join(errs...))
	}
}

// flushConntrack deletes every conntrack entry naming ip (source, destination, NAT or SNAT
// address, and the paired entries), unless a live endpoint owns ip: conntrack is keyed by
// addresses only, so a pod that gets a released IP would otherwise inherit the allowed flows of
// its previous owner. Errors are logged: the caller's removal goes ahead either way.
func (m *endpoints) flushConntrack(ctx context.Context, ip netip.Addr, why string) {
	if m.ct == nil || !ip.IsValid() {
		return
	}
	m.mu.RLock()
	_, owned := m.byIP[ip]
	m.mu.RUnlock()
	if owned {
		return
	}
	n, err := m.ct.DeleteCTWhere(ctx, maps.CTInvolves(ip))
	if err != nil {
		m.log.Warn("conntrack flush incomplete", "ip", ip, "reason", why, "removed", n, "err", err)
		return
	}
	m.log.Debug("conntrack flushed", "ip", ip, "reason", why, "removed", n)
}

// detachAll detaches the programs of every endpoint (uninstall).
func (m *endpoints) detachAll() {
	for _, ep := range m.list() {
		if err := m.attach.DetachEndpoint(ep.Ifindex); err != nil {
			m.log.Warn("detach endpoint", "ifindex", ep.Ifindex, "err", err)
		}
	}
}

func serveUnix(ctx context.Context, path string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	srv := &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("endpoint API server stopped", "err", err)
		}
	}()
	return srv, nil
}
