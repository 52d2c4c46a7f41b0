package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// backend is a "who am I" echo service on 127.0.0.1: on every connection it first writes its one-letter name and
// a newline, then echoes what it reads; at the client's EOF it closes.
type backend struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	once     sync.Once

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	if len(name) != 1 {
		t.Fatalf("backend name %q: want one letter, the clients read two bytes", name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
				}()
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) target() Target { return Target{Node: b.name, Addr: b.addr()} }

// open is the number of connections the backend has not yet seen end.
func (b *backend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

func (b *backend) stop() {
	b.once.Do(func() {
		b.ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
}

func startProxy(t *testing.T, opts Options, dial dialFunc) *Proxy {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	p, err := listen(opts, dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// who connects to addr and returns the connection and the name of the backend that answered, or an error.
func who(addr string) (net.Conn, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [2]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		c.Close()
		return nil, "", err
	}
	c.SetReadDeadline(time.Time{})
	return c, string(buf[:1]), nil
}

func mustWho(t *testing.T, p *Proxy) (net.Conn, string) {
	t.Helper()
	c, name, err := who(p.Addr().String())
	if err != nil {
		t.Fatalf("connecting through the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, name
}

// echoes checks that c still carries data both ways.
func echoes(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	msg := []byte("ping")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}

// cutWithin checks that c is closed by its peer within d, with a reset (not a timeout and not a clean EOF).
func cutWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Fatal("read data from a connection that should have been cut")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v", d)
	case !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("connection ended with %v, want a reset", err)
	}
}

// waitFor polls cond until it is true or within has passed.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still not %s", within, what)
		}
	}
}

func activeOn(p *Proxy, node string) int {
	n := 0
	for _, ts := range p.Stats().Targets {
		if ts.Node == node {
			n += ts.Active
		}
	}
	return n
}

func TestForwardsBothWaysWithHalfClose(t *testing.T) {
	a := startBackend(t, "a")
	var onConn atomic.Int64
	p := startProxy(t, Options{OnConn: func(node string) {
		if node == "a" {
			onConn.Add(1)
		}
	}}, nil)
	p.Update([]Target{a.target()}, Failover)

	c, name := mustWho(t, p)
	if name != "a" {
		t.Fatalf("answered by %q, want a", name)
	}
	echoes(t, c)

	// A bulk transfer, then a half-close: the echo must come back complete and end in EOF, which needs the
	// client's FIN passed to the backend and the backend's FIN passed back.
	data := make([]byte, 8<<20)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("echoed %d bytes, want the %d sent", len(b), len(data))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no EOF after the half-close")
	}
	waitFor(t, 5*time.Second, "done with the connection", func() bool { return activeOn(p, "a") == 0 })
	s := p.Stats()
	if s.Accepted != 1 || onConn.Load() != 1 || s.Refused != 0 || s.DialFailures != 0 {
		t.Fatalf("stats %+v, OnConn(a) called %d times; want 1 accepted, 1 OnConn", s, onConn.Load())
	}
}

func TestFailoverResetsOldConnectionsAtOnce(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, Options{DrainTimeout: time.Hour}, nil)
	p.Update([]Target{a.target()}, Failover)

	var old []net.Conn
	for range 5 {
		c, name := mustWho(t, p)
		if name != "a" {
			t.Fatalf("answered by %q, want a", name)
		}
		old = append(old, c)
	}
	p.Update([]Target{b.target()}, Failover)
	for _, c := range old {
		cutWithin(t, c, 5*time.Second) // a DrainTimeout of an hour: only the failover can have cut them
	}
	waitFor(t, 5*time.Second, "the old owner's connections closed", func() bool { return a.open() == 0 })

	c, name := mustWho(t, p)
	if name != "b" {
		t.Fatalf("after the failover answered by %q, want b", name)
	}
	echoes(t, c)
	s := p.Stats()
	if s.ClosedOnFailover != 5 {
		t.Fatalf("ClosedOnFailover = %d, want 5", s.ClosedOnFailover)
	}
	waitFor(t, 5*time.Second, "a gone from Stats", func() bool { return activeOn(p, "a") == 0 })
}

// TestNoConnectionToARemovedTarget runs clients in a loop while the target flips between a and b. A connection
// the client started after the Update of generation g returned must be answered by g's target, or by a later
// one's if another Update came while it connected. The dialler is slowed and ignores cancellation, so dials
// to a removed target do complete after the Update and must be thrown away.
func TestNoConnectionToARemovedTarget(t *testing.T) {
	for _, how := range []Change{Failover, Switchover} {
		t.Run(how.String(), func(t *testing.T) {
			a, b := startBackend(t, "a"), startBackend(t, "b")
			var d net.Dialer
			var stale atomic.Int64 // dials that completed after their target was removed
			slow := func(ctx context.Context, addr string) (net.Conn, error) {
				time.Sleep(time.Duration(time.Now().UnixNano()%3) * time.Millisecond)
				c, err := d.DialContext(context.Background(), "tcp", addr)
				if err == nil && ctx.Err() != nil {
					stale.Add(1)
				}
				return c, err
			}
			p := startProxy(t, Options{DrainTimeout: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}, slow)
			targets := []Target{a.target(), b.target()}
			// Generation g has targets[g%2]. begun is stored before Update(g) is called, done after it returned:
			// a client that read done == g before connecting must get g's target or a later one's, and g's
			// exactly if begun still says g when it has its answer.
			var begun, done atomic.Int64
			p.Update(targets[:1], how)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			var conns, late atomic.Int64
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						g := done.Load()
						c, name, err := who(p.Addr().String())
						after := begun.Load()
						if c != nil {
							c.Close()
						}
						conns.Add(1)
						want := targets[g%2].Node
						switch {
						case err != nil && after == g:
							mu.Lock()
							failures = append(failures, fmt.Sprintf("generation %d, no Update since: %v", g, err))
							mu.Unlock()
						case err == nil && name != want && after == g:
							mu.Lock()
							failures = append(failures, fmt.Sprintf("generation %d (%s): answered by %s", g, want, name))
							mu.Unlock()
						case err == nil && name != want:
							late.Add(1) // a later Update came while connecting: either answer is right
						}
					}
				}()
			}
			for i := 1; i <= 40; i++ {
				time.Sleep(10 * time.Millisecond)
				begun.Store(int64(i))
				p.Update(targets[i%2:i%2+1], how)
				done.Store(int64(i))
			}
			close(stop)
			wg.Wait()
			for _, f := range failures[:min(len(failures), 10)] {
				t.Error(f)
			}
			if len(failures) > 0 {
				t.Fatalf("%d of %d connections went wrong", len(failures), conns.Load())
			}
			if conns.Load() < 100 {
				t.Fatalf("only %d connections in the test; it proves little", conns.Load())
			}
			t.Logf("%d connections across 40 Updates; %d answered by the next generation's target; "+
				"%d dials completed after their target was removed", conns.Load(), late.Load(), stale.Load())
		})
	}
}

// TestDialCompletingAfterUpdateIsNotUsed holds a dial to a open until after the Update that removes a has
// returned; the connection it makes must be closed, and the client served by b.
func TestDialCompletingAfterUpdateIsNotUsed(t *testing.T) {
	for _, how := range []Change{Failover, Switchover} {
		t.Run(how.String(), func(t *testing.T) {
			a, b := startBackend(t, "a"), startBackend(t, "b")
			started, release := make(chan struct{}), make(chan struct{})
			var d net.Dialer
			hold := func(ctx context.Context, addr string) (net.Conn, error) {
				if addr == a.addr() {
					close(started)
					<-release // ignore ctx: the dial completes after the Update, as a real one may
					return d.DialContext(context.Background(), "tcp", addr)
				}
				return d.DialContext(ctx, "tcp", addr)
			}
			p := startProxy(t, Options{}, hold)
			p.Update([]Target{a.target()}, how)

			type result struct {
				name string
				err  error
				c    net.Conn
			}
			res := make(chan result, 1)
			go func() {
				c, name, err := who(p.Addr().String())
				res <- result{name, err, c}
			}()
			<-started
			p.Update([]Target{b.target()}, how)
			close(release)

			r := <-res
			if r.err != nil {
				t.Fatalf("client: %v", r.err)
			}
			defer r.c.Close()
			if r.name != "b" {
				t.Fatalf("answered by %q after the Update that removed a, want b", r.name)
			}
			waitFor(t, 5*time.Second, "a's late connection accepted", func() bool { return a.accepted.Load() == 1 })
			waitFor(t, 5*time.Second, "a's late connection closed", func() bool { return a.open() == 0 })
			echoes(t, r.c)
		})
	}
}

// TestUpdateCancelsDialToRemovedTarget: a dial to an owner that does not answer (it hangs until cancelled,
// as a SYN to a dead host does) must not hold the client for DialTimeout once the owner is removed.
func TestUpdateCancelsDialToRemovedTarget(t *testing.T) {
	b := startBackend(t, "b")
	dead := Target{Node: "dead", Addr: "127.0.0.1:1"}
	started := make(chan struct{})
	var d net.Dialer
	hang := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == dead.Addr {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return d.DialContext(ctx, "tcp", addr)
	}
	p := startProxy(t, Options{DialTimeout: time.Hour}, hang)
	p.Update([]Target{dead}, Failover)
	type result struct {
		name string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, name, err := who(p.Addr().String())
		if c != nil {
			c.Close()
		}
		res <- result{name, err}
	}()
	<-started
	p.Update([]Target{b.target()}, Failover)
	select {
	case r := <-res:
		if r.err != nil || r.name != "b" {
			t.Fatalf("got %q, %v; want b", r.name, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client still waiting for the removed target's dial")
	}
	if s := p.Stats(); s.DialFailures != 0 || s.Unreachable != 0 {
		t.Fatalf("a cancelled dial counted as a failure: %+v", s)
	}
}

func TestSwitchoverDrainsUntilDeadline(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	const drain = time.Second
	p := startProxy(t, Options{DrainTimeout: drain}, nil)
	p.Update([]Target{a.target()}, Failover)

	stays, _ := mustWho(t, p)
	leaves, _ := mustWho(t, p)
	start := time.Now()
	p.Update([]Target{b.target()}, Switchover)

	echoes(t, stays) // draining connections keep working
	echoes(t, leaves)
	if c, name := mustWho(t, p); name != "b" {
		t.Fatalf("new connection answered by %q during the drain, want b", name)
	} else {
		c.Close()
	}
	if got := activeOn(p, "a"); got != 2 {
		t.Fatalf("Stats: %d connections on a during the drain, want 2", got)
	}
	leaves.Close()
	waitFor(t, 5*time.Second, "the closed connection counted as drained", func() bool { return p.Stats().Drained == 1 })

	cutWithin(t, stays, drain+10*time.Second)
	if el := time.Since(start); el < drain {
		t.Fatalf("cut after %v, before the drain deadline %v", el, drain)
	}
	waitFor(t, 5*time.Second, "a's connections closed", func() bool { return a.open() == 0 })
	waitFor(t, 5*time.Second, "a gone from Stats", func() bool { return len(p.Stats().Targets) == 1 })
	if s := p.Stats(); s.DrainTimedOut != 1 || s.ClosedOnFailover != 0 {
		t.Fatalf("stats %+v: want DrainTimedOut 1, ClosedOnFailover 0", s)
	}
}

func TestTargetThatStaysKeepsItsConnections(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p := startProxy(t, Options{}, nil)
	p.Update([]Target{a.target(), b.target()}, Failover)
	var onA net.Conn
	for onA == nil {
		c, name := mustWho(t, p)
		if name == "a" {
			onA = c
		}
	}
	p.Update([]Target{b.target(), a.target()}, Failover) // a stays, in another order
	p.Update([]Target{a.target()}, Failover)             // b leaves
	echoes(t, onA)
}

func TestNoTargetsRefusesAtOnce(t *testing.T) {
	a := startBackend(t, "a")
	p := startProxy(t, Options{}, nil)
	check := func(want uint64) {
		t.Helper()
		start := time.Now()
		_, _, err := who(p.Addr().String())
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("with no targets: %v, want a reset", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("refusal took %v", el)
		}
		if s := p.Stats(); s.Refused != want {
			t.Fatalf("Refused = %d, want %d", s.Refused, want)
		}
	}
	check(1) // before the first Update
	p.Update([]Target{a.target()}, Failover)
	mustWho(t, p)
	p.Update(nil, Failover)
	check(2)
}

func TestActiveActiveLeastConnections(t *testing.T) {
	bs := []*backend{startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")}
	p := startProxy(t, Options{}, nil)
	var ts []Target
	for _, b := range bs {
		ts = append(ts, b.target())
	}
	p.Update(ts, Failover)

	// Connections kept open: least-connections puts each new one on an emptiest target.
	held := map[string]int{}
	for range 30 {
		_, name := mustWho(t, p)
		held[name]++
	}
	for _, b := range bs {
		if held[b.name] != 10 {
			t.Fatalf("30 open connections spread %v, want 10 each", held)
		}
	}

	// Short connections: all targets tie, and the round-robin tie-break spreads them.
	p2 := startProxy(t, Options{}, nil)
	p2.Update(ts, Failover)
	short := map[string]int{}
	for range 60 {
		c, name, err := who(p2.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		short[name]++
	}
	for _, b := range bs {
		if short[b.name] < 10 {
			t.Fatalf("60 short connections spread %v, want at least 10 on each", short)
		}
	}
}

func TestSkipsTargetWhoseDialFails(t *testing.T) {
	a := startBackend(t, "a")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now: dials are refused
	dead := Target{Node: "dead", Addr: deadAddr}

	p := startProxy(t, Options{}, nil)
	p.Update([]Target{dead, a.target()}, Failover)
	for range 20 {
		c, name := mustWho(t, p)
		if name != "a" {
			t.Fatalf("answered by %q, want a", name)
		}
		c.Close()
	}
	s := p.Stats()
	if s.DialFailures == 0 || s.Unreachable != 0 {
		t.Fatalf("stats %+v: want some DialFailures and no Unreachable", s)
	}

	p.Update([]Target{dead}, Failover)
	if _, _, err := who(p.Addr().String()); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("with only a dead target: %v, want a reset", err)
	}
	if s := p.Stats(); s.Unreachable != 1 {
		t.Fatalf("Unreachable = %d, want 1", s.Unreachable)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	blocked := make(chan struct{})
	var d net.Dialer
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == "127.0.0.1:1" {
			close(blocked)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return d.DialContext(ctx, "tcp", addr)
	}
	p, err := listen(Options{Listen: "127.0.0.1:0", DrainTimeout: time.Hour, DialTimeout: time.Hour,
		Log: testLog(t)}, dial)
	if err != nil {
		t.Fatal(err)
	}
	p.Update([]Target{a.target()}, Failover)
	var clients []net.Conn
	for range 3 {
		c, _, err := who(p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	p.Update([]Target{b.target()}, Switchover) // a drains, with a deadline an hour away
	c, _, err := who(p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, c)
	p.Update([]Target{{Node: "hang", Addr: "127.0.0.1:1"}}, Switchover) // b drains too
	hung, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	<-blocked

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		cutWithin(t, c, 5*time.Second)
		c.Close()
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	p.Update([]Target{a.target()}, Failover) // after Close: nothing happens
	if _, err := net.DialTimeout("tcp", p.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener still accepts after Close")
	}
	a.stop()
	b.stop()
	goleak.VerifyNone(t, goleak.IgnoreCurrent())
}

func TestListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"empty", Options{}, []string{"no listen address", `set proxy.listen to host:port, e.g. ":9080"`}},
		{"in use", Options{Listen: busy.Addr().String()},
			[]string{busy.Addr().String(), "address already in use", "choose another proxy.listen"}},
		{"no port", Options{Listen: "9080"}, []string{`"9080"`, "missing port", "must be host:port"}},
		{"not on this host", Options{Listen: "192.0.2.1:9080"},
			[]string{`"192.0.2.1:9080"`, "the address is not on this host"}},
		{"negative drain", Options{Listen: "127.0.0.1:0", DrainTimeout: -time.Second},
			[]string{"drain timeout -1s is negative", "use 0 for the default (10s)"}},
		{"negative dial", Options{Listen: "127.0.0.1:0", DialTimeout: -time.Second},
			[]string{"dial timeout -1s is negative", "use 0 for the default (1s)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Listen(tc.opts)
			if err == nil {
				p.Close()
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestMaxConnsBoundsDescriptors: clients beyond MaxConns are reset at once,
// so silent clients cannot exhaust the agent's file descriptors; once a
// connection ends, a new one is served again.
func TestMaxConnsBoundsDescriptors(t *testing.T) {
	a := startBackend(t, "a")
	p := startProxy(t, Options{MaxConns: 3}, nil)
	p.Update([]Target{a.target()}, Failover)
	var held []net.Conn
	for range 3 {
		c, _ := mustWho(t, p)
		held = append(held, c)
	}
	if _, _, err := who(p.Addr().String()); err == nil {
		t.Fatal("a connection beyond MaxConns was served")
	}
	if s := p.Stats(); s.OverLimit != 1 {
		t.Fatalf("OverLimit = %d, want 1", s.OverLimit)
	}
	held[0].Close()
	waitFor(t, 5*time.Second, "a slot freed by a closed connection", func() bool {
		c, _, err := who(p.Addr().String())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestIdleTimeoutResetsSilentConnections: with an idle timeout, a connection
// on which neither side sends is reset; one whose server keeps talking is
// not, although its client never writes.
func TestIdleTimeoutResetsSilentConnections(t *testing.T) {
	a := startBackend(t, "a")
	p := startProxy(t, Options{IdleTimeout: 200 * time.Millisecond}, nil)
	p.Update([]Target{a.target()}, Failover)
	silent, _ := mustWho(t, p)
	cutWithin(t, silent, 2*time.Second)
	busy, _ := mustWho(t, p)
	for range 6 { // 600 ms of traffic, three idle timeouts' worth
		echoes(t, busy)
		time.Sleep(100 * time.Millisecond)
	}
}
