package nsnet

import (
	"fmt"
	"net"
	"strconv"

	"github.com/baton-ha/baton/internal/demo"
)

// StartWhoami serves "I am <host>\n" (demo.ServeWhoami: HTTP requests get a
// 200 text/plain body, raw TCP clients the bare line) on port in host's
// namespace, on 0.0.0.0 and [::]. The listening sockets are created inside
// the namespace and stay there; serving runs on ordinary goroutines.
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
	var lns []net.Listener
	err := l.InNS(host, func() error {
		ln4, err := net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			return err
		}
		lns = append(lns, ln4)
		ln6, err := net.Listen("tcp6", net.JoinHostPort("::", strconv.Itoa(port)))
		if err != nil {
			if l.opts.IPv6 {
				ln4.Close()
				return err
			}
			return nil // IPv6 is off: the IPv4 listener is enough
		}
		lns = append(lns, ln6)
		return nil
	})
	if err != nil {
		return fmt.Errorf("lab: whoami %s: %w", key, err)
	}
	s := demo.NewWhoamiServer(host)
	for _, ln := range lns {
		s.Serve(ln)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		s.Close()
		return ErrClosed
	}
	l.whoami[key] = s
	l.mu.Unlock()
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
	s.Close()
	return nil
}
