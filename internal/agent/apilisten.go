package agent

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// The API is reachable by anyone who can reach the node, and an agent that
// runs out of file descriptors fails its own health checks ("too many open
// files") and hands its groups away. So the API holds a bounded number of
// connections, each for a bounded time.
const (
	// apiMaxConns bounds the API's open connections; apiMaxPerSource bounds
	// one address's share, so one client cannot lock out load-balancer checks
	// and the CLI. Connections beyond either are closed at once.
	apiMaxConns     = 512
	apiMaxPerSource = 64
	// A request's headers must arrive within apiReadHeaderTimeout and its
	// body within apiReadTimeout (a body sent at 1 byte/s is cut off); an
	// answer must be written within apiWriteTimeout (streams lift it); an
	// idle keep-alive connection is closed after apiIdleTimeout.
	apiReadHeaderTimeout = 5 * time.Second
	apiReadTimeout       = 10 * time.Second
	apiWriteTimeout      = 30 * time.Second
	apiIdleTimeout       = 30 * time.Second
)

// limitListener closes connections beyond its bounds instead of serving them.
type limitListener struct {
	net.Listener
	max, perSource int
	log            *slog.Logger
	logLimit       *rate.Limiter

	mu     sync.Mutex
	open   int
	bySrc  map[netip.Addr]int
	refuse uint64
}

func newLimitListener(ln net.Listener, max, perSource int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, perSource: perSource, log: log,
		logLimit: rate.NewLimiter(rate.Every(10*time.Second), 1), bySrc: map[netip.Addr]int{}}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := netip.Addr{}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			src, _ = netip.AddrFromSlice(a.IP)
			src = src.Unmap()
		}
		l.mu.Lock()
		ok := l.open < l.max && l.bySrc[src] < l.perSource
		if ok {
			l.open++
			l.bySrc[src]++
		} else {
			l.refuse++
		}
		refused := l.refuse
		l.mu.Unlock()
		if !ok {
			if l.logLimit.Allow() {
				l.log.Warn("API connection refused: too many open", "remote", c.RemoteAddr().String(),
					"max", l.max, "max_per_address", l.perSource, "refused_so_far", refused)
			}
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	src  netip.Addr
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		if c.l.bySrc[c.src]--; c.l.bySrc[c.src] <= 0 {
			delete(c.l.bySrc, c.src)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// raiseFDLimit lifts the soft limit on open files to the hard limit: the
// defaults (1024 soft) are low for an agent that serves an API, a proxy per
// group and checks. Under systemd set LimitNOFILE= instead.
func raiseFDLimit(log *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur >= l.Max {
		return
	}
	want := l
	want.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		log.Warn("cannot raise the open files limit", "soft", l.Cur, "hard", l.Max, "err", err)
		return
	}
	log.Debug("raised the open files limit", "from", l.Cur, "to", want.Cur)
}
