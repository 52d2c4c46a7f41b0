package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// closeTimeout bounds how long Close waits for queries in flight (a TCP client in the middle of a message).
const closeTimeout = 5 * time.Second

// listener is the Server's sockets and the goroutines serving them.
type listener struct {
	mu     sync.Mutex
	addr   netip.AddrPort
	udp    *dns.Server
	tcp    *dns.Server
	wg     sync.WaitGroup // the two serving goroutines
	closed bool
}

// Listen binds UDP and TCP on addr (host:port; port 0 picks a free port, the same one for both) and serves
// queries on them until Close. It returns once both sockets are bound and being served, or with an error that
// names the address and what to do about it. A Server listens on one address at most.
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("dns: listen %s: the server is closed", addr)
	}
	if s.udp != nil {
		return fmt.Errorf("dns: listen %s: already listening on %s", addr, s.addr)
	}
	pc, l, err := bind(addr)
	if err != nil {
		return err
	}
	// Answer responses with silence and everything else with ServeDNS, which has its own FORMERR and NOTIMP rules
	// (the library's default would answer multi-question queries before they are counted).
	accept := func(h dns.Header) dns.MsgAcceptAction {
		if h.Bits&(1<<15) != 0 { // QR: a response, perhaps spoofed to make us answer a victim
			return dns.MsgIgnore
		}
		return dns.MsgAccept
	}
	udp := &dns.Server{PacketConn: pc, Handler: s, MsgAcceptFunc: accept, UDPSize: 4096}
	tcp := &dns.Server{Listener: l, Handler: s, MsgAcceptFunc: accept}
	if err := s.serve(udp, tcp); err != nil {
		return fmt.Errorf("dns: serving %s: %w", addr, err)
	}
	s.udp, s.tcp = udp, tcp
	s.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s.log.Info("DNS server listening", "addr", s.addr, "zone", s.zone, "ttl", time.Duration(s.ttl)*time.Second)
	return nil
}

// serve runs each server in a goroutine of s.wg and returns once all have started, or shuts them down and
// returns the first error.
func (s *Server) serve(srvs ...*dns.Server) error {
	started := make(chan struct{}, len(srvs))
	failed := make(chan error, len(srvs))
	for _, srv := range srvs {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				if srv.PacketConn != nil {
					srv.PacketConn.Close() // ActivateAndServe leaves it open when it fails before serving
				}
				failed <- err
			}
		}()
	}
	var err error
	for range srvs {
		select {
		case <-started:
		case e := <-failed:
			err = e
		}
	}
	if err != nil {
		for _, srv := range srvs {
			_ = srv.Shutdown() // "not started" for the one that failed
		}
		s.wg.Wait()
		return err
	}
	return nil
}

// bind opens the UDP and the TCP socket on addr.
func bind(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns: listen address %q: %w; use host:port, e.g. 127.0.0.1:53 or [::]:53", addr, err)
	}
	// With port 0 the kernel picks the UDP port, and TCP takes the same number, which something else may hold.
	tries := 1
	if port == "0" {
		tries = 20
	}
	for range tries {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, listenError("udp", addr, err)
		}
		taddr := net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		l, err := net.Listen("tcp", taddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, listenError("tcp", taddr, err)
		}
	}
	return nil, nil, fmt.Errorf("dns: listen %s: found no port free for both UDP and TCP in %d tries; name a port", addr, tries)
}

func listenError(network, addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("dns: listen %s %s: the port is in use (another DNS server, e.g. systemd-resolved or "+
			"dnsmasq?); stop it, or set dns.listen (or the node's dns) to a free address: %w", network, addr, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("dns: listen %s %s: ports below 1024 need root or CAP_NET_BIND_SERVICE "+
			"(AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit): %w", network, addr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("dns: listen %s %s: the address is not on this host; use one of its addresses, "+
			"or 0.0.0.0 or [::] for all: %w", network, addr, err)
	}
	return fmt.Errorf("dns: listen %s %s: %w", network, addr, err)
}

// Addr returns the address Listen bound (the same port for UDP and TCP), or the zero AddrPort before Listen.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops serving and closes the sockets, waiting up to 5 s for queries in flight. After Close, Listen fails.
// Closing twice, or a Server that never listened, is not an error.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.udp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: closing %s: %w", s.addr, err)
	}
	s.wg.Wait()
	s.log.Info("DNS server closed", "addr", s.addr)
	return nil
}
