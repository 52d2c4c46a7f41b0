// Package probe measures what a client of a failover sees: a Prober asks a
// service for an answer every few milliseconds, the way a client would (a TCP
// connect, a "who am I" line, or an HTTP GET), and records every attempt as a
// Probe. Outages turns the record into runs of failed probes, and Worst picks
// the one a fault caused.
//
// It is the single definition of a client-visible outage in Baton: `baton
// drill`, `baton demo`, the namespace lab (internal/lab), the benchmarks under
// bench/ and the end-to-end tests all measure with it, so their numbers mean
// the same thing. The lab dials from inside a network namespace by passing its
// own Dial.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind says what a probe must get back to count as answered.
type Kind int

const (
	// Connect: the TCP connection is accepted. Who is the first line the
	// server sends within the timeout after the probe half-closes (trimmed;
	// "" if it sends none), so any TCP service can be probed.
	Connect Kind = iota
	// Whoami: the server answers "I am NAME" after the half-close (Baton's
	// demo service and the lab's whoami do). Who is NAME. A connection that
	// is accepted but gives no such line fails: a proxy that accepts but
	// cannot reach a backend is down for a client.
	Whoami
	// HTTP: a GET of the URL is answered with a 2xx status. Who is the
	// trimmed start of the body (up to 256 bytes). No keep-alive: every
	// probe is a new connection, as a new client's would be.
	HTTP
)

func (k Kind) String() string {
	switch k {
	case Connect:
		return "connect"
	case Whoami:
		return "whoami"
	case HTTP:
		return "http"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// DialFunc opens the connection of one probe. The lab passes one that
// creates the socket inside a network namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DefaultTimeout bounds one probe (connect, send, read the answer) when
// Spec.Timeout is 0: on loopback or a LAN an answer takes well under a
// millisecond, and 50 ms keeps a 5 ms prober's record fine-grained during an
// outage while tolerating a loaded test machine.
const DefaultTimeout = 50 * time.Millisecond

// maxWorkers caps the probes in flight (and, in the lab, the threads parked in
// a namespace).
const maxWorkers = 64

// Spec describes a Prober.
type Spec struct {
	Kind    Kind
	Target  string        // "host:port" for Connect and Whoami, an http:// URL for HTTP
	Every   time.Duration // probe interval, ≥ 1ms
	Timeout time.Duration // per probe; 0: DefaultTimeout
	Dial    DialFunc      // nil: a plain net.Dialer
}

// Validate checks a Spec; errors name the field and what it wants.
func (s Spec) Validate() error {
	switch s.Kind {
	case Connect, Whoami:
		if _, _, err := net.SplitHostPort(s.Target); err != nil {
			return fmt.Errorf("probe: Target %q: want HOST:PORT (%v)", s.Target, err)
		}
	case HTTP:
		u, err := url.Parse(s.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("probe: Target %q: want an http:// or https:// URL", s.Target)
		}
	default:
		return fmt.Errorf("probe: Kind %v: want Connect, Whoami or HTTP", s.Kind)
	}
	if s.Every < time.Millisecond {
		return fmt.Errorf("probe: Every = %v, want ≥ 1ms", s.Every)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("probe: Timeout = %v, want ≥ 0 (0: %v)", s.Timeout, DefaultTimeout)
	}
	return nil
}

// Prober probes a target every interval. Probes run on a pool of workers, so
// a slow (failing) probe does not delay the next one; a tick that finds every
// worker busy is skipped and counted (see Skipped) rather than recorded as a
// failure. Its methods may be called concurrently.
type Prober struct {
	spec Spec
	once func(ctx context.Context) Probe
	stop chan struct{}
	jobs chan time.Time
	wg   sync.WaitGroup

	mu      sync.Mutex
	probes  []Probe
	skipped int

	stopOnce sync.Once
	final    []Probe
}

// Start validates s and starts probing; the first probe starts at once. Call
// Stop to end it.
func Start(s Spec) (*Prober, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Dial == nil {
		d := &net.Dialer{}
		s.Dial = d.DialContext
	}
	p := &Prober{spec: s, stop: make(chan struct{}), jobs: make(chan time.Time)}
	switch s.Kind {
	case Connect, Whoami:
		p.once = p.tcpOnce
	case HTTP:
		client := &http.Client{Timeout: s.Timeout, Transport: &http.Transport{
			DialContext: s.Dial, DisableKeepAlives: true}}
		p.once = func(ctx context.Context) Probe { return httpOnce(ctx, client, s.Target) }
	}
	// Enough workers that probes timing out back to back still start on
	// time: a timeout spans Timeout/Every ticks.
	workers := min(int(s.Timeout/s.Every)+2, maxWorkers)
	for range workers {
		p.wg.Add(1)
		go p.worker()
	}
	p.wg.Add(1)
	go p.tick()
	return p, nil
}

func (p *Prober) tick() {
	defer p.wg.Done()
	defer close(p.jobs)
	t := time.NewTicker(p.spec.Every)
	defer t.Stop()
	fire := func(at time.Time) {
		select {
		case p.jobs <- at:
		default:
			p.mu.Lock()
			p.skipped++
			p.mu.Unlock()
		}
	}
	fire(time.Now())
	for {
		select {
		case <-p.stop:
			return
		case at := <-t.C:
			fire(at)
		}
	}
}

func (p *Prober) worker() {
	defer p.wg.Done()
	for range p.jobs {
		r := p.once(context.Background())
		p.mu.Lock()
		p.probes = append(p.probes, r)
		p.mu.Unlock()
	}
}

// tcpOnce makes one Connect or Whoami probe.
func (p *Prober) tcpOnce(ctx context.Context) Probe {
	at := time.Now()
	ctx, cancel := context.WithDeadline(ctx, at.Add(p.spec.Timeout))
	defer cancel()
	c, err := p.spec.Dial(ctx, "tcp", p.spec.Target)
	if err != nil {
		return Probe{At: at, Err: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(at.Add(p.spec.Timeout))
	// Half-close: tells a whoami server we have nothing to send, so it
	// answers at once instead of waiting for an HTTP request.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	line, err := bufio.NewReaderSize(c, 128).ReadString('\n')
	if p.spec.Kind == Connect {
		return Probe{At: at, Who: strings.TrimSpace(line)} // accepted is enough
	}
	if err != nil {
		return Probe{At: at, Err: "read: " + err.Error()}
	}
	who, ok := strings.CutPrefix(strings.TrimSpace(line), "I am ")
	if !ok || who == "" {
		return Probe{At: at, Err: fmt.Sprintf("unexpected answer %q", line)}
	}
	return Probe{At: at, Who: who}
}

// httpOnce makes one HTTP probe.
func httpOnce(ctx context.Context, client *http.Client, target string) Probe {
	at := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return Probe{At: at, Err: err.Error()}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Probe{At: at, Err: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil && !errors.Is(err, io.EOF) {
		return Probe{At: at, Err: "read body: " + err.Error()}
	}
	if resp.StatusCode/100 != 2 {
		return Probe{At: at, Err: "status " + resp.Status}
	}
	return Probe{At: at, Who: strings.TrimSpace(string(body))}
}

// Probes returns the probes recorded so far, in start order, without
// stopping.
func (p *Prober) Probes() []Probe {
	p.mu.Lock()
	out := slices.Clone(p.probes)
	p.mu.Unlock()
	sortProbes(out)
	return out
}

// Last is the latest probe recorded (by start time), and false if none is.
func (p *Prober) Last() (Probe, bool) {
	ps := p.Probes()
	if len(ps) == 0 {
		return Probe{}, false
	}
	return ps[len(ps)-1], true
}

// Skipped returns how many ticks found every worker busy.
func (p *Prober) Skipped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Stop stops probing, waits for the probes in flight (at most the timeout)
// and returns every probe in start order. Later calls return the same
// records.
func (p *Prober) Stop() []Probe {
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.final = p.Probes()
	})
	return slices.Clone(p.final)
}

// Served reports whether who answered a probe that started after after.
func (p *Prober) Served(who string, after time.Time) bool {
	for _, pr := range slices.Backward(p.Probes()) {
		if !pr.At.After(after) {
			break
		}
		if pr.OK() && pr.Who == who {
			return true
		}
	}
	return false
}

// WaitServed polls until who answered a probe that started after after, up to
// limit, and reports whether it did.
func (p *Prober) WaitServed(who string, after time.Time, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if p.Served(who, after) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
	}
}
