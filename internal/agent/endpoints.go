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

	"github.com/vishvananda/netlink"

	"github.com/starlab-dev/starlab/datapath/ipam"
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

func (a *Agent) endpointPath(containerID string) string {
	return filepath.Join(a.cfg.EndpointsDir(), url.PathEscape(containerID)+".json")
}

func (a *Agent) persistEndpoint(ep *Endpoint) error {
	b, err := json.Marshal(ep)
	if err != nil {
		return fmt.Errorf("encode endpoint %s: %w", ep.ContainerID, err)
	}
	return writeFileAtomic(a.endpointPath(ep.ContainerID), b, 0o644)
}

// loadEndpoints reads the persisted endpoint records.
func (a *Agent) loadEndpoints() ([]*Endpoint, error) {
	dir := a.cfg.EndpointsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []*Endpoint
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read endpoint record %s: %w", e.Name(), err)
		}
		ep := &Endpoint{}
		if err := json.Unmarshal(b, ep); err != nil || ep.parse() != nil {
			a.log.Warn("dropping unreadable endpoint record", "file", e.Name(), "err", err)
			_ = os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		out = append(out, ep)
	}
	return out, nil
}

// reconcileEndpoints restores the endpoints of a previous run: live veths get their programs
// re-attached (the pinned maps still hold their state), records of vanished pods are dropped
// with their IPs and map entries.
func (a *Agent) reconcileEndpoints(ctx context.Context) error {
	eps, err := a.loadEndpoints()
	if err != nil {
		return err
	}
	alloc, allocErr := a.ipamAllocator()
	for _, ep := range eps {
		l, err := netlink.LinkByName(ep.HostIfName)
		if err != nil {
			a.log.Info("endpoint gone while the agent was down; cleaning up", "container", ep.ContainerID, "pod", ep.PodNamespace+"/"+ep.PodName, "ip", ep.IP)
			if err := a.dp.Maps.DeleteEndpoint(uint32(ep.Ifindex)); err != nil {
				a.log.Warn("delete stale endpoint entry", "ifindex", ep.Ifindex, "err", err)
			}
			if allocErr == nil {
				if err := alloc.Release(ctx, ep.ContainerID); err != nil {
					a.log.Warn("release stale IP", "container", ep.ContainerID, "err", err)
				}
			}
			_ = removeIfExists(a.endpointPath(ep.ContainerID))
			continue
		}
		if idx := l.Attrs().Index; idx != ep.Ifindex {
			_ = a.dp.Maps.DeleteEndpoint(uint32(ep.Ifindex))
			ep.Ifindex = idx
			if err := a.persistEndpoint(ep); err != nil {
				return err
			}
		}
		a.mu.Lock()
		a.endpoints[ep.ContainerID] = ep
		a.mu.Unlock()
		if err := a.programEndpoint(ep, true); err != nil {
			return fmt.Errorf("restore endpoint %s: %w", ep.ContainerID, err)
		}
	}
	// Entries in sl_endpoints without a record belong to nobody.
	known := map[uint32]bool{}
	a.mu.Lock()
	for _, ep := range a.endpoints {
		known[uint32(ep.Ifindex)] = true
	}
	a.mu.Unlock()
	inMap, err := a.dp.Maps.ListEndpoints()
	if err != nil {
		return fmt.Errorf("list endpoints map: %w", err)
	}
	for idx := range inMap {
		if !known[idx] {
			_ = a.dp.Maps.DeleteEndpoint(idx)
		}
	}
	a.log.Info("endpoints restored", "count", len(known))
	return nil
}

func (a *Agent) ipamAllocator() (*ipam.Allocator, error) {
	a.mu.Lock()
	cidr := a.podCIDR
	a.mu.Unlock()
	if !cidr.IsValid() {
		return nil, errors.New("node pod CIDR not known yet")
	}
	return ipam.New(a.cfg.IPAMDir(), cidr)
}

// programEndpoint writes the endpoint into the maps (identity and flags from the last policy
// compilation, or deny-all until one includes it) and attaches the programs. keepExisting leaves
// an entry already in the map (restart: the pinned map holds the last programmed state).
func (a *Agent) programEndpoint(ep *Endpoint, keepExisting bool) error {
	if keepExisting {
		if _, err := a.dp.Maps.LookupEndpoint(uint32(ep.Ifindex)); err == nil {
			return a.dp.AttachEndpoint(ep.Ifindex)
		}
	}
	a.mu.Lock()
	st := a.endpointStateLocked(ep)
	a.mu.Unlock()
	if err := a.dp.Maps.UpsertEndpoint(uint32(ep.Ifindex), st); err != nil {
		return fmt.Errorf("write endpoint %s (ifindex %d): %w", ep.ContainerID, ep.Ifindex, err)
	}
	if err := a.dp.AttachEndpoint(ep.Ifindex); err != nil {
		return fmt.Errorf("attach programs to %s: %w", ep.HostIfName, err)
	}
	return nil
}

// socketHandler serves the CNI plugin's API.
func (a *Agent) socketHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cni.PathEndpoints, a.handleAddEndpoint)
	mux.HandleFunc("DELETE "+cni.PathEndpoint+"{id}", a.handleDeleteEndpoint)
	mux.HandleFunc("GET "+cni.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "datapath not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

func (a *Agent) handleAddEndpoint(w http.ResponseWriter, r *http.Request) {
	var req cni.EndpointRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "decode endpoint request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := req.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.addEndpoint(r.Context(), req); err != nil {
		a.log.Error("endpoint add failed", "container", req.ContainerID, "pod", req.PodNamespace+"/"+req.PodName, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) addEndpoint(ctx context.Context, req cni.EndpointRequest) error {
	l, err := netlink.LinkByName(req.HostIfName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", req.HostIfName, err)
	}
	ep := &Endpoint{EndpointRequest: req, Ifindex: l.Attrs().Index}
	if err := ep.parse(); err != nil {
		return err
	}
	if err := a.persistEndpoint(ep); err != nil {
		return err
	}
	a.mu.Lock()
	if old, ok := a.endpoints[req.ContainerID]; ok && old.Ifindex != ep.Ifindex {
		_ = a.dp.Maps.DeleteEndpoint(uint32(old.Ifindex))
	}
	a.endpoints[req.ContainerID] = ep
	a.mu.Unlock()
	// Compile now with the new endpoint (its identity and policy flags), then attach.
	if a.synced.Load() {
		if err := a.compileAndApply(ctx); err != nil {
			a.log.Warn("policy compile for new endpoint failed; it stays deny-all until the next compile", "container", req.ContainerID, "err", err)
		}
	}
	if err := a.programEndpoint(ep, false); err != nil {
		a.mu.Lock()
		delete(a.endpoints, req.ContainerID)
		a.mu.Unlock()
		_ = removeIfExists(a.endpointPath(req.ContainerID))
		_ = a.dp.Maps.DeleteEndpoint(uint32(ep.Ifindex))
		return err
	}
	a.log.Info("endpoint added", "container", req.ContainerID, "pod", req.PodNamespace+"/"+req.PodName, "ip", req.IP, "ifindex", ep.Ifindex)
	a.triggerPolicy()
	return nil
}

func (a *Agent) handleDeleteEndpoint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.deleteEndpoint(id); err != nil {
		a.log.Error("endpoint delete failed", "container", id, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) deleteEndpoint(containerID string) error {
	a.mu.Lock()
	ep, ok := a.endpoints[containerID]
	delete(a.endpoints, containerID)
	a.mu.Unlock()
	if !ok {
		return nil // idempotent
	}
	var errs []error
	if err := a.dp.DetachEndpoint(ep.Ifindex); err != nil {
		errs = append(errs, err)
	}
	if err := a.dp.Maps.DeleteEndpoint(uint32(ep.Ifindex)); err != nil {
		errs = append(errs, err)
	}
	if err := removeIfExists(a.endpointPath(containerID)); err != nil {
		errs = append(errs, err)
	}
	a.log.Info("endpoint deleted", "container", containerID, "pod", ep.PodNamespace+"/"+ep.PodName, "ip", ep.IP)
	a.triggerPolicy()
	if len(errs) > 0 {
		// The endpoint is gone from the agent's view either way; report but do not block DEL.
		a.log.Warn("endpoint cleanup incomplete", "container", containerID, "err", errors.Join(errs...))
	}
	return nil
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
