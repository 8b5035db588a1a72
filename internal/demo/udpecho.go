package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// ListenUDPEcho opens a UDP socket on addr:port that answers every datagram with the same bytes, so
// a UDP probe (Dial "udp") sees an answer when the path is open. It serves until ctx ends.
func ListenUDPEcho(ctx context.Context, addr string, port int) error {
	pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listen on UDP port %d: %w", port, err)
	}
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	go serveUDPEcho(pc)
	return nil
}

func serveUDPEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
