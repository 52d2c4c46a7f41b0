package driver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// respClient is the Redis driver's connection to one server: a single connection, opened on first use and
// after any network error, with one command (or one pipeline) at a time and no retries. The driver decides what
// to retry, and a dead server costs one refused dial, not a pool's backoff.
type respClient struct {
	addr        string
	cred        *credential // nil: no AUTH
	dialTimeout time.Duration
	ioTimeout   time.Duration

	mu   sync.Mutex
	conn net.Conn
	rd   *bufio.Reader
}

// respError is an error reply ("-ERR ...", "-NOREPLICAS ...").
type respError string

func (e respError) Error() string { return string(e) }

// errNotRESP: the peer answered with bytes that are not a Redis reply.
var errNotRESP = errors.New("not a Redis reply")

func newRESPClient(addr string, cred *credential, dialTimeout, ioTimeout time.Duration) *respClient {
	return &respClient{addr: addr, cred: cred, dialTimeout: dialTimeout, ioTimeout: ioTimeout}
}

// Close drops the connection; the next command dials again.
func (c *respClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
}

func (c *respClient) dropLocked() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.rd = nil, nil
	}
}

// Do runs one command. An error reply is returned as a respError.
func (c *respClient) Do(ctx context.Context, args ...string) (any, error) {
	res, err := c.Pipeline(ctx, args)
	if err != nil {
		return nil, err
	}
	if e, ok := res[0].(respError); ok {
		return nil, e
	}
	return res[0], nil
}

// Pipeline sends the commands at once and reads every reply (error replies are respError values in the result;
// the error is for the connection).
func (c *respClient) Pipeline(ctx context.Context, cmds ...[]string) ([]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reused := c.conn != nil
	if err := c.connectLocked(ctx); err != nil {
		return nil, err
	}
	res, err := c.roundTrip(ctx, cmds)
	if err != nil {
		c.dropLocked()
		// A connection the server closed while it sat idle (a fence's CLIENT KILL, a timeout): dial once more.
		if reused && ctx.Err() == nil && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
			if err := c.connectLocked(ctx); err != nil {
				return nil, err
			}
			if res, err = c.roundTrip(ctx, cmds); err != nil {
				c.dropLocked()
			}
		}
	}
	return res, err
}

func (c *respClient) connectLocked(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: c.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return err
	}
	c.conn, c.rd = conn, bufio.NewReader(conn)
	if c.cred != nil {
		pw, err := c.cred.password()
		if err != nil {
			c.dropLocked()
			return err
		}
		res, err := c.roundTrip(ctx, [][]string{{"AUTH", c.cred.user, pw}})
		if err == nil {
			if e, ok := res[0].(respError); ok {
				err = e
			}
		}
		if err != nil {
			c.dropLocked()
			return err
		}
	}
	return nil
}

func (c *respClient) roundTrip(ctx context.Context, cmds [][]string) ([]any, error) {
	deadline := time.Now().Add(c.ioTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Now()) })
	defer stop()
	var b strings.Builder
	for _, args := range cmds {
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		return nil, c.ctxErr(ctx, err)
	}
	out := make([]any, 0, len(cmds))
	for range cmds {
		v, err := readRESP(c.rd, 0)
		if err != nil {
			return nil, c.ctxErr(ctx, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (c *respClient) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// respMaxLen bounds one bulk string or array: INFO and CLIENT LIST are kilobytes; a peer that claims more is not
// a Redis the driver talks to.
const respMaxLen = 64 << 20

// readRESP reads one RESP2 reply: a string (simple or bulk; nil for a null bulk), respError, int64 or []any.
func readRESP(r *bufio.Reader, depth int) (any, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%w: nested too deep", errNotRESP)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: %q", errNotRESP, trimForError(line))
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return respError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", errNotRESP, trimForError(body))
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > respMaxLen {
			return nil, fmt.Errorf("%w: bulk length %q", errNotRESP, trimForError(body))
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, fmt.Errorf("%w: bulk string not terminated", errNotRESP)
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("%w: array length %q", errNotRESP, trimForError(body))
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, 0, min(n, 64))
		for range n {
			v, err := readRESP(r, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %q", errNotRESP, trimForError(line))
}

func trimForError(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}
