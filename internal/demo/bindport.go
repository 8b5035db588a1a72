package demo

import (
	"fmt"
	"syscall"
)

// bindEphemeral binds a socket that is about to connect to an ephemeral port of the any-address, so
// its source port is known even when the connect then fails (a denied connection): flows of that
// connection can be found by it. It returns the control function for net.Dialer and where the port
// lands.
func bindEphemeral(port *int) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			var sa syscall.Sockaddr = &syscall.SockaddrInet4{}
			if network == "tcp6" || network == "udp6" {
				sa = &syscall.SockaddrInet6{}
			}
			if serr = syscall.Bind(int(fd), sa); serr != nil {
				serr = fmt.Errorf("bind source port: %w", serr)
				return
			}
			got, err := syscall.Getsockname(int(fd))
			if err != nil {
				serr = fmt.Errorf("read source port: %w", err)
				return
			}
			switch a := got.(type) {
			case *syscall.SockaddrInet4:
				*port = a.Port
			case *syscall.SockaddrInet6:
				*port = a.Port
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
