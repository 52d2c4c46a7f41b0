// Package drill runs one fault scenario — link down, kill -9, SIGSTOP or
// packet loss on the VIP owner — against Baton or against keepalived set up
// the equivalent way, in the same namespace lab (internal/lab) and with the
// same client-side observers, so the two can be compared trial for trial.
//
// Each trial waits until exactly one member holds the VIP, injects the
// fault, watches what the client sees (a TCP prober on VIP:8080 every 5 ms
// and an ARP watch every 20 ms), repairs, and waits for a single holder
// again. Needs root (see lab.New).
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
)

// System under test.
type System string

// Systems.
const (
	Baton      System = "baton"
	Keepalived System = "keepalived"
)

// Fault injected into the VIP owner.
type Fault string

// Faults.
const (
	LinkDown Fault = "linkdown" // owner's cable pulled (bridge-side veth down), then healed
	Kill9    Fault = "kill9"    // owner's agent / keepalived SIGKILLed, then restarted
	SigStop  Fault = "sigstop"  // owner's agent / keepalived frozen for StopFor, then continued
	// Partition cuts the owner off from the other hosts for StopFor (the
	// client still reaches every host), then heals.
	Partition Fault = "partition"
	Loss      Fault = "loss" // LossPercent% loss on every host for LossFor: nothing should fail over
)

// Lab constants shared by both systems.
const (
	VIP        = "10.77.0.100"
	Port       = 8080
	ProbeEvery = 5 * time.Millisecond
	ARPEvery   = 20 * time.Millisecond
	StopFor    = 3 * time.Second
)

// Scenario is one cell of the comparison matrix.
type Scenario struct {
	System      System
	Fault       Fault
	Trials      int
	Profile     string        // "default" | "fast" (| "keepalived-1s" for keepalived only)
	LossPercent int           // loss only; default 10
	LossFor     time.Duration // loss only; default 10 s
	Bin         string        // baton binary (Baton only)
	Dir         string        // configs, pid files and logs
}

// Trial is what one fault did to the client.
type Trial struct {
	Outage       time.Duration // longest run of failed probes (last answer before → first answer after)
	FailedProbes int           // failed probes after the fault
	Dual         time.Duration `json:"DualMs"` // ARP rounds in which two MACs answered for the VIP × ARPEvery
	Failover     bool          // the client got answers from another host than the one faulted
	From, To     string        // holder before the fault; host serving the client afterwards ("" if none)
	Changes      int           // loss only: times a host took the VIP during the loss (false failovers)
}

// Report aggregates a scenario's trials.
type Report struct {
	System, Fault, Profile string
	Trials                 []Trial
	P50, P90, P99, Max     time.Duration // of Trial.Outage
	FailedProbes           int           // sum over trials
	Dual                   time.Duration `json:"DualMs"` // sum over trials (the JSON name is the old one, kept for docs/bench)
	FalseFailovers         int           // loss: Trial.Changes summed
}

// target is a failover manager running in the lab. Calls are sequential.
type target interface {
	hosts() []string // hosts that may hold the VIP
	kill9(host string) error
	restart(host string) error // after kill9
	stop(host string) error
	cont(host string) error
	// takeovers is a counter that grows by one each time a member takes
	// the VIP, from the system's own records: a takeover that lasts less
	// than one look at the addresses (keepalived's backup turning master
	// for a few ms under loss) still counts.
	takeovers() (int, error)
	close()
}

// Validate checks a scenario; errors name the field.
func (s Scenario) Validate() error {
	switch s.System {
	case Baton:
		if s.Bin == "" {
			return errors.New("drill: Bin: baton binary required")
		}
		if s.Profile != "" && s.Profile != "default" && s.Profile != "fast" {
			return fmt.Errorf("drill: Profile %q: baton has default and fast", s.Profile)
		}
	case Keepalived:
		if _, err := AdvertInt(s.Profile); err != nil {
			return err
		}
	default:
		return fmt.Errorf("drill: System %q: want baton or keepalived", s.System)
	}
	switch s.Fault {
	case LinkDown, Kill9, SigStop, Loss, Partition:
	default:
		return fmt.Errorf("drill: Fault %q: want linkdown, kill9, sigstop, partition or loss", s.Fault)
	}
	if s.Trials < 1 {
		return fmt.Errorf("drill: Trials = %d, want ≥ 1", s.Trials)
	}
	if s.LossPercent < 0 || s.LossPercent > 100 {
		return fmt.Errorf("drill: LossPercent = %d, want 0..100", s.LossPercent)
	}
	if s.Dir == "" {
		return errors.New("drill: Dir required")
	}
	return nil
}

// Run builds a lab, starts the system, runs s.Trials trials and tears it all
// down again.
func Run(ctx context.Context, s Scenario, log *slog.Logger) (rep Report, err error) {
	if s.Profile == "" {
		s.Profile = "default"
	}
	if s.LossPercent == 0 {
		s.LossPercent = 10
	}
	if s.LossFor == 0 {
		s.LossFor = 10 * time.Second
	}
	rep = Report{System: string(s.System), Fault: string(s.Fault), Profile: s.Profile}
	if err := s.Validate(); err != nil {
		return rep, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("system", s.System, "fault", s.Fault, "profile", s.Profile)
	l, err := lab.New(lab.Options{Hosts: 3})
	if err != nil {
		return rep, err
	}
	defer l.Close()
	var tg target
	switch s.System {
	case Baton:
		c, err := l.StartCluster(lab.ClusterSpec{Bin: s.Bin, Dir: s.Dir, Profile: s.Profile, VIP: VIP + "/24", Port: Port})
		if err != nil {
			return rep, err
		}
		tg = &baton{c: c}
	case Keepalived:
		k, err := startKeepalived(l, s)
		if err != nil {
			return rep, err
		}
		tg = k
	}
	defer tg.close()
	d := &driver{l: l, tg: tg, s: s, log: log}
	if _, err := d.waitStable(ctx, 30*time.Second); err != nil {
		return rep, fmt.Errorf("start: %w", err)
	}
	if d.pr, err = l.StartProber(fmt.Sprintf("%s:%d", VIP, Port), ProbeEvery); err != nil {
		return rep, err
	}
	defer d.pr.Stop()
	if d.arp, err = l.StartARPWatch(VIP, ARPEvery); err != nil {
		return rep, err
	}
	defer d.arp.Stop()
	// The trials done before an error are summarised too (rep is the named
	// result): a long benchmark run keeps what it measured.
	defer rep.summarise()
	for i := range s.Trials {
		t, err := d.trial(ctx)
		if err != nil {
			return rep, fmt.Errorf("trial %d: %w", i+1, err)
		}
		log.Info("trial", "n", i+1, "from", t.From, "to", t.To, "outage", t.Outage.Round(time.Millisecond),
			"failed", t.FailedProbes, "dual", t.Dual, "changes", t.Changes)
		rep.Trials = append(rep.Trials, t)
	}
	return rep, nil
}

func (r *Report) summarise() {
	r.FailedProbes, r.Dual, r.FalseFailovers = 0, 0, 0
	var ds []time.Duration
	for _, t := range r.Trials {
		ds = append(ds, t.Outage)
		r.FailedProbes += t.FailedProbes
		r.Dual += t.Dual
		r.FalseFailovers += t.Changes
	}
	r.P50, r.P90, r.P99, r.Max = Quantile(ds, 0.5), Quantile(ds, 0.9), Quantile(ds, 0.99), Quantile(ds, 1)
}

// Quantile is the nearest-rank quantile (0 for no values).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

type driver struct {
	l   *lab.Lab
	tg  target
	s   Scenario
	log *slog.Logger
	pr  *probe.Prober
	arp *lab.ARPWatch
}

func (d *driver) trial(ctx context.Context) (Trial, error) {
	from, err := d.waitStable(ctx, 30*time.Second)
	if err != nil {
		return Trial{}, err
	}
	if err := d.waitServedBy(ctx, from, time.Now(), 10*time.Second); err != nil {
		return Trial{}, err
	}
	t := Trial{From: from}
	dual0 := d.arp.Report().DualRounds
	t0 := time.Now()
	var end time.Time // end of the observation window
	switch d.s.Fault {
	case LinkDown, Kill9:
		if d.s.Fault == LinkDown {
			err = d.l.LinkDown(from)
		} else {
			err = d.tg.kill9(from)
		}
		if err != nil {
			return t, err
		}
		t.To, err = d.waitServedByOther(ctx, from, t0, 20*time.Second)
		if err != nil {
			return t, err
		}
		// Keep watching a little: a stale VIP shows up as dual ARP answers.
		sleep(ctx, time.Second)
		end = time.Now()
		if d.s.Fault == LinkDown {
			err = d.l.Heal()
		} else {
			err = d.tg.restart(from)
		}
		if err != nil {
			return t, err
		}
	case SigStop, Partition:
		if d.s.Fault == SigStop {
			err = d.tg.stop(from)
		} else {
			var rest []string
			for _, h := range d.l.Hosts() {
				if h != from {
					rest = append(rest, h)
				}
			}
			err = d.l.Partition([]string{from}, rest)
		}
		if err != nil {
			return t, err
		}
		sleep(ctx, StopFor)
		if d.s.Fault == SigStop {
			err = d.tg.cont(from)
		} else {
			err = d.l.Heal()
		}
		if err != nil {
			return t, err
		}
		sleep(ctx, time.Second)
		end = time.Now()
		t.To = d.servedBy(from, t0, end)
	case Loss:
		before, err := d.tg.takeovers()
		if err != nil {
			return t, err
		}
		if err := d.l.Loss(d.l.Hosts(), d.s.LossPercent); err != nil {
			return t, err
		}
		// Every time a host takes the VIP that did not hold it at the
		// last look is a false failover, also when the old holder keeps
		// it too (split brain): keepalived's backup that misses a few
		// adverts adds the VIP while its master still has it.
		last := []string{from}
		for stopAt := t0.Add(d.s.LossFor); time.Now().Before(stopAt) && ctx.Err() == nil; sleep(ctx, 50*time.Millisecond) {
			hs, err := d.holders()
			if err != nil {
				continue
			}
			for _, h := range hs {
				if !slices.Contains(last, h) {
					t.Changes++
				}
			}
			if len(hs) > 0 {
				last = hs
			}
		}
		end = time.Now()
		if err := d.l.Heal(); err != nil {
			return t, err
		}
		after, err := d.tg.takeovers()
		if err != nil {
			return t, err
		}
		t.Changes = max(t.Changes, after-before)
		t.To = d.servedBy(from, t0, end)
	}
	t.Dual = time.Duration(d.arp.Report().DualRounds-dual0) * ARPEvery
	for _, o := range probe.Outages(d.pr.Probes(), t0) {
		if o.Start.After(end) {
			break
		}
		t.FailedProbes += o.Failed
		t.Outage = max(t.Outage, o.Duration)
	}
	t.Failover = t.To != "" && t.To != from
	if _, err := d.waitStable(ctx, 30*time.Second); err != nil {
		return t, fmt.Errorf("after repair: %w", err)
	}
	return t, ctx.Err()
}

// servedBy returns the first host other than the faulted one that answered
// the client in (t0, end), else whoever answered last ("" if nobody).
func (d *driver) servedBy(from string, t0, end time.Time) string {
	who := ""
	for _, p := range d.pr.Probes() {
		if p.At.After(t0) && p.At.Before(end) && p.OK() {
			if p.Who != from {
				return p.Who
			}
			who = p.Who
		}
	}
	return who
}

func (d *driver) waitServedByOther(ctx context.Context, from string, t0 time.Time, within time.Duration) (string, error) {
	for deadline := time.Now().Add(within); time.Now().Before(deadline) && ctx.Err() == nil; sleep(ctx, 10*time.Millisecond) {
		for _, p := range d.pr.Probes() {
			if p.At.After(t0) && p.OK() && p.Who != from {
				return p.Who, nil
			}
		}
	}
	return "", fmt.Errorf("client not served by another host than %s within %v", from, within)
}

func (d *driver) waitServedBy(ctx context.Context, who string, t0 time.Time, within time.Duration) error {
	for deadline := time.Now().Add(within); time.Now().Before(deadline) && ctx.Err() == nil; sleep(ctx, 10*time.Millisecond) {
		for _, p := range d.pr.Probes() {
			if p.At.After(t0) && p.Who == who {
				return nil
			}
		}
	}
	return fmt.Errorf("client not served by %s within %v", who, within)
}

// stableFor is how long one host must hold the VIP alone before a trial:
// long enough for keepalived's preemption after a restart to have happened.
const stableFor = 1500 * time.Millisecond

// waitStable waits until one host has held the VIP alone for stableFor.
func (d *driver) waitStable(ctx context.Context, within time.Duration) (string, error) {
	cur, since := "", time.Now()
	var last []string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); sleep(ctx, 20*time.Millisecond) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		hs, err := d.holders()
		if err != nil {
			return "", err
		}
		last = hs
		h := ""
		if len(hs) == 1 {
			h = hs[0]
		}
		if h != cur {
			cur, since = h, time.Now()
		}
		if cur != "" && time.Since(since) >= stableFor {
			return cur, nil
		}
	}
	return "", fmt.Errorf("VIP not held by exactly one host for %v within %v (now on %v)", stableFor, within, last)
}

// holders lists the members whose eth0 carries the VIP.
func (d *driver) holders() ([]string, error) { return d.l.Holders(VIP, d.tg.hosts()) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// baton drives a lab.Cluster. SIGSTOP goes to the agent only: its VIP fence
// is a separate process that must drop the VIP when the lease runs out.
type baton struct{ c *lab.Cluster }

func (b *baton) hosts() []string        { return b.c.Members }
func (b *baton) kill9(h string) error   { return b.c.KillAgent(h) }
func (b *baton) restart(h string) error { return b.c.StartAgent(h) }
func (b *baton) stop(h string) error    { return b.c.Agent(h).Signal(syscall.SIGSTOP) }
func (b *baton) cont(h string) error    { return b.c.Agent(h).Signal(syscall.SIGCONT) }
func (b *baton) close()                 { b.c.Stop() }

// takeovers is the group's epoch: every assignment of the group raises it.
// Any member's replica will do; the client's path to them is not lossy.
func (b *baton) takeovers() (int, error) {
	var err error
	for _, h := range b.c.Members {
		var epoch uint64
		if _, epoch, err = b.c.Owner(h); err == nil {
			return int(epoch), nil
		}
	}
	return 0, fmt.Errorf("epoch: %w", err)
}
