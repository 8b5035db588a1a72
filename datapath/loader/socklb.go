package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SocketLB is the socket-level load balancer (bpf/sock.c) attached to one cgroup v2 directory:
// connect4, sendmsg4, recvmsg4 and getpeername4. Its links are not pinned: Close (or the exit of
// the process holding it) detaches every hook, so nothing of it outlives the agent.
type SocketLB struct {
	cgroup string
	links  []link.Link
}

// AttachSocketLB attaches the socket LB hooks to the cgroup v2 directory dir, which must not be
// the root of the cgroup v2 hierarchy: the hooks run for every process below it, on every network
// namespace (the programs only translate sockets of sl_config.sock_netns_cookie). A root cgroup is
// recognised by its missing cgroup.type (the kernel shows that file on every cgroup but the root).
func (d *Datapath) AttachSocketLB(dir string) (*SocketLB, error) {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("socket LB cgroup %s is not a cgroup v2 directory: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); err != nil {
		return nil, fmt.Errorf("socket LB cgroup %s is the root of the cgroup v2 hierarchy (no cgroup.type): attaching there would hook every process of the machine; give the node's own cgroup", dir)
	}
	s := &SocketLB{cgroup: dir}
	for _, h := range []struct {
		name string
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{"connect4", d.sock.SlSockConnect4, ebpf.AttachCGroupInet4Connect},
		{"sendmsg4", d.sock.SlSockSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"recvmsg4", d.sock.SlSockRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
		{"getpeername4", d.sock.SlSockGetpeername4, ebpf.AttachCgroupInet4GetPeername},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: h.at, Program: h.prog})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("attach socket LB %s to cgroup %s: %w", h.name, dir, err), s.Close())
		}
		s.links = append(s.links, l)
	}
	return s, nil
}

// Cgroup is the directory the hooks are attached to.
func (s *SocketLB) Cgroup() string { return s.cgroup }

// Close detaches every hook.
func (s *SocketLB) Close() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach socket LB from %s: %w", s.cgroup, err)
	}
	return nil
}

// SockConnect4 is the cgroup/connect4 program (per-connect cost in benchmarks).
func (d *Datapath) SockConnect4() *ebpf.Program { return d.sock.SlSockConnect4 }
