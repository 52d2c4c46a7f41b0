package nsnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	// rawWait is how long the whoami server waits for a client's first bytes
	// before treating it as a raw TCP client. Clients that half-close right
	// after connecting (the Prober does) get their answer at once.
	rawWait = 25 * time.Millisecond
	// connTimeout bounds one whoami connection.
	connTimeout = 2 * time.Second
)

// StartWhoami serves "I am <host>\n" on port in host's namespace, on
// 0.0.0.0 and [::]. An HTTP request (any method) gets it as a 200 text/plain
// body with "Connection: close"; any other client gets the bare line and the
// connection is closed. A client counts as HTTP if its first four bytes are
// an HTTP method; a client that sends nothing for 25 ms or half-closes (EOF)
// is raw. The listening sockets are created inside the namespace and stay
// there; serving runs on ordinary goroutines.
func (l *Lab) StartWhoami(host string, port int) error {
	if err := l.checkHost(host); err != nil {
		return err
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("lab: StartWhoami: port = %d, want 1..65535", port)
	}
	key := host + ":" + strconv.Itoa(port)
	l.mu.Lock()
	_, dup := l.whoami[key]
	l.mu.Unlock()
	if dup {
		return fmt.Errorf("lab: whoami already serving on %s", key)
	}
	s := &whoami{line: "I am " + host + "\n", conns: map[net.Conn]struct{}{}}
	err := l.InNS(host, func() error {
		ln4, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			return err
		}
		s.lns = append(s.lns, ln4)
		ln6, err := net.Listen("tcp6", net.JoinHostPort("::", strconv.Itoa(port)))
		if err != nil {
			if l.opts.IPv6 {
				ln4.Close()
				return err
			}
			return nil // IPv6 is off: the IPv4 listener is enough
		}
		s.lns = append(s.lns, ln6)
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab: whoami %s: %w", key, err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		s.close()
		return ErrClosed
	}
	l.whoami[key] = s
	l.mu.Unlock()
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.accept(ln)
	}
	l.log.Info("whoami", "host", host, "port", port)
	return nil
}

// StopWhoami stops the whoami server on host:port (a service failure).
func (l *Lab) StopWhoami(host string, port int) error {
	key := host + ":" + strconv.Itoa(port)
	l.mu.Lock()
	s, ok := l.whoami[key]
	delete(l.whoami, key)
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("lab: no whoami on %s", key)
	}
	s.close()
	return nil
}

type whoami struct {
	line string
	lns  []net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

func (s *whoami) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func (s *whoami) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	start := time.Now()
	_ = c.SetDeadline(start.Add(connTimeout))
	_ = c.SetReadDeadline(start.Add(rawWait))
	br := bufio.NewReader(c)
	first, _ := br.Peek(4)
	if !isHTTPMethod(first) {
		_, _ = c.Write([]byte(s.line))
		return
	}
	_ = c.SetReadDeadline(start.Add(connTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	req.Body.Close()
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(s.line))
	if req.Method != http.MethodHead {
		hdr += s.line
	}
	_, _ = c.Write([]byte(hdr))
}

func isHTTPMethod(b []byte) bool {
	switch string(b) {
	case "GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC":
		return true
	}
	return false
}

// close stops accepting, drops open connections and waits for the serving
// goroutines: sockets pin their namespace, so Close must not leave any.
func (s *whoami) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	for _, ln := range s.lns {
		ln.Close()
	}
	s.wg.Wait()
}
