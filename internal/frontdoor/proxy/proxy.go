// Package proxy is Baton's per-group layer-4 TCP proxy, the front door for clients that cannot follow a VIP or a
// DNS name: every agent listens on the group's proxy.listen address and forwards each new client connection to the
// group's current owner (active-passive) or spreads them over the healthy owners (active-active).
//
// The agent calls Update on every ownership change. From the moment Update returns, new connections go to the new
// targets only: a dial to a removed target that was in flight is cancelled, and one that completes anyway is
// closed unused and the client is sent to a current target instead. How the previous targets lost the group
// decides what happens to the connections they already carry: after a Failover they are reset at once, so clients
// do not hang on a dead owner; after a Switchover they may finish within DrainTimeout.
//
// See README.md for the rules in full.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// Target is one place the group's service runs.
type Target struct {
	Node string // the owner's node name, for logs, Stats and Options.OnConn
	Addr string // host:port of the service on that owner
}

func (t Target) String() string { return t.Node + "(" + t.Addr + ")" }

// Change says how the targets that an Update removes lost the group, and so what happens to their connections.
type Change int

const (
	// Failover: the owner died or was fenced. Its connections are reset at once, both sides, so the client
	// learns now rather than after its own timeout on an owner that will never answer.
	Failover Change = iota
	// Switchover: the owner handed the group over in an orderly way. Its connections keep working until they end
	// or DrainTimeout passes, whichever is first; at the deadline the rest are reset.
	Switchover
)

func (c Change) String() string {
	switch c {
	case Failover:
		return "failover"
	case Switchover:
		return "switchover"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// Default timings, with the reason for each.
const (
	// DefaultDrainTimeout lets a request in progress (an HTTP request, a short transaction) finish after a
	// switchover without keeping a long-lived connection on the old owner for long.
	DefaultDrainTimeout = 10 * time.Second
	// DefaultDialTimeout: a service on a LAN answers a SYN in well under a millisecond; a second covers a
	// loaded host and lets a client go to the next target before its own connect timeout fires.
	DefaultDialTimeout = time.Second
	// failedDialPenalty is how long a target whose dial failed is tried after all others: long enough that new
	// connections do not each pay a failed dial, short enough that a restarted service gets traffic soon.
	failedDialPenalty = time.Second
	// DefaultMaxConns bounds the client connections one proxy holds (each costs two file descriptors here), so
	// that clients that connect and stay silent cannot exhaust the agent's descriptors; beyond it new
	// connections are reset at once. Far above what one group's clients need on a LAN.
	DefaultMaxConns = 4096
)

// Options configure a Proxy. Only Listen is required.
type Options struct {
	Listen       string        // host:port to listen on, e.g. ":9080" (the group's proxy.listen)
	DrainTimeout time.Duration // how long a Switchover lets old connections run; 0 means DefaultDrainTimeout
	DialTimeout  time.Duration // per dial to a target; 0 means DefaultDialTimeout
	// MaxConns bounds the open client connections (0 means DefaultMaxConns); IdleTimeout, when set, resets a
	// connection on which neither side sent anything for that long (0: never, as for a database connection
	// that idles legitimately).
	MaxConns    int
	IdleTimeout time.Duration
	Log         *slog.Logger // nil discards
	// OnConn, if set, is called with the target's node each time a client connection is connected to a target.
	// It runs on the connection's goroutine, concurrently with other calls, and must not block.
	OnConn func(node string)
}

// Stats is a snapshot of a Proxy's counters.
type Stats struct {
	// Targets lists the current targets in Update order, then the removed targets whose connections are still
	// open (Current false: draining after a Switchover, or closing).
	Targets          []TargetStats
	Accepted         uint64 // client connections accepted
	Refused          uint64 // reset at once because there was no target
	Unreachable      uint64 // reset because the dial to every target failed
	DialFailures     uint64 // dials to a target that failed (a connection may count several)
	ClosedOnFailover uint64 // reset because a Failover removed their target
	Drained          uint64 // ended by themselves while their target drained after a Switchover
	DrainTimedOut    uint64 // still open at the drain deadline, and reset
	OverLimit        uint64 // reset at once because MaxConns connections were open
}

// TargetStats is one target's share of Stats.
type TargetStats struct {
	Target
	Current bool // in the latest Update
	Active  int  // open connections through the proxy
}

// dialFunc opens a connection to addr. Tests replace it to hold a dial open across an Update.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Proxy is one group's listener. Its methods are safe for concurrent use.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	ln     *net.TCPListener
	dial   dialFunc
	ctx    context.Context // cancelled by Close; parent of every target's context
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	targets []*target              // current, in Update order
	old     map[*target]struct{}   // removed, with connections still open
	timers  map[*time.Timer]func() // drain deadlines not yet passed → their wg release
	next    int                    // where the round-robin tie-break starts
	stats   Stats                  // counters only; Targets is filled in by Stats
	open    int                    // client connections being served (MaxConns bounds it)

	limitLog *rate.Limiter // saying that MaxConns was reached, now and then
}

// target is one Target between the Update that added it and the Update that removed it. A target that is removed
// and added again later is a new *target: connections of the removed one keep the fate of their removal.
type target struct {
	Target
	ctx      context.Context // cancelled when the target is removed: aborts its dials in flight
	cancel   context.CancelFunc
	removed  bool
	dialing  int // dials in flight, counted as load so a burst of clients does not all pick the same target
	conns    map[*conn]struct{}
	failedAt time.Time // of the last failed dial; zero after a dial succeeds
}

// conn is one client connection connected to a target.
type conn struct {
	client *net.TCPConn
	server net.Conn
	t      *target
	cut    bool // the proxy reset it (failover, drain deadline, Close); guarded by Proxy.mu
}

// Listen starts a proxy on opts.Listen with no targets: until the first Update it refuses every connection.
func Listen(opts Options) (*Proxy, error) {
	return listen(opts, nil)
}

func listen(opts Options, dial dialFunc) (*Proxy, error) {
	switch {
	case opts.Listen == "":
		return nil, errors.New(`proxy: no listen address; set proxy.listen to host:port, e.g. ":9080"`)
	case opts.DrainTimeout < 0:
		return nil, fmt.Errorf("proxy %s: drain timeout %v is negative; use 0 for the default (%v)",
			opts.Listen, opts.DrainTimeout, DefaultDrainTimeout)
	case opts.DialTimeout < 0:
		return nil, fmt.Errorf("proxy %s: dial timeout %v is negative; use 0 for the default (%v)",
			opts.Listen, opts.DialTimeout, DefaultDialTimeout)
	case opts.MaxConns < 0 || opts.IdleTimeout < 0:
		return nil, fmt.Errorf("proxy %s: max connections %d / idle timeout %v is negative; use 0 for the default",
			opts.Listen, opts.MaxConns, opts.IdleTimeout)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, listenError(opts.Listen, err)
	}
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		opts:   opts,
		log:    log.With("component", "proxy", "listen", ln.Addr().String()),
		ln:     ln.(*net.TCPListener),
		dial:   dial,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		old:    map[*target]struct{}{},
		timers: map[*time.Timer]func(){},

		limitLog: rate.NewLimiter(rate.Every(10*time.Second), 1),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func listenError(addr string, err error) error {
	var hint string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		hint = "another process, or another group's proxy.listen, holds it; stop that or choose another proxy.listen"
	case errors.Is(err, syscall.EACCES):
		hint = "ports below 1024 need root or CAP_NET_BIND_SERVICE; grant it or choose a port from 1024 up"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = `the address is not on this host; use one of its addresses, or none (":9080") to listen on all`
	default:
		hint = `proxy.listen must be host:port on this host, e.g. ":9080" or "10.0.0.5:9080"`
	}
	return fmt.Errorf("proxy: cannot listen on %q: %w; %s", addr, err, hint)
}

// Addr is the address the proxy listens on (useful with port 0).
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Update replaces the targets. Connections accepted after Update returns go only to targets, and a dial to a
// removed target still in flight is cancelled (or, if it connects anyway, closed unused and the client sent to a
// current target). how decides the fate of the removed targets' open connections (see Change). Targets that stay
// keep their connections. An empty list makes the proxy refuse new connections. Update after Close does nothing.
func (p *Proxy) Update(targets []Target, how Change) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	cur := make(map[Target]*target, len(p.targets))
	for _, t := range p.targets {
		cur[t.Target] = t
	}
	next := make([]*target, 0, len(targets))
	seen := make(map[Target]bool, len(targets))
	for _, nt := range targets {
		if seen[nt] {
			continue
		}
		seen[nt] = true
		t, ok := cur[nt]
		if !ok {
			ctx, cancel := context.WithCancel(p.ctx)
			t = &target{Target: nt, ctx: ctx, cancel: cancel, conns: map[*conn]struct{}{}}
		}
		next = append(next, t)
	}
	var cut []*conn
	var removed []string
	for _, t := range p.targets {
		if seen[t.Target] {
			continue
		}
		removed = append(removed, t.String())
		t.removed = true
		t.cancel()
		if len(t.conns) == 0 {
			continue
		}
		p.old[t] = struct{}{}
		switch how {
		case Failover:
			for c := range t.conns {
				c.cut = true
				cut = append(cut, c)
			}
			p.stats.ClosedOnFailover += uint64(len(t.conns))
		default:
			p.drainLocked(t)
		}
	}
	p.targets = next
	p.mu.Unlock()

	for _, c := range cut {
		c.reset()
	}
	p.log.Info("targets updated", "targets", targets, "removed", removed, "change", how.String(), "reset", len(cut))
}

// drainLocked resets t's remaining connections at the drain deadline. The timer holds a place in p.wg so that
// Close waits for a deadline that is firing; Close releases the place of a timer it stops.
func (p *Proxy) drainLocked(t *target) {
	p.wg.Add(1)
	var tm *time.Timer
	tm = time.AfterFunc(p.opts.DrainTimeout, func() {
		defer p.wg.Done()
		p.mu.Lock()
		delete(p.timers, tm)
		if p.closed {
			p.mu.Unlock()
			return
		}
		var cut []*conn
		for c := range t.conns {
			c.cut = true
			cut = append(cut, c)
		}
		p.stats.DrainTimedOut += uint64(len(cut))
		p.mu.Unlock()
		for _, c := range cut {
			c.reset()
		}
		if len(cut) > 0 {
			p.log.Info("drain deadline: reset connections", "target", t.String(), "reset", len(cut))
		}
	})
	p.timers[tm] = p.wg.Done
}

// Stats returns a snapshot of the counters and of the open connections per target.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Targets = nil
	for _, t := range p.targets {
		s.Targets = append(s.Targets, TargetStats{Target: t.Target, Current: true, Active: len(t.conns)})
	}
	for t := range p.old {
		s.Targets = append(s.Targets, TargetStats{Target: t.Target, Active: len(t.conns)})
	}
	return s
}

// Close stops listening, resets every connection, cancels dials in flight and waits until every goroutine of the
// proxy has returned. It returns the error of closing the listener; calls after the first return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var cut []*conn
	for _, ts := range [][]*target{p.targets, keys(p.old)} {
		for _, t := range ts {
			for c := range t.conns {
				c.cut = true
				cut = append(cut, c)
			}
		}
	}
	for tm, release := range p.timers {
		if tm.Stop() {
			release()
		}
	}
	clear(p.timers)
	p.mu.Unlock()

	close(p.done)
	err := p.ln.Close()
	p.cancel()
	for _, c := range cut {
		c.reset()
	}
	p.wg.Wait()
	return err
}

func keys(m map[*target]struct{}) []*target {
	ts := make([]*target, 0, len(m))
	for t := range m {
		ts = append(ts, t)
	}
	return ts
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var delay time.Duration
	for {
		client, err := p.ln.AcceptTCP()
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			// Out of file descriptors or similar: back off as net/http does, rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed; retrying", "err", err, "in", delay)
			select {
			case <-p.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		p.mu.Lock()
		p.stats.Accepted++
		full := p.open >= p.opts.MaxConns
		if full {
			p.stats.OverLimit++
		} else {
			p.open++
		}
		p.mu.Unlock()
		if full {
			if p.limitLog.Allow() {
				p.log.Warn("too many client connections: resetting new ones", "max_connections", p.opts.MaxConns)
			}
			resetConn(client)
			continue
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	}()
	c := p.connect(client)
	if c == nil {
		return
	}
	if p.opts.OnConn != nil {
		p.opts.OnConn(c.t.Node)
	}
	var fromClient, fromServer io.Reader = c.client, c.server
	if p.opts.IdleTimeout > 0 {
		// Both directions share one clock of activity: a client that only
		// listens to a streaming server is not idle.
		last := &atomic.Int64{}
		last.Store(time.Now().UnixNano())
		fromClient = &idleReader{c: c.client, idle: p.opts.IdleTimeout, last: last}
		fromServer = &idleReader{c: c.server, idle: p.opts.IdleTimeout, last: last}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(c.client, fromServer)
	}()
	pipe(c.server, fromClient)
	<-done

	p.mu.Lock()
	delete(c.t.conns, c)
	if c.t.removed {
		if !c.cut {
			p.stats.Drained++
		}
		if len(c.t.conns) == 0 {
			delete(p.old, c.t)
		}
	}
	p.mu.Unlock()
	c.client.Close()
	c.server.Close()
}

// connect dials a target for client and registers the connection, or resets client and returns nil. It picks the
// least loaded current target, and after a failed dial the next one, until every current target failed once.
func (p *Proxy) connect(client *net.TCPConn) *conn {
	tried := map[*target]bool{}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			return nil
		}
		t := p.pickLocked(tried)
		if t == nil {
			if len(tried) == 0 {
				p.stats.Refused++
			} else {
				p.stats.Unreachable++
			}
			p.mu.Unlock()
			resetConn(client)
			return nil
		}
		t.dialing++
		p.mu.Unlock()

		ctx, cancel := context.WithTimeout(t.ctx, p.opts.DialTimeout)
		server, err := p.dial(ctx, t.Addr)
		cancel()

		p.mu.Lock()
		t.dialing--
		// t.removed is read under the lock Update holds while it sets it: a dial that completes after the Update
		// that removed t returned is never used. That is the guarantee; cancelling t.ctx only makes it quick.
		if err == nil && !t.removed && !p.closed {
			c := &conn{client: client, server: server, t: t}
			t.conns[c] = struct{}{}
			t.failedAt = time.Time{}
			p.mu.Unlock()
			return c
		}
		if err != nil && !t.removed && !p.closed {
			p.stats.DialFailures++
			tried[t] = true
			if t.failedAt.IsZero() {
				p.log.Warn("cannot connect to target", "target", t.String(), "err", err)
			}
			t.failedAt = time.Now()
		}
		p.mu.Unlock()
		if server != nil {
			resetConn(server)
		}
	}
}

// pickLocked returns the current target, not in tried, with the fewest connections (open plus being dialled),
// starting the search after the previous pick so that ties go round-robin. Targets whose last dial failed less
// than failedDialPenalty ago come only after all others.
func (p *Proxy) pickLocked(tried map[*target]bool) *target {
	n := len(p.targets)
	var best *target
	var bestIdx, bestLoad int
	var bestFailed bool
	now := time.Now()
	for i := range n {
		idx := (p.next + i) % n
		t := p.targets[idx]
		if tried[t] {
			continue
		}
		load := len(t.conns) + t.dialing
		failed := !t.failedAt.IsZero() && now.Sub(t.failedAt) < failedDialPenalty
		if best == nil || (!failed && bestFailed) || (failed == bestFailed && load < bestLoad) {
			best, bestIdx, bestLoad, bestFailed = t, idx, load, failed
		}
	}
	if best != nil {
		p.next = bestIdx + 1
	}
	return best
}

// pipe copies src to dst. At src's EOF it passes the half-close on (CloseWrite) and the other direction carries
// on. On an error (a reset, or the proxy cutting the connection) it resets both sides, so the peer of the side
// that broke learns of it too. With both ends *net.TCPConn, io.Copy moves the bytes with splice(2).
func pipe(dst net.Conn, src io.Reader) {
	if _, err := io.Copy(dst, src); err != nil {
		resetConn(dst)
		if r, ok := src.(*idleReader); ok {
			resetConn(r.c)
		} else if c, ok := src.(net.Conn); ok {
			resetConn(c)
		}
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}

// idleReader reads from c with a deadline that moves with the activity of
// both directions (last, unix ns): it fails only when neither side sent
// anything for idle. It costs the splice(2) fast path, so it is used only
// when an idle timeout is configured.
type idleReader struct {
	c    net.Conn
	idle time.Duration
	last *atomic.Int64
}

func (r *idleReader) Read(b []byte) (int, error) {
	for {
		_ = r.c.SetReadDeadline(time.Now().Add(r.idle))
		n, err := r.c.Read(b)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && n == 0 && time.Since(time.Unix(0, r.last.Load())) < r.idle {
			continue // the other direction was active meanwhile
		}
		return n, err
	}
}

// reset cuts both sides of c with a RST. A cut connection is never ended with a FIN, so that a client reading
// until EOF cannot take a cut-off reply for a whole one.
func (c *conn) reset() {
	resetConn(c.client)
	resetConn(c.server)
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
