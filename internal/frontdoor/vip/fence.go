package vip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Fence timing constants.
const (
	// readdGrace is how long the fence lets an address of a group it holds no hold for stay before it removes it
	// again. The agent writes a hold before it adds an address, but the fence reads its pipe and the kernel's
	// address notifications in two goroutines, so it may learn of the address a moment before it reads the hold.
	// 50 ms covers that reordering many times over on a loaded host; and it bounds how long an address that a
	// frozen agent re-adds after its lease ended can stay (see RunFence).
	readdGrace = 50 * time.Millisecond
	// retryEvery is how soon the fence tries again when removing an address failed.
	retryEvery = 100 * time.Millisecond
	// rewatchEvery is how soon the fence watches the kernel's addresses again when the watch failed.
	rewatchEvery = time.Second
	// maxHold bounds a hold: a longer one is a malformed command (leases are seconds, not days).
	maxHold = 24 * time.Hour
)

// HoldLine is the command that tells the fence to remove group's VIPs when remaining has passed, unless another
// hold comes first. It carries the time it was written at on CLOCK_MONOTONIC, which the agent and the fence share
// on one host, so the fence counts remaining from then and not from when it reads the line: the time the line
// spends in the pipe, or an agent frozen between computing remaining and writing the line, cannot stretch the
// deadline. remaining is rounded down to whole milliseconds.
func HoldLine(group string, remaining time.Duration) string {
	return fmt.Sprintf("hold %s %d %d\n", group, remaining.Milliseconds(), monotonicNow())
}

// DropLine is the command that tells the fence to remove group's VIPs now.
func DropLine(group string) string { return "drop " + group + "\n" }

// VIPsLine is the command that tells the fence which VIPs group has from now on (after a config reload): a new
// group is guarded from then on, and a VIP that leaves its group's list is removed if it is still present. No
// VIPs forgets the group.
func VIPsLine(group string, vips []VIP) string {
	var b strings.Builder
	b.WriteString("vips " + group)
	for _, v := range vips {
		b.WriteString(" " + v.Prefix.String() + " " + v.Interface)
	}
	b.WriteString("\n")
	return b.String()
}

// KeepLine is the command that tells the fence which VIPs' TCP connections to leave alone when it removes them
// (those with tcp_reset: false; see Manager.KeepConnections), replacing the earlier list.
func KeepLine(vips []VIP) string {
	var b strings.Builder
	b.WriteString("keep")
	for _, v := range vips {
		b.WriteString(" " + v.Addr().String())
	}
	b.WriteString("\n")
	return b.String()
}

// monotonicNow reads CLOCK_MONOTONIC, the clock every process on this host shares. (Go's monotonic readings count
// from the start of each process, so they cannot be compared across the agent and the fence.)
func monotonicNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("CLOCK_MONOTONIC: " + err.Error()) // Linux always has it
	}
	return time.Duration(ts.Nano())
}

// RunFence is the body of the fence, a small process of its own (same binary) that keeps a group's VIPs from
// outliving the agent's lease on them, also when the agent is frozen or dead. It reads commands from r, the
// agent's pipe, one per line:
//
//	hold <group> <ms> [<written-at>]   the group's VIPs must be gone <ms> milliseconds from now unless another
//	                                   hold comes first (a new hold replaces the deadline, also with an earlier one)
//	drop <group>                       remove the group's VIPs now
//	vips <group> [<prefix> <iface>]...  the group's VIPs from now on (a config reload): a new group is guarded,
//	                                   a VIP no longer listed is removed if present, no VIPs forgets the group
//
// "now" is when the fence reads the line, on its own monotonic clock; with the optional written-at (the agent's
// CLOCK_MONOTONIC in nanoseconds, see HoldLine) it is when the agent wrote the line, whichever is earlier. A
// deadline that has already passed removes at once. Lines the fence does not understand are logged and ignored:
// the deadline in force stays, which is the safe side.
//
// The groups and their VIPs are given up front. The fence never adds an address. It removes a group's VIPs:
//   - at the group's deadline (logged as a warning: the agent did not extend its lease in time);
//   - on drop;
//   - all of them, at once, when r ends (EOF: the agent died and the kernel closed its end of the pipe) or fails,
//     or when ctx is cancelled, and then returns (nil on EOF);
//   - when one of them appears while its group holds no hold (after a grace of 50 ms, for the hold that may
//     be on its way): the agent must have been frozen between checking its lease and adding or renewing the
//     address, and resumed after the fence removed it. That check and that system call cannot be made atomic in
//     the agent; the fence watches the kernel's address notifications to close the gap.
//
// The fence depends only on its own timers and the kernel, so it keeps working while the agent is stopped
// (SIGSTOP). It works on the network namespace of the calling thread, like Manager (nil m: NewManager(log)). A
// VIP belongs to one group. When RunFence returns on ctx, a read blocked on r ends with it if r has
// SetReadDeadline (an *os.File pipe has), and otherwise when r ends.
//
// # Why the address is gone before anyone else may hold it
//
// The owner's lease runs until send-time + L of its newest heartbeat a majority acked (on the owner's clock);
// every time the lease extends, the agent sends a hold whose deadline is lease expiry − guard (HoldLine(group,
// expiry−guard−now)). The fence removes the address at that deadline, on the same host's monotonic clock as the
// lease, so the address is gone at least the guard before the lease ends, which is at most L·(1+ρ) of real time
// after the send. Each voter that acked promised not to release the group before L·(1+ρ)² on its own clock after
// it received the heartbeat, which is at least L·(1+ρ) of real time; another node may add the address only once a
// majority released, and any majority that acked and any majority that released share a voter. So no other node
// adds the address before this one dropped it. That holds
//   - when the agent runs: it drops the address itself, earlier;
//   - when the agent is frozen: the fence's timer does not depend on it;
//   - when the agent is killed: the pipe's EOF removes the address at once, before the deadline;
//   - when the agent, frozen between deciding and adding, adds after its lease ended: the fence removes the
//     address again within the grace. (This is the one case with a short window, and it needs a freeze of at
//     least the remaining lease between two consecutive system calls.)
//
// The hold counts from when the agent wrote it, thanks to HoldLine's written-at: a plain "hold g ms" counts from
// when the fence reads it, and an agent frozen between computing ms and writing the line would stretch the
// deadline by the length of the freeze. The guard must cover the fence's own lateness: the timer firing late on a
// loaded host and the netlink calls that end the address's TCP connections and remove it (well under a
// millisecond on an idle host).
//
// When the agent and the fence are killed together (e.g. the whole cgroup), the kernel address lifetime the agent
// renews (Manager.Renew) is the last line of defence: the address goes within the lifetime (whole seconds) after
// the last renewal. The fence cannot help against a host that is suspended or whose VM is paused: its monotonic
// clock stops with it, as the agent's does, and the address returns with the host until the fence's timer fires.
func RunFence(ctx context.Context, r io.Reader, groups map[string][]VIP, m *Manager, log *slog.Logger) error {
	return runFence(ctx, r, groups, m, log, monotonicNow)
}

type fenceGroup struct {
	name  string
	vips  []VIP
	until time.Time // zero when the group holds no hold
}

type fence struct {
	m      *Manager
	log    *slog.Logger
	mono   func() time.Duration
	groups map[string]*fenceGroup
	group  map[VIP]*fenceGroup
	// checks are VIPs to make sure of at a given time: if their group holds no hold then, the fence removes
	// them. For addresses that appeared without a hold, and for removals that failed.
	checks map[VIP]check
}

type check struct {
	at    time.Time
	retry bool // a removal failed; otherwise the address appeared without a hold
}

func runFence(ctx context.Context, r io.Reader, groups map[string][]VIP, m *Manager, log *slog.Logger, mono func() time.Duration) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewManager(log)
	}
	f := &fence{m: m, log: log, mono: mono, groups: map[string]*fenceGroup{}, group: map[VIP]*fenceGroup{}, checks: map[VIP]check{}}
	for name, vips := range groups {
		g := &fenceGroup{name: name, vips: slices.Clone(vips)}
		f.groups[name] = g
		for _, v := range vips {
			f.group[v] = g
		}
	}

	done := make(chan struct{})
	defer close(done)
	lines, ended := readLines(r, done)
	defer unblock(r)

	// The watch of the kernel's addresses: events is nil while there is none, and then rewatchAt says when to try
	// again.
	var events <-chan netip.Addr
	var stopWatch chan struct{}
	var rewatchAt time.Time
	startWatch := func() {
		stopWatch = make(chan struct{})
		ch, err := m.addrs.watch(stopWatch, log)
		if err != nil {
			log.Error("cannot watch the kernel's addresses; only deadlines are enforced until it works", "err", err)
			close(stopWatch)
			events, rewatchAt = nil, time.Now().Add(rewatchEvery)
			return
		}
		events, rewatchAt = ch, time.Time{}
	}
	startWatch()
	defer func() {
		if events != nil {
			close(stopWatch)
			for range events { // until the watch's goroutines are gone
			}
		}
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		f.due(now)
		next := f.next()
		if !rewatchAt.IsZero() && (next.IsZero() || rewatchAt.Before(next)) {
			next = rewatchAt
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			log.Warn("fence stopped; removing every VIP")
			return errors.Join(ctx.Err(), f.removeAll())
		case line := <-lines:
			f.command(line, time.Now())
		case err := <-ended:
			if err != nil {
				log.Warn("cannot read the agent's pipe; removing every VIP", "err", err)
				return errors.Join(fmt.Errorf("reading the agent's commands: %w", err), f.removeAll())
			}
			log.Warn("agent gone (its pipe closed); removing every VIP")
			return f.removeAll()
		case ip, ok := <-events:
			if !ok {
				log.Warn("the watch of the kernel's addresses ended; watching again", "in", rewatchEvery)
				close(stopWatch)
				events, rewatchAt = nil, time.Now().Add(rewatchEvery)
				continue
			}
			f.appeared(ip, time.Now())
		case <-tick:
			if !rewatchAt.IsZero() && !time.Now().Before(rewatchAt) {
				startWatch()
			}
		}
	}
}

// readLines reads r line by line in a goroutine, which ends after sending the end of r (nil for EOF) on ended, or
// when done is closed and it is not blocked reading r.
func readLines(r io.Reader, done <-chan struct{}) (<-chan string, <-chan error) {
	lines := make(chan string)
	ended := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
		ended <- sc.Err()
	}()
	return lines, ended
}

// unblock ends a read blocked on r when r can say so (an *os.File on a pipe can), so that the reading goroutine
// ends with RunFence. Otherwise it ends when r does.
func unblock(r io.Reader) {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		_ = d.SetReadDeadline(time.Now())
	}
}

func (f *fence) held(g *fenceGroup, now time.Time) bool {
	return !g.until.IsZero() && now.Before(g.until)
}

func (f *fence) command(line string, now time.Time) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return
	}
	bad := func(why string) { f.log.Error("ignoring a command from the agent", "line", line, "why", why) }
	verb := fields[0]
	switch {
	case verb == "hold" && (len(fields) == 3 || len(fields) == 4), verb == "drop" && len(fields) == 2:
	case verb == "vips" && len(fields) >= 2 && len(fields)%2 == 0:
		f.setVIPs(fields[1], fields[2:], now, bad)
		return
	case verb == "keep":
		addrs := make([]netip.Addr, 0, len(fields)-1)
		for _, s := range fields[1:] {
			a, err := netip.ParseAddr(s)
			if err != nil {
				bad(fmt.Sprintf("%q is not an address", s))
				return
			}
			addrs = append(addrs, a)
		}
		f.m.KeepConnections(addrs)
		return
	default:
		bad(`not "hold GROUP MS [WRITTEN-AT]", "drop GROUP", "vips GROUP [PREFIX IFACE]..." or "keep [ADDR]..."`)
		return
	}
	g := f.groups[fields[1]]
	if g == nil {
		bad("unknown group")
		return
	}
	if verb == "drop" {
		g.until = time.Time{}
		f.log.Info("agent dropped the group; removing its VIPs", "group", g.name)
		f.removeGroup(g, now)
		return
	}
	const maxMS = int64(maxHold / time.Millisecond)
	ms, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil || ms > maxMS || ms < -maxMS {
		bad("the milliseconds are not a whole number of at most a day")
		return
	}
	until := now.Add(time.Duration(ms) * time.Millisecond)
	if len(fields) == 4 {
		at, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			bad("the time written at is not a whole number of nanoseconds")
			return
		}
		// Count from when the agent wrote the line, if that is earlier (on one host it always is).
		if since := f.mono() - time.Duration(at); since > 0 {
			until = until.Add(-since)
		}
	}
	if until.Before(now) {
		until = now // already passed: due removes at once
	}
	g.until = until
	f.log.Debug("hold", "group", g.name, "for", g.until.Sub(now))
}

// setVIPs replaces group's VIPs with those in pairs (prefix, interface); see VIPsLine. A malformed list changes
// nothing.
func (f *fence) setVIPs(group string, pairs []string, now time.Time, bad func(string)) {
	var vips []VIP
	for i := 0; i < len(pairs); i += 2 {
		v, err := Parse(pairs[i], pairs[i+1])
		if err != nil {
			bad(err.Error())
			return
		}
		if g := f.group[v]; g != nil && g.name != group {
			bad(fmt.Sprintf("%s belongs to group %s", v, g.name))
			return
		}
		vips = append(vips, v)
	}
	g := f.groups[group]
	if g == nil {
		if len(vips) == 0 {
			return
		}
		g = &fenceGroup{name: group}
		f.groups[group] = g
	}
	for _, v := range g.vips {
		if !slices.Contains(vips, v) {
			delete(f.group, v)
			delete(f.checks, v)
			f.remove(v, now)
		}
	}
	g.vips = vips
	for _, v := range vips {
		f.group[v] = g
	}
	if len(vips) == 0 {
		delete(f.groups, group)
	}
	f.log.Info("the group's VIPs changed", "group", group, "vips", vips)
}

// due removes the VIPs of the groups whose deadline has come and makes the checks that are due.
func (f *fence) due(now time.Time) {
	for _, g := range f.groups {
		if !g.until.IsZero() && !now.Before(g.until) {
			g.until = time.Time{}
			f.log.Warn("hold ran out: the agent did not extend it in time; removing the group's VIPs", "group", g.name)
			f.removeGroup(g, now)
		}
	}
	for v, c := range f.checks {
		if now.Before(c.at) {
			continue
		}
		delete(f.checks, v)
		if f.held(f.group[v], now) {
			continue
		}
		ok, err := f.m.Present(v)
		switch {
		case errors.Is(err, ErrNoInterface):
		case err != nil:
			f.log.Error("cannot tell whether a VIP is present; checking again", "vip", v, "err", err, "in", retryEvery)
			f.checks[v] = check{at: now.Add(retryEvery), retry: c.retry}
		case ok && c.retry:
			f.remove(v, now)
		case ok:
			f.log.Error("VIP present while its group holds no hold (agent frozen past its lease?); removing it",
				"vip", v, "group", f.group[v].name)
			f.remove(v, now)
		}
	}
}

// next is when due has something to do, zero if never.
func (f *fence) next() time.Time {
	var t time.Time
	earlier := func(u time.Time) {
		if !u.IsZero() && (t.IsZero() || u.Before(t)) {
			t = u
		}
	}
	for _, g := range f.groups {
		earlier(g.until)
	}
	for _, c := range f.checks {
		earlier(c.at)
	}
	return t
}

// appeared handles the kernel's word that ip was added (or was there when the watch began).
func (f *fence) appeared(ip netip.Addr, now time.Time) {
	for v, g := range f.group {
		if v.Addr() != ip || f.held(g, now) {
			continue
		}
		if _, ok := f.checks[v]; !ok {
			f.checks[v] = check{at: now.Add(readdGrace)}
		}
	}
}

func (f *fence) removeGroup(g *fenceGroup, now time.Time) {
	for _, v := range g.vips {
		f.remove(v, now)
	}
}

func (f *fence) remove(v VIP, now time.Time) {
	if err := f.m.Remove(v); err != nil {
		f.log.Error("cannot remove VIP; trying again", "vip", v, "err", err, "in", retryEvery)
		f.checks[v] = check{at: now.Add(retryEvery), retry: true}
	}
}

// removeAll removes every VIP before the fence returns, trying a few times over a quarter second: after that
// the fence is gone and only the kernel lifetime is left.
func (f *fence) removeAll() error {
	left := make([]VIP, 0, len(f.group))
	for v := range f.group {
		left = append(left, v)
	}
	var errs []error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(retryEvery)
		}
		errs = errs[:0]
		var failed []VIP
		for _, v := range left {
			if err := f.m.Remove(v); err != nil {
				failed = append(failed, v)
				errs = append(errs, err)
			}
		}
		if left = failed; len(left) == 0 {
			return nil
		}
	}
	for i := range errs {
		f.log.Error("cannot remove VIP; only its kernel lifetime is left", "vip", left[i], "err", errs[i])
	}
	return errors.Join(errs...)
}
