package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAgent serves GET /v1/groups/{group}/endpoints from a table the test edits.
type fakeAgent struct {
	*httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	groups map[string]Endpoints
	status int // answer every request with this status instead, if set
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	a := &fakeAgent{groups: make(map[string]Endpoints)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/groups/{group}/endpoints", func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		a.mu.Lock()
		eps, ok := a.groups[r.PathValue("group")]
		status := a.status
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case status != 0:
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]string{"error": "no quorum"})
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf("unknown group %q", r.PathValue("group"))})
		default:
			json.NewEncoder(w).Encode(eps)
		}
	})
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func (a *fakeAgent) addr() string { return a.Listener.Addr().String() }

// set publishes a group's owners under a new generation.
func (a *fakeAgent) set(group, mode string, gen uint64, owners ...Endpoint) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range owners {
		owners[i].Epoch = gen
	}
	a.groups[group] = Endpoints{Group: group, Mode: mode, Generation: gen, Endpoints: append([]Endpoint{}, owners...)}
}

func (a *fakeAgent) setStatus(code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status = code
}

// backend is a group member's service: it greets each connection with its
// name, then reads until the peer closes.
type backend struct {
	name     string
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newBackend(t *testing.T, name, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	b := &backend{name: name, ln: ln}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer c.Close()
			fmt.Fprintf(c, "%s\n", b.name)
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// endpoint is how an agent lists this backend; vip tells apart the VIPs of one node.
func (b *backend) endpoint(vip string) Endpoint {
	host, port, _ := net.SplitHostPort(b.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return Endpoint{Node: b.name, Address: host, Port: p, VIP: vip}
}

// newClient returns a client with timings short enough for tests.
func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	if opts.Refresh == 0 {
		opts.Refresh = 10 * time.Millisecond
	}
	if opts.Backoff == 0 {
		opts.Backoff = 5 * time.Millisecond
	}
	if opts.RetryFor == 0 {
		opts.RetryFor = 5 * time.Second
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// greeting reads the backend's name off a fresh connection.
func greeting(t *testing.T, conn net.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading greeting: %v", err)
	}
	return strings.TrimSpace(line)
}

func dialName(t *testing.T, c *Client, group string) (net.Conn, string) {
	t.Helper()
	conn, err := c.Dial(context.Background(), group)
	if err != nil {
		t.Fatalf("Dial(%q): %v", group, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, greeting(t, conn)
}

// readErr reports the error that ends a blocking read on conn.
func readErr(conn net.Conn) <-chan error {
	ch := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		ch <- err
	}()
	return ch
}

func waitErr(t *testing.T, ch <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("no error within %v", within)
		return nil
	}
}

func (c *Client) tracked(group string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups[group]; g != nil {
		return len(g.conns)
	}
	return 0
}

func TestDialReachesOwner(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 7, n1.endpoint("10.0.0.100"))
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	eps, err := c.Endpoints(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if eps.Generation != 7 || eps.Mode != ModeActivePassive || len(eps.Endpoints) != 1 ||
		eps.Endpoints[0].Node != "n1" || eps.Endpoints[0].Epoch != 7 || eps.Endpoints[0].VIP != "10.0.0.100" {
		t.Fatalf("Endpoints = %+v", eps)
	}
	if _, got := dialName(t, c, "web"); got != "n1" {
		t.Fatalf("dialled %q, want the owner n1", got)
	}
}

func TestDialRetriesAcrossFailover(t *testing.T) {
	agent := newFakeAgent(t)
	n2 := newBackend(t, "n2", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 3) // the old owner is gone, no new one yet
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	const gap = 150 * time.Millisecond
	promoted := time.AfterFunc(gap, func() { agent.set("web", ModeActivePassive, 4, n2.endpoint("")) })
	defer promoted.Stop()
	start := time.Now()
	_, got := dialName(t, c, "web")
	if got != "n2" {
		t.Fatalf("dialled %q, want the new owner n2", got)
	}
	if took := time.Since(start); took < gap {
		t.Fatalf("Dial returned after %v, before an owner existed", took)
	}
}

func TestDialGivesUpAfterRetryFor(t *testing.T) {
	agent := newFakeAgent(t)
	agent.set("web", ModeActivePassive, 3)
	c := newClient(t, Options{Agents: []string{agent.addr()}, RetryFor: 300 * time.Millisecond})

	start := time.Now()
	_, err := c.Dial(context.Background(), "web")
	took := time.Since(start)
	if !errors.Is(err, ErrNoOwner) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"web"`) {
		t.Fatalf("err = %v, want no owner for \"web\" after the deadline", err)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %v, want about RetryFor (300ms)", took)
	}
}

func TestGenerationChangeClosesDeposedOwner(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	n2 := newBackend(t, "n2", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 1, n1.endpoint(""))
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	old, got := dialName(t, c, "web")
	if got != "n1" {
		t.Fatalf("dialled %q, want n1", got)
	}
	blocked := readErr(old)
	start := time.Now()
	agent.set("web", ModeActivePassive, 2, n2.endpoint(""))

	err := waitErr(t, blocked, 2*time.Second)
	if !errors.Is(err, ErrDeposed) || !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), `"n1"`) {
		t.Fatalf("read on the deposed owner's connection: %v, want ErrDeposed naming n1", err)
	}
	t.Logf("deposed connection closed %v after the switch", time.Since(start))
	if _, err := old.Write([]byte("x")); !errors.Is(err, ErrDeposed) {
		t.Fatalf("write after deposal: %v, want ErrDeposed", err)
	}

	fresh, got := dialName(t, c, "web")
	if got != "n2" {
		t.Fatalf("redial reached %q, want the new owner n2", got)
	}
	if n := c.tracked("web"); n != 1 {
		t.Fatalf("tracking %d connections, want 1 (the new one)", n)
	}
	fresh.Close()
	old.Close()
	if n := c.tracked("web"); n != 0 {
		t.Fatalf("tracking %d connections after Close, want 0", n)
	}
}

func TestActiveActiveSpreadsAndKeepsSurvivors(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	n2 := newBackend(t, "n2", "127.0.0.1:0")
	// n1 owns two VIPs: one target, not two.
	agent.set("web", ModeActiveActive, 1, n1.endpoint("10.0.0.100"), n1.endpoint("10.0.0.101"), n2.endpoint("10.0.0.102"))
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	conns := map[string][]net.Conn{}
	for range 4 {
		conn, name := dialName(t, c, "web")
		conns[name] = append(conns[name], conn)
	}
	if len(conns["n1"]) != 2 || len(conns["n2"]) != 2 {
		t.Fatalf("spread n1=%d n2=%d, want 2 and 2", len(conns["n1"]), len(conns["n2"]))
	}

	// n1 fails; its VIPs move to n2. Only n1's connections are cut.
	blocked := readErr(conns["n1"][0])
	agent.set("web", ModeActiveActive, 2, n2.endpoint("10.0.0.100"), n2.endpoint("10.0.0.101"), n2.endpoint("10.0.0.102"))
	if err := waitErr(t, blocked, 2*time.Second); !errors.Is(err, ErrDeposed) {
		t.Fatalf("n1 connection: %v, want ErrDeposed", err)
	}
	if n := c.tracked("web"); n != 2 {
		t.Fatalf("tracking %d connections after n1 lost its VIPs, want n2's 2", n)
	}
	for _, conn := range conns["n2"] {
		if _, err := conn.Write([]byte("still here")); err != nil {
			t.Fatalf("connection to surviving owner n2: %v", err)
		}
	}
}

func TestFallsOverToNextAgent(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // connection refused from now on

	sick := newFakeAgent(t)
	sick.setStatus(http.StatusServiceUnavailable)
	good := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	good.set("web", ModeActivePassive, 1, n1.endpoint(""))
	c := newClient(t, Options{Agents: []string{deadAddr, sick.addr(), good.addr()}})

	if _, got := dialName(t, c, "web"); got != "n1" {
		t.Fatalf("dialled %q, want n1", got)
	}
	if _, err := c.Endpoints(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if h := sick.hits.Load(); h != 1 {
		t.Fatalf("the failing agent was asked %d times, want once: the client sticks to the agent that works", h)
	}

	good.Close()
	_, err = c.Endpoints(context.Background(), "web")
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no quorum") {
		t.Fatalf("with every agent failing: %v, want each agent's error", err)
	}
}

func TestUnknownGroupFailsFast(t *testing.T) {
	agent := newFakeAgent(t)
	c := newClient(t, Options{Agents: []string{agent.addr()}, RetryFor: 10 * time.Second})

	start := time.Now()
	_, err := c.Dial(context.Background(), "nope")
	if !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), `unknown group "nope"`) {
		t.Fatalf("err = %v, want unknown group naming \"nope\"", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v to report an unknown group", took)
	}
	if h := agent.hits.Load(); h != 1 {
		t.Fatalf("asked the agent %d times, want once", h)
	}
}

func TestDialContext(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 1, n1.endpoint(""))
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	conn, err := c.DialContext(context.Background(), "tcp", "web:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := greeting(t, conn); got != "n1" {
		t.Fatalf("dialled %q, want n1", got)
	}
	if _, err := c.DialContext(context.Background(), "udp", "web:53"); err == nil || !strings.Contains(err.Error(), `network "udp" not supported`) {
		t.Fatalf("udp: %v", err)
	}
	if _, err := c.Dial(context.Background(), "a/b"); err == nil || !strings.Contains(err.Error(), `invalid group name "a/b"`) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestCloseClosesConnsAndPendingDials(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 1, n1.endpoint(""))
	agent.set("db", ModeActivePassive, 1) // no owner: Dial waits
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	conn, _ := dialName(t, c, "web")
	blocked := readErr(conn)
	pending := make(chan error, 1)
	go func() {
		_, err := c.Dial(context.Background(), "db")
		pending <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the pending Dial start waiting; harmless if it has not
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, blocked, time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if err := waitErr(t, pending, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("pending Dial: %v, want ErrClosed", err)
	}
	if _, err := c.Dial(context.Background(), "web"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// staticResolver answers every resolution with an error, so only the test
// feeds the client views (through observe).
type staticResolver struct{}

func (staticResolver) resolve(context.Context, string) (Endpoints, error) {
	return Endpoints{}, errors.New("offline")
}

// A slow answer from before a failover must not cut a connection dialled
// after it, and a Dial that raced a failover must not hand out a connection
// to the owner it already knows to be deposed.
func TestResolutionsApplyInOrder(t *testing.T) {
	c := newClient(t, Options{Agents: []string{"127.0.0.1:1"}, Refresh: time.Hour})
	c.res = staticResolver{}
	n1 := Endpoint{Node: "n1", Address: "10.0.0.11", Port: 80}
	n2 := Endpoint{Node: "n2", Address: "10.0.0.12", Port: 80}
	n3 := Endpoint{Node: "n3", Address: "10.0.0.13", Port: 80}
	view := func(gen uint64, eps ...Endpoint) Endpoints {
		return Endpoints{Group: "web", Generation: gen, Endpoints: eps}
	}
	pipe := func(ep Endpoint, seq, gen uint64) *conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return &conn{Conn: a, c: c, group: "web", ep: ep, seq: seq, gen: gen}
	}

	c.observe("web", view(2, n2), 5, true)
	onN2 := pipe(n2, 5, 2)
	if err := c.track(onN2); err != nil {
		t.Fatal(err)
	}
	c.observe("web", view(1, n1), 3, false) // started before seq 5: stale
	if onN2.deposed.Load() || c.tracked("web") != 1 {
		t.Fatal("a stale answer deposed the current owner's connection")
	}
	if err := c.track(pipe(n1, 4, 1)); !errors.Is(err, ErrDeposed) {
		t.Fatalf("tracking a connection to an owner known to be deposed: %v, want ErrDeposed", err)
	}
	c.observe("web", view(3, n3), 6, false)
	if !onN2.deposed.Load() || c.tracked("web") != 0 {
		t.Fatal("a newer generation without n2 kept n2's connection")
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "client: Options.Agents or Options.DNSServer must be set"},
		{Options{Agents: []string{"127.0.0.1:7080", "agent2"}}, `client: Options.Agents[1]: "agent2": want host:port`},
		{Options{Agents: []string{"ftp://a:1"}}, `client: Options.Agents[0]: "ftp://a:1": scheme must be http or https`},
		{Options{DNSServer: "127.0.0.1:5353"}, "client: Options.Port 0: must be 1..65535 in DNS mode"},
		{Options{DNSServer: "ns1", Port: 80}, `client: Options.DNSServer "ns1": want host:port`},
		{Options{Agents: []string{"a:1"}, RetryFor: -time.Second}, "client: Options.RetryFor -1s: must not be negative"},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
	for _, ok := range []Options{
		{Agents: []string{"127.0.0.1:7080", "https://[::1]:7443"}},
		{DNSServer: "127.0.0.1:5353", Port: 5432},
	} {
		c, err := New(ok)
		if err != nil {
			t.Errorf("New(%+v): %v", ok, err)
			continue
		}
		c.Close()
	}
}

func (c *Client) watching(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	return g != nil && g.watching
}

// A group nobody holds connections to is not polled; the next Dial resumes it.
func TestWatcherRestsWithoutConns(t *testing.T) {
	agent := newFakeAgent(t)
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	n2 := newBackend(t, "n2", "127.0.0.1:0")
	agent.set("web", ModeActivePassive, 1, n1.endpoint(""))
	c := newClient(t, Options{Agents: []string{agent.addr()}})

	conn, _ := dialName(t, c, "web")
	if !c.watching("web") {
		t.Fatal("no watcher after Dial")
	}
	conn.Close()
	testkit.WaitFor(t, 5*time.Second, "the idle watcher to stop", func() bool { return !c.watching("web") })
	before := agent.hits.Load()
	time.Sleep(5 * c.opts.Refresh)
	if h := agent.hits.Load(); h != before {
		t.Fatalf("agent asked %d more times with no connection to guard", h-before)
	}

	conn, _ = dialName(t, c, "web")
	blocked := readErr(conn)
	agent.set("web", ModeActivePassive, 2, n2.endpoint(""))
	if err := waitErr(t, blocked, 2*time.Second); !errors.Is(err, ErrDeposed) {
		t.Fatalf("after the watcher resumed: %v, want ErrDeposed", err)
	}
}
