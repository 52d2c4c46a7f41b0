package health

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// CheckState is one check's state as the API shows it.
type CheckState struct {
	// Name is "<type>[<index>]", the index being the check's position in the group's checks (e.g. "http[0]").
	Name    string `json:"name"`
	Type    string `json:"type"`
	Healthy bool   `json:"healthy"`
	// Consecutive counts the latest results in a row that agree with Last: successes if Last.OK, else failures.
	Consecutive int    `json:"consecutive"`
	Last        Result `json:"last"`
	// LastFailure is the newest failed probe (zero if none failed yet): once the check passes again, Last no
	// longer says why it failed, and an operator looking back at a flap wants to know.
	LastFailure Result `json:"last_failure,omitzero"`
	// Rises and Falls count the check's flips to healthy and to unhealthy since Start; a check that flaps shows
	// it here.
	Rises int `json:"rises"`
	Falls int `json:"falls"`
}

// Group runs the health checks of one group and tells whether all of them pass.
//
// Every check starts unhealthy and becomes healthy after `rise` successful probes in a row, so a node that has
// just started does not look healthy before it has proved it; a healthy check becomes unhealthy after `fall`
// failed probes in a row. A probe that hangs fails when its timeout elapses. A group with no checks is always
// healthy.
type Group struct {
	name     string
	log      *slog.Logger
	onChange func(group string, healthy bool)
	checks   []*check
	observer atomic.Pointer[func(group, check string, r Result)]

	mu       sync.RWMutex // guards the checks' state and started/stopped
	started  bool
	stopped  bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	notifyMu sync.Mutex // serializes onChange calls; never held by anything a caller can call
	notified bool       // the value last given to onChange (or the initial one)
}

// check is one check of a group with its state (guarded by Group.mu).
type check struct {
	name, typ      string
	interval       time.Duration
	timeout        time.Duration
	rise, fall     int
	checker        Checker
	healthy        bool
	consecutive    int
	last           Result
	lastFailure    Result
	rises, falls   int
	reportedFailed bool // a failure has been logged while the check never was healthy
}

// NewGroup returns the checks of group name, not yet running. It fails if any check is invalid (see New); the
// error names it by its index, e.g. `group "web": checks[1].url: missing`.
//
// onChange, which may be nil, is called whenever Healthy flips, with its new value; the initial value (false,
// or true without checks) is not reported. It is called from a check goroutine with no lock held that the
// Group's methods take, so it may call Healthy and States, but not Stop, which waits for that goroutine. Calls
// never overlap and the last one always matches Healthy; a slow onChange delays the probes of the check that
// made the call.
func NewGroup(name string, checks []config.Check, log *slog.Logger, onChange func(group string, healthy bool)) (*Group, error) {
	norm := make([]config.Check, len(checks))
	checkers := make([]Checker, len(checks))
	for i, c := range checks {
		n, err := normalize(c)
		if err != nil {
			return nil, groupError(name, i, err)
		}
		norm[i] = n
		checkers[i], _ = New(n) // cannot fail: n is valid
	}
	return newGroup(name, norm, checkers, log, onChange), nil
}

// newGroup is NewGroup with the Checkers given, so that tests can run a Group over scripted ones. checks must be
// normalized.
func newGroup(name string, checks []config.Check, checkers []Checker, log *slog.Logger, onChange func(string, bool)) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(string, bool) {}
	}
	g := &Group{name: name, log: log.With("group", name), onChange: onChange, notified: len(checks) == 0}
	for i, c := range checks {
		g.checks = append(g.checks, &check{
			name:     fmt.Sprintf("%s[%d]", c.Type, i),
			typ:      c.Type,
			interval: c.Interval.D(),
			timeout:  c.Timeout.D(),
			rise:     c.Rise,
			fall:     c.Fall,
			checker:  checkers[i],
		})
	}
	return g
}

func groupError(group string, i int, err error) error {
	if fe, ok := err.(config.FieldError); ok {
		fe.Path = fmt.Sprintf("checks[%d].%s", i, fe.Path)
		return fmt.Errorf("group %q: %w", group, fe)
	}
	return fmt.Errorf("group %q: checks[%d]: %w", group, i, err)
}

// AssumeHealthy makes every check start out healthy instead of unhealthy, so that it has to fail fall times
// in a row before the group is unhealthy. A config reload that changes the checks of a healthy group uses it: the
// new checks take over from passing ones as passing, and a reload does not make the owner give its group up
// before the new checks said anything. Call it before Start.
func (g *Group) AssumeHealthy() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.checks {
		c.healthy = true
	}
	g.notifyMu.Lock()
	g.notified = true
	g.notifyMu.Unlock()
}

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Start runs every check in its own goroutine, each probing at once and then every interval, until ctx is done or
// Stop is called. It returns immediately. Starting a group again, or after Stop, does nothing.
func (g *Group) Start(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started || g.stopped {
		return
	}
	g.started = true
	ctx, g.cancel = context.WithCancel(ctx)
	for _, c := range g.checks {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.run(ctx, c)
		}()
	}
}

// Stop stops the checks and waits for their goroutines to end; a probe in flight is cancelled (an exec check's
// processes are killed). It may be called more than once, and before Start.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	cancel := g.cancel
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	g.wg.Wait()
}

// SetObserver sets a function that is given every probe result (e.g. for metrics), or removes it when f is nil.
// It is called from the check goroutines, concurrently, and must not block.
func (g *Group) SetObserver(f func(group, check string, r Result)) {
	if f == nil {
		g.observer.Store(nil)
		return
	}
	g.observer.Store(&f)
}

// Healthy reports whether every check is healthy now; a group without checks always is.
func (g *Group) Healthy() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.healthyLocked()
}

func (g *Group) healthyLocked() bool {
	for _, c := range g.checks {
		if !c.healthy {
			return false
		}
	}
	return true
}

// States returns every check's state, in config order.
func (g *Group) States() []CheckState {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]CheckState, len(g.checks))
	for i, c := range g.checks {
		out[i] = CheckState{Name: c.name, Type: c.typ, Healthy: c.healthy, Consecutive: c.consecutive,
			Last: c.last, LastFailure: c.lastFailure, Rises: c.rises, Falls: c.falls}
	}
	return out
}

// run probes c every interval until ctx is done. A probe that outlasts the interval delays the next one rather
// than overlapping it.
func (g *Group) run(ctx context.Context, c *check) {
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		r := c.checker.Check(pctx)
		cancel()
		if ctx.Err() != nil {
			return // stopped mid-probe: the result says nothing about the service
		}
		if r.At.IsZero() {
			r.At = start
		}
		if r.Took == 0 {
			r.Took = time.Since(start)
		}
		g.record(c, r)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// record applies one probe result to c, then reports it, logs a flip and tells onChange if the group flipped.
func (g *Group) record(c *check, r Result) {
	g.mu.Lock()
	if c.last.At.IsZero() || r.OK != c.last.OK {
		c.consecutive = 0
	}
	c.consecutive++
	c.last = r
	if !r.OK {
		c.lastFailure = r
	}
	flipped := false
	switch {
	case !c.healthy && r.OK && c.consecutive >= c.rise:
		c.healthy, flipped = true, true
		c.rises++
	case c.healthy && !r.OK && c.consecutive >= c.fall:
		c.healthy, flipped = false, true
		c.falls++
	}
	// Until a check has passed once, say why it does not, once: otherwise a node that never becomes healthy
	// would not tell.
	firstFailure := !r.OK && c.rises == 0 && !c.reportedFailed
	if firstFailure {
		c.reportedFailed = true
	}
	consecutive := c.consecutive
	g.mu.Unlock()

	if f := g.observer.Load(); f != nil {
		(*f)(g.name, c.name, r)
	}
	switch {
	case flipped && r.OK:
		g.log.Info("health check passing", "check", c.name, "detail", r.Detail, "successes", consecutive)
	case flipped:
		g.log.Warn("health check failing", "check", c.name, "detail", r.Detail, "failures", consecutive)
	case firstFailure:
		g.log.Info("health check not passing yet", "check", c.name, "detail", r.Detail, "rise", c.rise)
	}
	if flipped {
		g.notify()
	}
}

// notify tells onChange the group's health if it differs from what it was last told. It reads the current state
// rather than passing on the flip that prompted it, so that two checks flipping at once cannot deliver their news
// out of order.
func (g *Group) notify() {
	g.notifyMu.Lock()
	defer g.notifyMu.Unlock()
	h := g.Healthy()
	if h == g.notified {
		return
	}
	g.notified = h
	g.onChange(g.name, h)
}
