package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// SourcePorts hands out the source ports of probe sockets in turn through the kernel's ephemeral
// range, starting at a random point, so one probe process reuses a source port only after going
// through the whole range (about 28,000 connections by default). The kernel picks UDP ports at
// random, and a reused 5-tuple is one flow to every conntrack on the path: the destination forwards
// it as established without a NEW flow event (and Linux conntrack lets it through even when the
// policy now denies it). Safe for concurrent use.
type SourcePorts struct {
	mu     sync.Mutex
	lo, hi int
	next   int
}

// NewSourcePorts returns an allocator over [lo, hi] starting at a random port.
func NewSourcePorts(lo, hi int) *SourcePorts {
	return &SourcePorts{lo: lo, hi: hi, next: lo + rand.IntN(hi-lo+1)}
}

// NewEphemeralSourcePorts returns an allocator over the range of
// /proc/sys/net/ipv4/ip_local_port_range (32768-60999 when it cannot be read).
func NewEphemeralSourcePorts() *SourcePorts {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l > 0 && h >= l && h < 65536 {
				lo, hi = l, h
			}
		}
	}
	return NewSourcePorts(lo, hi)
}

func (s *SourcePorts) take() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.next
	s.next++
	if s.next > s.hi {
		s.next = s.lo
	}
	return p
}

// bindTries bounds the ports tried for one socket (ports in use by other sockets are skipped).
const bindTries = 64

// bind returns the control function for net.Dialer that binds the socket to the next free port of
// s on the any-address and stores it in *port (known even when the connect then fails: flows of a
// denied connection are found by it). A nil s binds port 0 (the kernel's choice).
func (s *SourcePorts) bind(port *int) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = s.bindFD(int(fd), network == "tcp6" || network == "udp6", port)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// bindFD binds socket fd to the next free port of s (nil s, or every port tried taken: the
// kernel's choice) and stores the port in *port.
func (s *SourcePorts) bindFD(fd int, six bool, port *int) error {
	sockaddr := func(p int) syscall.Sockaddr {
		if six {
			return &syscall.SockaddrInet6{Port: p}
		}
		return &syscall.SockaddrInet4{Port: p}
	}
	for try := 0; try < bindTries && s != nil; try++ {
		p := s.take()
		err := syscall.Bind(fd, sockaddr(p))
		if err == nil {
			*port = p
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err := syscall.Bind(fd, sockaddr(0)); err != nil {
		return fmt.Errorf("bind source port: %w", err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("read source port: %w", err)
	}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		*port = a.Port
	case *syscall.SockaddrInet6:
		*port = a.Port
	}
	return nil
}
