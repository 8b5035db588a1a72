package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The db speaks a tiny line protocol over TCP, one command per line:
//
//	PING                 -> PONG
//	GET <key>            -> VAL <value> | NIL
//	SET <key> <value>    -> OK            (value is the rest of the line)
//	INCRBY <key> <n>     -> INT <new>     (a missing key counts as 0)
//	anything else        -> ERR <message>
//
// Keys have no spaces. Each connection may send many commands.

// DB is the in-memory key-value store behind the protocol.
type DB struct {
	mu   sync.Mutex
	data map[string]string
}

// NewDB returns an empty store.
func NewDB() *DB { return &DB{data: map[string]string{}} }

// Exec runs one command line and returns the answer line (without newline).
func (d *DB) Exec(line string) string {
	cmd, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch strings.ToUpper(cmd) {
	case "PING":
		return "PONG"
	case "GET":
		if rest == "" || strings.Contains(rest, " ") {
			return "ERR usage: GET <key>"
		}
		d.mu.Lock()
		v, ok := d.data[rest]
		d.mu.Unlock()
		if !ok {
			return "NIL"
		}
		return "VAL " + v
	case "SET":
		key, val, ok := strings.Cut(rest, " ")
		if !ok || key == "" {
			return "ERR usage: SET <key> <value>"
		}
		d.mu.Lock()
		d.data[key] = val
		d.mu.Unlock()
		return "OK"
	case "INCRBY":
		key, ns, ok := strings.Cut(rest, " ")
		n, err := strconv.ParseInt(ns, 10, 64)
		if !ok || key == "" || err != nil {
			return "ERR usage: INCRBY <key> <integer>"
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		cur := int64(0)
		if v, ok := d.data[key]; ok {
			if cur, err = strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Sprintf("ERR value of %s is not an integer", key)
			}
		}
		cur += n
		d.data[key] = strconv.FormatInt(cur, 10)
		return "INT " + strconv.FormatInt(cur, 10)
	default:
		return fmt.Sprintf("ERR unknown command %q: use PING, GET, SET or INCRBY", cmd)
	}
}

// ServeDB serves the protocol on l until ctx ends.
func ServeDB(ctx context.Context, l net.Listener, db *DB, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for {
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				if !sc.Scan() {
					return
				}
				if _, err := fmt.Fprintf(c, "%s\n", db.Exec(sc.Text())); err != nil {
					log.Debug("db write", "peer", c.RemoteAddr(), "err", err)
					return
				}
			}
		}()
	}
}

// ErrNotFound is returned by DBClient.Get for a missing key.
var ErrNotFound = errors.New("key not found")

// DBClient talks to a db at Addr, one connection per command (so each call is one visible flow).
type DBClient struct {
	Addr    string
	Timeout time.Duration
}

func (c DBClient) do(ctx context.Context, line string) (string, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr)
	if err != nil {
		return "", fmt.Errorf("connect to db %s: %w", c.Addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(conn, "%s\n", line); err != nil {
		return "", fmt.Errorf("send to db %s: %w", c.Addr, err)
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read answer from db %s: %w", c.Addr, err)
	}
	answer = strings.TrimSuffix(answer, "\n")
	if msg, ok := strings.CutPrefix(answer, "ERR "); ok {
		return "", fmt.Errorf("db %s: %s", c.Addr, msg)
	}
	return answer, nil
}

// Get returns the value of key or ErrNotFound.
func (c DBClient) Get(ctx context.Context, key string) (string, error) {
	a, err := c.do(ctx, "GET "+key)
	if err != nil {
		return "", err
	}
	if a == "NIL" {
		return "", ErrNotFound
	}
	v, ok := strings.CutPrefix(a, "VAL ")
	if !ok {
		return "", fmt.Errorf("db %s: unexpected answer %q to GET", c.Addr, a)
	}
	return v, nil
}

// Set stores value under key.
func (c DBClient) Set(ctx context.Context, key, value string) error {
	if strings.ContainsAny(key, " \n") || strings.Contains(value, "\n") {
		return fmt.Errorf("db key %q / value: no spaces in keys, no newlines anywhere", key)
	}
	a, err := c.do(ctx, "SET "+key+" "+value)
	if err != nil {
		return err
	}
	if a != "OK" {
		return fmt.Errorf("db %s: unexpected answer %q to SET", c.Addr, a)
	}
	return nil
}

// IncrBy adds n to the integer at key and returns the new value.
func (c DBClient) IncrBy(ctx context.Context, key string, n int64) (int64, error) {
	a, err := c.do(ctx, fmt.Sprintf("INCRBY %s %d", key, n))
	if err != nil {
		return 0, err
	}
	v, ok := strings.CutPrefix(a, "INT ")
	if !ok {
		return 0, fmt.Errorf("db %s: unexpected answer %q to INCRBY", c.Addr, a)
	}
	return strconv.ParseInt(v, 10, 64)
}
