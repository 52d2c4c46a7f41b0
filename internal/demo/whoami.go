package demo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// rawWait is how long the whoami service waits for a client's first
	// bytes before treating it as a raw TCP client. Clients that half-close
	// right after connecting (probe.Whoami does) get their answer at once.
	rawWait = 25 * time.Millisecond
	// connTimeout bounds one whoami connection.
	connTimeout = 2 * time.Second
)

// ServeWhoami answers one client of the "who am I" service with "I am
// NAME\n" and closes c. An HTTP request (any method) gets it as a 200
// text/plain body with "Connection: close" (HEAD: the headers only); any
// other client gets the bare line. A client counts as HTTP if its first four
// bytes are an HTTP method; one that sends nothing for 25 ms or half-closes
// (EOF) is raw. It is the one implementation behind `baton demo-service`
// and the namespace lab's whoami (internal/nsnet).
func ServeWhoami(c net.Conn, name string) {
	defer c.Close()
	line := "I am " + name + "\n"
	start := time.Now()
	_ = c.SetDeadline(start.Add(connTimeout))
	_ = c.SetReadDeadline(start.Add(rawWait))
	br := bufio.NewReader(c)
	first, _ := br.Peek(4)
	if !isHTTPMethod(first) {
		_, _ = c.Write([]byte(line))
		return
	}
	_ = c.SetReadDeadline(start.Add(connTimeout))
	req, err := http.ReadRequest(br)
	if err != nil {
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	req.Body.Close()
	hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(line))
	if req.Method != http.MethodHead {
		hdr += line
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

// WhoamiServer serves the "who am I" service (ServeWhoami) on the listeners
// handed to Serve until Close.
type WhoamiServer struct {
	name string
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	conns  map[net.Conn]struct{}
}

// NewWhoamiServer returns a server answering "I am name".
func NewWhoamiServer(name string) *WhoamiServer {
	return &WhoamiServer{name: name, conns: map[net.Conn]struct{}{}}
}

// Serve accepts clients on ln in the background; Close closes ln.
func (s *WhoamiServer) Serve(ln net.Listener) {
	s.mu.Lock()
	s.lns = append(s.lns, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	go s.accept(ln)
}

func (s *WhoamiServer) accept(ln net.Listener) {
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
		go func() {
			defer s.wg.Done()
			ServeWhoami(c, s.name)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, drops open connections and waits for the serving
// goroutines (in the lab, sockets pin their namespace: none may be left).
func (s *WhoamiServer) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	lns := s.lns
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	s.wg.Wait()
}

// Whoami serves "I am NODE" over HTTP on addr with keep-alive, as a real
// web service would; call the returned func to stop it. Unlike ServeWhoami
// it keeps a client's connection open between requests: the demo's proxy
// and the client tests hold one across a failover and must see the front
// door, not the service, end it.
func Whoami(addr, node string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "I am %s\n", node)
	})}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}
