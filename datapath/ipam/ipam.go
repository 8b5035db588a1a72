// Package ipam is the node-local, file-backed IPv4 allocator for a node's pod CIDR.
//
// Every allocated address is one file named after the address inside the state directory, holding
// the owning container ID and interface name. All mutations happen under an exclusive flock on
// "<dir>/lock", so concurrent CNI invocations (separate processes) and goroutines never hand out the
// same address twice, and the state survives agent and node restarts. The network address, the first
// host address (reserved as the gateway) and the broadcast address are never allocated.
package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrExhausted is returned when every usable address of the pod CIDR is taken.
var ErrExhausted = errors.New("pod CIDR exhausted")

const (
	lockFile = "lock"
	lastFile = "last-reserved"
)

// Allocation is one allocated address and its owner.
type Allocation struct {
	IP          netip.Addr
	ContainerID string
	IfName      string
}

// Allocator hands out addresses of one IPv4 prefix, with state in one directory.
type Allocator struct {
	dir    string
	prefix netip.Prefix
}

// New returns an allocator for podCIDR keeping its state in dir (created if missing). The prefix
// must be IPv4 and hold at least one usable address (/30 or shorter).
func New(dir string, podCIDR netip.Prefix) (*Allocator, error) {
	if !podCIDR.IsValid() || !podCIDR.Addr().Is4() {
		return nil, fmt.Errorf("ipam: pod CIDR %q must be an IPv4 prefix like 10.244.1.0/24", podCIDR)
	}
	if podCIDR.Bits() > 30 {
		return nil, fmt.Errorf("ipam: pod CIDR %s is too small: use /30 or shorter", podCIDR)
	}
	if dir == "" {
		return nil, errors.New("ipam: empty state directory: set ipamDir in the CNI config")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ipam: create state dir %s: %w", dir, err)
	}
	return &Allocator{dir: dir, prefix: podCIDR.Masked()}, nil
}

// Prefix returns the managed prefix.
func (a *Allocator) Prefix() netip.Prefix { return a.prefix }

// Gateway returns the reserved first host address of the prefix.
func (a *Allocator) Gateway() netip.Addr { return a.prefix.Addr().Next() }

// withLock runs fn while holding the exclusive flock, waiting for it until ctx is done.
func (a *Allocator) withLock(ctx context.Context, fn func() error) error {
	f, err := os.OpenFile(filepath.Join(a.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("ipam: open lock file: %w", err)
	}
	defer f.Close()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("ipam: lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipam: waiting for lock %s: %w", f.Name(), ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the fd releases it too
	return fn()
}

func (a *Allocator) usable(ip netip.Addr) bool {
	if !a.prefix.Contains(ip) {
		return false
	}
	first := a.prefix.Addr()
	if ip == first || ip == first.Next() {
		return false // network, gateway
	}
	return ip != lastAddr(a.prefix) // broadcast
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Allocate returns the address owned by (containerID, ifName), allocating a free one if it has none.
// Allocation is round-robin after the last reserved address, so a freed address is not reused at once.
func (a *Allocator) Allocate(ctx context.Context, containerID, ifName string) (netip.Addr, error) {
	if err := validID(containerID); err != nil {
		return netip.Addr{}, err
	}
	var got netip.Addr
	err := a.withLock(ctx, func() error {
		all, err := a.list()
		if err != nil {
			return err
		}
		for _, al := range all {
			if al.ContainerID == containerID && al.IfName == ifName {
				got = al.IP
				return nil
			}
		}
		start := a.Gateway()
		if b, err := os.ReadFile(filepath.Join(a.dir, lastFile)); err == nil {
			if ip, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && a.prefix.Contains(ip) {
				start = ip
			}
		}
		ip := start
		for {
			ip = ip.Next()
			if !a.prefix.Contains(ip) {
				ip = a.prefix.Addr()
			}
			if a.usable(ip) {
				path := filepath.Join(a.dir, ip.String())
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err == nil {
					_, werr := f.WriteString(containerID + "\n" + ifName + "\n")
					if werr == nil {
						werr = f.Sync()
					}
					if cerr := f.Close(); werr == nil {
						werr = cerr
					}
					if werr != nil {
						os.Remove(path)
						return fmt.Errorf("ipam: record %s for %s: %w", ip, containerID, werr)
					}
					if err := writeFileAtomic(filepath.Join(a.dir, lastFile), []byte(ip.String())); err != nil {
						return err
					}
					got = ip
					return nil
				}
				if !errors.Is(err, os.ErrExist) {
					return fmt.Errorf("ipam: reserve %s: %w", ip, err)
				}
			}
			if ip == start {
				return fmt.Errorf("ipam: allocate for container %s in %s: %w", containerID, a.prefix, ErrExhausted)
			}
		}
	})
	return got, err
}

// Release frees every address owned by containerID. Releasing an unknown container is not an error.
func (a *Allocator) Release(ctx context.Context, containerID string) error {
	if err := validID(containerID); err != nil {
		return err
	}
	return a.withLock(ctx, func() error {
		all, err := a.list()
		if err != nil {
			return err
		}
		for _, al := range all {
			if al.ContainerID == containerID {
				if err := os.Remove(filepath.Join(a.dir, al.IP.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("ipam: release %s of %s: %w", al.IP, containerID, err)
				}
			}
		}
		return nil
	})
}

// Lookup returns the addresses owned by containerID (any interface).
func (a *Allocator) Lookup(ctx context.Context, containerID string) ([]Allocation, error) {
	var out []Allocation
	err := a.withLock(ctx, func() error {
		all, err := a.list()
		for _, al := range all {
			if al.ContainerID == containerID {
				out = append(out, al)
			}
		}
		return err
	})
	return out, err
}

// List returns every allocation, sorted by address.
func (a *Allocator) List(ctx context.Context) ([]Allocation, error) {
	var out []Allocation
	err := a.withLock(ctx, func() error {
		var err error
		out, err = a.list()
		return err
	})
	return out, err
}

// GC frees every address whose container is not in live and returns the freed allocations.
func (a *Allocator) GC(ctx context.Context, live map[string]bool) ([]Allocation, error) {
	var freed []Allocation
	err := a.withLock(ctx, func() error {
		all, err := a.list()
		if err != nil {
			return err
		}
		for _, al := range all {
			if live[al.ContainerID] {
				continue
			}
			if err := os.Remove(filepath.Join(a.dir, al.IP.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("ipam: gc %s of %s: %w", al.IP, al.ContainerID, err)
			}
			freed = append(freed, al)
		}
		return nil
	})
	return freed, err
}

// list reads the state directory; the caller holds the lock. Files not named like an address of the
// prefix are ignored.
func (a *Allocator) list() ([]Allocation, error) {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return nil, fmt.Errorf("ipam: read state dir %s: %w", a.dir, err)
	}
	var out []Allocation
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !a.prefix.Contains(ip) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("ipam: read allocation %s: %w", e.Name(), err)
		}
		lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
		al := Allocation{IP: ip, ContainerID: strings.TrimSpace(lines[0])}
		if len(lines) > 1 {
			al.IfName = strings.TrimSpace(lines[1])
		}
		out = append(out, al)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}

func validID(id string) error {
	if id == "" || strings.ContainsAny(id, "\n/") {
		return fmt.Errorf("ipam: invalid container ID %q: must be non-empty without '/' or newlines", id)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("ipam: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ipam: publish %s: %w", path, err)
	}
	return nil
}
