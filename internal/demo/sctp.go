package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// errNoSCTP explains a kernel without SCTP (EPROTONOSUPPORT when opening the socket).
func errNoSCTP(err error) error {
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) {
		return fmt.Errorf("SCTP is not supported by this kernel (load the sctp module on the node): %w", err)
	}
	return err
}

// ListenSCTP accepts SCTP associations (one-to-one style socket) on addr:port and keeps each open
// until the peer closes it, so an SCTP probe sees the association established. It serves until ctx
// ends.
func ListenSCTP(ctx context.Context, addr string, port int) error {
	ip := netip.IPv4Unspecified()
	if addr != "" {
		a, err := netip.ParseAddr(addr)
		if err != nil || !a.Is4() {
			return fmt.Errorf("listen on SCTP port %d: address %q: want an IPv4 address", port, addr)
		}
		ip = a
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return fmt.Errorf("listen on SCTP port %d: %w", port, errNoSCTP(err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("listen on SCTP port %d: SO_REUSEADDR: %w", port, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: ip.As4()}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("listen on SCTP port %d: bind: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return fmt.Errorf("listen on SCTP port %d: %w", port, err)
	}
	// A listening SOCK_STREAM socket: the runtime poller accepts on it like on TCP.
	f := os.NewFile(uintptr(fd), "sctp-listen-"+strconv.Itoa(port))
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("listen on SCTP port %d: %w", port, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go acceptAndClose(l)
	return nil
}

// dialSCTP establishes an SCTP association (one-to-one style socket) from the next source port of
// ports to target (IPv4 host:port; names are resolved) before ctx's deadline, and closes it. It
// returns the local address it used (ip:port, known also when the association failed: 0.0.0.0:port).
func dialSCTP(ctx context.Context, ports *SourcePorts, target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", fmt.Errorf("sctp target %q: %w", target, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("sctp target %q: bad port", target)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		return "", fmt.Errorf("sctp target %q: resolve %s: %w", target, host, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return "", fmt.Errorf("sctp socket to %s: %w", target, errNoSCTP(err))
	}
	defer unix.Close(fd)
	var src int
	if err := ports.bindFD(fd, false, &src); err != nil {
		return "", fmt.Errorf("sctp socket to %s: %w", target, err)
	}
	local := net.JoinHostPort("0.0.0.0", strconv.Itoa(src))
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: ips[0].Unmap().As4()})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return local, fmt.Errorf("sctp connect %s: %w", target, err)
	}
	if err != nil {
		if err := waitWritable(ctx, fd); err != nil {
			return local, fmt.Errorf("sctp connect %s: %w", target, err)
		}
		soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return local, fmt.Errorf("sctp connect %s: SO_ERROR: %w", target, err)
		}
		if soErr != 0 {
			return local, fmt.Errorf("sctp connect %s: %w", target, unix.Errno(soErr))
		}
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		if a, ok := sa.(*unix.SockaddrInet4); ok {
			local = net.JoinHostPort(netip.AddrFrom4(a.Addr).String(), strconv.Itoa(a.Port))
		}
	}
	return local, nil
}

// waitWritable polls fd until it is writable (the non-blocking connect finished) or ctx ends.
func waitWritable(ctx context.Context, fd int) error {
	for {
		wait := 50 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 || ctx.Err() != nil {
			return fmt.Errorf("i/o timeout: %w", context.DeadlineExceeded)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}
