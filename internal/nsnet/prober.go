package nsnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/baton-ha/baton/internal/probe"
)

// ProbeTimeout bounds one probe of StartProber: connect, half-close, read
// the line.
const ProbeTimeout = probe.DefaultTimeout

// StartProber starts a probe.Whoami prober from the client namespace:
// every interval it opens a TCP connection to target ("ip:port"),
// half-closes it and reads the whoami line, with ProbeTimeout for the whole
// exchange. target must be a lab address (10.77.0.0/24, fd77::/64) or
// loopback. Close stops it; so does its own Stop.
func (l *Lab) StartProber(target string, every time.Duration) (*probe.Prober, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, fmt.Errorf("lab: StartProber: target %q: %w", target, err)
	}
	if err := checkTarget(ap.Addr()); err != nil {
		return nil, err
	}
	if _, err := l.handle(Client); err != nil {
		return nil, err
	}
	p, err := probe.Start(probe.Spec{Kind: probe.Whoami, Target: ap.String(), Every: every, Timeout: ProbeTimeout, Dial: l.Dialer(Client)})
	if err != nil {
		return nil, fmt.Errorf("lab: StartProber: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		p.Stop()
		return nil, ErrClosed
	}
	l.probers[p] = struct{}{}
	l.mu.Unlock()
	return p, nil
}

// Dialer returns a dialer whose sockets are created in host's namespace
// ("client" too), so a connection takes the path a program running there
// would take; the socket stays in the namespace for its whole life.
func (l *Lab) Dialer(host string) probe.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := l.InNS(host, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// HTTPClient returns an HTTP client whose connections are dialled from host's
// namespace (see Dialer), a new one per request, each request bounded by
// timeout. (http.Transport dials on goroutines of its own, which InNS alone
// would not put in the namespace.)
func (l *Lab) HTTPClient(host string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: l.Dialer(host), DisableKeepAlives: true}}
}

// checkTarget enforces the lab's address rule for observers.
func checkTarget(a netip.Addr) error {
	a = a.Unmap()
	if a.IsLoopback() || Prefix4.Contains(a) || Prefix6.Contains(a) {
		return nil
	}
	return fmt.Errorf("lab: target %s is outside the lab (%s, %s) and loopback; refusing to send to it", a, Prefix4, Prefix6)
}
