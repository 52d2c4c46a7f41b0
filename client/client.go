package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Group modes as reported by the agent API.
const (
	ModeActivePassive = "active-passive"
	ModeActiveActive  = "active-active"
)

var (
	// ErrUnknownGroup: Baton does not know the group (HTTP 404, DNS NXDOMAIN).
	// Dial does not retry it.
	ErrUnknownGroup = errors.New("unknown group")
	// ErrNoOwner: the group exists but nobody serves it right now (mid-failover).
	ErrNoOwner = errors.New("no owner")
	// ErrDeposed wraps the read or write error of a connection the client
	// closed because its endpoint lost ownership of the group.
	ErrDeposed = errors.New("endpoint deposed")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("client closed")
)

// Endpoint is one place a group is served.
type Endpoint struct {
	Node    string `json:"node"` // empty in DNS mode
	Address string `json:"address"`
	Port    int    `json:"port"`
	Epoch   uint64 `json:"epoch"`         // fencing epoch of the ownership; 0 in DNS mode
	VIP     string `json:"vip,omitempty"` // the VIP this endpoint owns, if any
}

// HostPort is the address to dial.
func (e Endpoint) HostPort() string {
	return net.JoinHostPort(e.Address, fmt.Sprint(e.Port))
}

// sameTarget reports whether two endpoints lead to the same socket; in an
// active-active group one node owning several VIPs is listed once per VIP.
func (e Endpoint) sameTarget(o Endpoint) bool {
	return e.Node == o.Node && e.Address == o.Address && e.Port == o.Port
}

// Endpoints is a group's current owners.
type Endpoints struct {
	Group string `json:"group"`
	Mode  string `json:"mode"` // ModeActivePassive or ModeActiveActive; empty in DNS mode
	// Generation changes whenever any ownership in the group changes. Only
	// equality is meaningful: in DNS mode it is a hash of the sorted address set.
	Generation uint64 `json:"generation"`
	// Endpoints is empty while the group has no owner.
	Endpoints []Endpoint `json:"endpoints"`
}

func (e Endpoints) has(ep Endpoint) bool {
	for _, x := range e.Endpoints {
		if x.sameTarget(ep) {
			return true
		}
	}
	return false
}

// targets lists the distinct sockets to dial, in the order the source gave them.
func (e Endpoints) targets() []Endpoint {
	var out []Endpoint
next:
	for _, ep := range e.Endpoints {
		for _, o := range out {
			if o.sameTarget(ep) {
				continue next
			}
		}
		out = append(out, ep)
	}
	return out
}

// Options configure a Client. Zero values take the defaults given with each field.
type Options struct {
	// Agents are the host:port addresses of Baton agents' HTTP APIs (an
	// "http://" or "https://" prefix is accepted). Any agent will do.
	Agents []string
	// DNSServer is the host:port of Baton's authoritative DNS server; used
	// only when Agents is empty.
	DNSServer string
	// Zone is the DNS zone of the groups (default "baton.").
	Zone string
	// Port is the service port in DNS mode (DNS carries addresses only).
	Port int
	// HTTPClient talks to the agents. The default ignores proxy environment
	// variables: agents sit on the cluster's own network.
	HTTPClient *http.Client
	// DialTimeout bounds each connection attempt to an endpoint and each
	// request to an agent or DNS server (default 1s).
	DialTimeout time.Duration
	// RetryFor is how long Dial keeps trying across a failover (default 10s).
	RetryFor time.Duration
	// Backoff is the first delay between Dial attempts; it doubles up to 1s
	// (default 50ms).
	Backoff time.Duration
	// Refresh is how often a dialled group is re-resolved to find deposed
	// owners (default 200ms).
	Refresh time.Duration
	// Log receives the client's own events (default: discarded).
	Log *slog.Logger
}

const maxBackoff = time.Second

func (o Options) withDefaults() Options {
	if o.Zone == "" {
		o.Zone = "baton."
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.RetryFor == 0 {
		o.RetryFor = 10 * time.Second
	}
	if o.Backoff == 0 {
		o.Backoff = 50 * time.Millisecond
	}
	if o.Refresh == 0 {
		o.Refresh = 200 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate expects defaults applied; errors name the field and the limit.
func (o Options) validate() error {
	if len(o.Agents) == 0 && o.DNSServer == "" {
		return errors.New("client: Options.Agents or Options.DNSServer must be set")
	}
	for i, a := range o.Agents {
		if _, err := agentURL(a); err != nil {
			return fmt.Errorf("client: Options.Agents[%d]: %w", i, err)
		}
	}
	if len(o.Agents) == 0 {
		if _, _, err := net.SplitHostPort(o.DNSServer); err != nil {
			return fmt.Errorf("client: Options.DNSServer %q: want host:port: %w", o.DNSServer, err)
		}
		if o.Port < 1 || o.Port > 65535 {
			return fmt.Errorf("client: Options.Port %d: must be 1..65535 in DNS mode", o.Port)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", o.DialTimeout}, {"RetryFor", o.RetryFor}, {"Backoff", o.Backoff}, {"Refresh", o.Refresh}} {
		if d.v < 0 {
			return fmt.Errorf("client: Options.%s %v: must not be negative", d.name, d.v)
		}
	}
	return nil
}

// resolver finds a group's endpoints once. It may block for up to a few
// DialTimeouts and must honour ctx; it is called concurrently.
type resolver interface {
	resolve(ctx context.Context, group string) (Endpoints, error)
}

// Client dials Baton groups. It is safe for concurrent use.
type Client struct {
	opts    Options
	log     *slog.Logger
	res     resolver
	dialer  net.Dialer
	ownHTTP *http.Client // created by New, so Close may drop its idle connections

	ctx    context.Context // cancelled by Close: stops watchers and pending Dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // watchers

	// seq numbers resolutions in the order they start, so a slow answer never
	// overrides one that was asked for later.
	seq atomic.Uint64

	mu     sync.Mutex
	closed bool
	groups map[string]*groupState
}

// groupState is what the client knows about a group it has dialled.
type groupState struct {
	view     Endpoints
	seq      uint64 // seq of the resolution behind view
	next     int    // round-robin cursor
	conns    map[*conn]struct{}
	watching bool
}

// New checks opts and returns a Client. It does not contact Baton.
func New(opts Options) (*Client, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		opts:   opts,
		log:    opts.Log.With("component", "client"),
		dialer: net.Dialer{Timeout: opts.DialTimeout},
		groups: make(map[string]*groupState),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if len(opts.Agents) > 0 {
		hc := opts.HTTPClient
		if hc == nil {
			d := &net.Dialer{Timeout: opts.DialTimeout}
			hc = &http.Client{Transport: &http.Transport{
				DialContext:         d.DialContext,
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     30 * time.Second,
			}}
			c.ownHTTP = hc
		}
		c.res = newAPIResolver(opts.Agents, hc, opts.DialTimeout, c.log)
	} else {
		c.res = newDNSResolver(opts.DNSServer, opts.Zone, opts.Port, opts.DialTimeout)
	}
	return c, nil
}

func checkGroup(group string) error {
	if group == "" || strings.ContainsAny(group, "/: \t\r\n") {
		return fmt.Errorf("client: invalid group name %q", group)
	}
	return nil
}

// Endpoints resolves group once (trying each agent in turn) without retrying
// on an empty answer.
func (c *Client) Endpoints(ctx context.Context, group string) (Endpoints, error) {
	if err := checkGroup(group); err != nil {
		return Endpoints{}, err
	}
	eps, _, err := c.resolve(ctx, group, false)
	return eps, err
}

// resolve asks the resolver and records the answer for a group the client
// tracks (or starts tracking it, if create), cutting deposed connections.
func (c *Client) resolve(ctx context.Context, group string, create bool) (Endpoints, uint64, error) {
	seq := c.seq.Add(1)
	eps, err := c.res.resolve(ctx, group)
	if err != nil {
		return Endpoints{}, 0, err
	}
	c.observe(group, eps, seq, create)
	return eps, seq, nil
}

// Dial connects to group: its owner (active-passive) or one of its owners,
// round-robin (active-active). While the group has no owner, or its owner
// refuses connections, Dial retries with backoff until Options.RetryFor has
// passed or ctx ends. An unknown group fails at once with ErrUnknownGroup.
// The connection is closed by the client if its endpoint is deposed.
func (c *Client) Dial(ctx context.Context, group string) (net.Conn, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.RetryFor)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()

	wait := c.opts.Backoff
	var last error // why the last whole attempt failed; the one the deadline cut short says less
	for {
		if c.ctx.Err() != nil {
			return nil, fmt.Errorf("client: dial %q: %w", group, ErrClosed)
		}
		cn, err := c.dialOnce(ctx, group)
		if err == nil {
			return cn, nil
		}
		if errors.Is(err, ErrUnknownGroup) || errors.Is(err, ErrClosed) {
			return nil, fmt.Errorf("client: dial: %w", err)
		}
		// Deadline-based timeouts in the net package can fire a hair before
		// ctx reports it, hence the clock as well.
		deadline, _ := ctx.Deadline()
		if last == nil || (ctx.Err() == nil && time.Now().Before(deadline)) {
			last = err
		}
		c.log.Debug("dial attempt failed", "group", group, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if c.ctx.Err() != nil {
				return nil, fmt.Errorf("client: dial %q: %w", group, ErrClosed)
			}
			return nil, fmt.Errorf("client: dial %q: gave up after %s (%w): %w",
				group, time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

// DialContext dials the group named by addr ("web" or "web:80"; the port is
// ignored, Baton knows it). Only TCP is supported. Its signature matches
// http.Transport.DialContext.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("client: dial %q: network %q not supported, only tcp", addr, network)
	}
	group, _, _ := strings.Cut(addr, ":")
	return c.Dial(ctx, group)
}

// dialOnce resolves group and tries each distinct endpoint once, starting at
// the group's round-robin cursor.
func (c *Client) dialOnce(ctx context.Context, group string) (net.Conn, error) {
	eps, seq, err := c.resolve(ctx, group, true)
	if err != nil {
		return nil, err
	}
	targets := eps.targets()
	if len(targets) == 0 {
		return nil, fmt.Errorf("group %q (generation %d): %w", group, eps.Generation, ErrNoOwner)
	}
	first := c.cursor(group, len(targets))
	var errs []error
	for i := range targets {
		ep := targets[(first+i)%len(targets)]
		nc, err := c.dialer.DialContext(ctx, "tcp", ep.HostPort())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cn := &conn{Conn: nc, c: c, group: group, ep: ep, seq: seq, gen: eps.Generation}
		if err := c.track(cn); err != nil {
			nc.Close()
			return nil, err
		}
		return cn, nil
	}
	return nil, fmt.Errorf("group %q (generation %d): %w", group, eps.Generation, errors.Join(errs...))
}

func (c *Client) cursor(group string, n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil {
		return 0
	}
	i := g.next % n
	g.next = i + 1
	return i
}

// observe records a resolution of group and closes the connections it shows
// to be deposed: those dialled from an earlier resolution, under another
// generation, to an endpoint no longer listed.
func (c *Client) observe(group string, eps Endpoints, seq uint64, create bool) {
	c.mu.Lock()
	g := c.groups[group]
	if g == nil && create && !c.closed {
		g = &groupState{conns: make(map[*conn]struct{})}
		c.groups[group] = g
	}
	if g == nil || seq <= g.seq {
		c.mu.Unlock()
		return
	}
	changed := g.seq != 0 && g.view.Generation != eps.Generation
	old := g.view.Generation
	g.view, g.seq = eps, seq
	var deposed []*conn
	for cn := range g.conns {
		if cn.seq < seq && cn.gen != eps.Generation && !eps.has(cn.ep) {
			delete(g.conns, cn)
			deposed = append(deposed, cn)
		}
	}
	c.mu.Unlock()

	if changed {
		c.log.Info("group generation changed", "group", group, "from", old, "to", eps.Generation,
			"endpoints", len(eps.Endpoints), "closing", len(deposed))
	}
	for _, cn := range deposed {
		cn.depose()
	}
}

// track registers cn unless the client has meanwhile learnt that its endpoint
// was deposed (a resolution that started after cn's), and starts the
// group's watcher on the first connection.
func (c *Client) track(cn *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("client: dial %q: %w", cn.group, ErrClosed)
	}
	g := c.groups[cn.group]
	if g == nil { // observe records every dialled group; stay safe if that changes
		g = &groupState{conns: make(map[*conn]struct{})}
		c.groups[cn.group] = g
	}
	if g.seq > cn.seq && g.view.Generation != cn.gen && !g.view.has(cn.ep) {
		return fmt.Errorf("group %q: %s deposed while dialling: %w", cn.group, cn.ep.HostPort(), ErrDeposed)
	}
	g.conns[cn] = struct{}{}
	if !g.watching {
		g.watching = true
		c.wg.Add(1)
		go c.watch(cn.group)
	}
	return nil
}

// stillWatched reports whether group's watcher has connections to guard,
// and retires the watcher if not.
func (c *Client) stillWatched(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil || len(g.conns) == 0 {
		if g != nil {
			g.watching = false
		}
		return false
	}
	return true
}

func (c *Client) untrack(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.groups[cn.group]; g != nil {
		delete(g.conns, cn)
	}
}

// watch re-resolves group every Refresh until Close or until the group has
// no connections left (the next Dial starts it again). Failures keep the
// connections as they are: an unreachable agent says nothing about the owner.
func (c *Client) watch(group string) {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if !c.stillWatched(group) {
			return
		}
		_, _, err := c.resolve(c.ctx, group, false)
		switch {
		case err != nil && c.ctx.Err() != nil:
			return
		case err != nil && !failing:
			c.log.Warn("cannot re-resolve group; keeping its connections", "group", group, "err", err)
		case err == nil && failing:
			c.log.Info("re-resolving group again", "group", group)
		}
		failing = err != nil
	}
}

// Close stops the watchers and closes every connection the client returned.
// Pending Dials fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var conns []*conn
	for _, g := range c.groups {
		for cn := range g.conns {
			conns = append(conns, cn)
		}
		g.conns = nil
	}
	c.mu.Unlock()

	c.cancel()
	c.wg.Wait()
	for _, cn := range conns {
		cn.closeOnce()
	}
	if c.ownHTTP != nil {
		c.ownHTTP.CloseIdleConnections()
	}
	return nil
}

// conn is a connection returned by Dial.
type conn struct {
	net.Conn
	c     *Client
	group string
	ep    Endpoint
	seq   uint64 // resolution it was dialled from
	gen   uint64

	deposed atomic.Bool
	once    sync.Once
	err     error
}

func (cn *conn) Read(b []byte) (int, error) {
	n, err := cn.Conn.Read(b)
	return n, cn.wrap(err)
}

func (cn *conn) Write(b []byte) (int, error) {
	n, err := cn.Conn.Write(b)
	return n, cn.wrap(err)
}

// wrap tells the application why its connection was closed under it.
func (cn *conn) wrap(err error) error {
	if err != nil && cn.deposed.Load() && errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("client: %s (node %q) no longer serves group %q: %w: %w",
			cn.ep.HostPort(), cn.ep.Node, cn.group, ErrDeposed, err)
	}
	return err
}

func (cn *conn) depose() {
	cn.deposed.Store(true)
	cn.c.log.Info("closing connection to deposed endpoint", "group", cn.group,
		"node", cn.ep.Node, "endpoint", cn.ep.HostPort())
	cn.closeOnce()
}

func (cn *conn) closeOnce() error {
	cn.once.Do(func() { cn.err = cn.Conn.Close() })
	return cn.err
}

// Close closes the connection and stops tracking it.
func (cn *conn) Close() error {
	cn.c.untrack(cn)
	return cn.closeOnce()
}
