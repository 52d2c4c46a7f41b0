package lab

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// ProbeTimeout bounds one probe: connect, half-close, read the line.
const ProbeTimeout = 50 * time.Millisecond

// maxProbeWorkers caps the threads a Prober parks in the client namespace.
const maxProbeWorkers = 64

// Probe is one connection attempt of a Prober.
type Probe struct {
	At  time.Time // when the probe started
	Who string    // host that answered ("I am <who>"), "" on failure
	Err string    // "" on success
}

// OK reports whether the probe got an answer.
func (p Probe) OK() bool { return p.Err == "" }

// Prober measures what a client sees: from the client namespace it opens a
// TCP connection to the target every interval, half-closes it and reads the
// whoami line, with ProbeTimeout for the whole exchange. Probes run on a pool
// of threads parked in the client namespace, so a slow (failing) probe does
// not delay the next one; a tick that finds every worker busy is skipped and
// counted (see Skipped).
type Prober struct {
	target string
	stop   chan struct{}
	jobs   chan time.Time
	wg     sync.WaitGroup

	mu      sync.Mutex
	probes  []Probe
	skipped int

	stopOnce sync.Once
	final    []Probe
	l        *Lab
}

// StartProber starts probing target ("ip:port") every interval from the
// client namespace. target must be a lab address (10.77.0.0/24, fd77::/64)
// or loopback.
func (l *Lab) StartProber(target string, every time.Duration) (*Prober, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return nil, fmt.Errorf("lab: StartProber: target %q: %w", target, err)
	}
	if err := checkTarget(ap.Addr()); err != nil {
		return nil, err
	}
	if every < time.Millisecond {
		return nil, fmt.Errorf("lab: StartProber: interval = %v, want ≥ 1ms", every)
	}
	h, err := l.handle(Client)
	if err != nil {
		return nil, err
	}
	workers := min(int(ProbeTimeout/every)+2, maxProbeWorkers)
	p := &Prober{target: ap.String(), stop: make(chan struct{}), jobs: make(chan time.Time), l: l}
	ready := make(chan error, workers)
	for range workers {
		p.wg.Add(1)
		go p.worker(h, ready)
	}
	var errs []error
	for range workers {
		if err := <-ready; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		close(p.jobs)
		p.wg.Wait()
		return nil, fmt.Errorf("lab: StartProber: enter client namespace: %w", errors.Join(errs...))
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		close(p.jobs)
		p.wg.Wait()
		return nil, ErrClosed
	}
	l.probers[p] = struct{}{}
	l.mu.Unlock()
	p.wg.Add(1)
	go p.tick(every)
	return p, nil
}

// checkTarget enforces the lab's address rule for observers.
func checkTarget(a netip.Addr) error {
	a = a.Unmap()
	if a.IsLoopback() || Prefix4.Contains(a) || Prefix6.Contains(a) {
		return nil
	}
	return fmt.Errorf("lab: target %s is outside the lab (%s, %s) and loopback; refusing to send to it", a, Prefix4, Prefix6)
}

func (p *Prober) tick(every time.Duration) {
	defer p.wg.Done()
	defer close(p.jobs)
	t := time.NewTicker(every)
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

func (p *Prober) worker(client netns.NsHandle, ready chan<- error) {
	defer p.wg.Done()
	leave, err := enterNS(client)
	ready <- err
	if err != nil {
		return
	}
	defer leave()
	for range p.jobs {
		r := probeOnce(p.target)
		p.mu.Lock()
		p.probes = append(p.probes, r)
		p.mu.Unlock()
	}
}

// probeOnce must run on a thread inside the client namespace: the socket is
// created by the calling thread.
func probeOnce(target string) Probe {
	at := time.Now()
	d := net.Dialer{Timeout: ProbeTimeout}
	c, err := d.Dial("tcp", target)
	if err != nil {
		return Probe{At: at, Err: err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(at.Add(ProbeTimeout))
	// Half-close: tells the whoami server we have nothing to send, so it
	// answers at once instead of waiting for an HTTP request.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	line, err := bufio.NewReaderSize(c, 128).ReadString('\n')
	if err != nil {
		return Probe{At: at, Err: "read: " + err.Error()}
	}
	who, ok := strings.CutPrefix(strings.TrimSpace(line), "I am ")
	if !ok || who == "" {
		return Probe{At: at, Err: fmt.Sprintf("unexpected answer %q", line)}
	}
	return Probe{At: at, Who: who}
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

// Skipped returns how many ticks found every worker busy.
func (p *Prober) Skipped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

// Stop stops probing, waits for probes in flight and returns every probe in
// start order. Later calls return the same records.
func (p *Prober) Stop() []Probe {
	p.stopOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.final = p.Probes()
		p.l.mu.Lock()
		delete(p.l.probers, p)
		p.l.mu.Unlock()
	})
	return slices.Clone(p.final)
}

func sortProbes(ps []Probe) {
	slices.SortStableFunc(ps, func(a, b Probe) int { return a.At.Compare(b.At) })
}

// Outage is a maximal run of failed probes.
type Outage struct {
	Start    time.Time     // start of the last successful probe before the run (the first failure if none)
	End      time.Time     // start of the first successful probe after the run (the last failure if none)
	Duration time.Duration // End - Start: an upper bound of the client-visible outage
	Before   string        // who answered before, "" if nobody
	After    string        // who answered after, "" if nobody (Ongoing)
	Failed   int           // failed probes in the run
	Ongoing  bool          // no success after the run
}

// Outages returns the maximal runs of failed probes that start at or after
// after. A run that is already under way at after counts from its first
// failure at or after after, but its Start still reaches back to the last
// success before it.
func Outages(probes []Probe, after time.Time) []Outage {
	ps := slices.Clone(probes)
	sortProbes(ps)
	var out []Outage
	lastOK := -1
	for i := 0; i < len(ps); {
		if ps[i].OK() {
			lastOK = i
			i++
			continue
		}
		if ps[i].At.Before(after) {
			i++
			continue
		}
		j := i
		for j < len(ps) && !ps[j].OK() {
			j++
		}
		o := Outage{Failed: j - i, Start: ps[i].At}
		if lastOK >= 0 {
			o.Start, o.Before = ps[lastOK].At, ps[lastOK].Who
		}
		if j < len(ps) {
			o.End, o.After = ps[j].At, ps[j].Who
		} else {
			o.End, o.Ongoing = ps[j-1].At, true
		}
		o.Duration = o.End.Sub(o.Start)
		out = append(out, o)
		i = j
	}
	return out
}

// WaitServed polls until a probe after `after` was answered by who, up to limit.
func (p *Prober) WaitServed(who string, after time.Time, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, pr := range p.Probes() {
			if pr.At.After(after) && pr.Who == who {
				return true
			}
		}
	}
	return false
}
