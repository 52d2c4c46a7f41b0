package nemesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/pglab"
	"github.com/baton-ha/baton/internal/pgload"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/quorum"
)

// The groups of a run and their VIPs (in the lab's 10.77.0.0/24).
const (
	WebVIP = "10.77.0.100" // active-passive group "web"
	AAVIP0 = "10.77.0.101" // active-active group "aa", unit 0
	AAVIP1 = "10.77.0.102" // unit 1
	PGVIP  = "10.77.0.103" // PostgreSQL group "pg" (sync: on) on h1 and h2
)

// Config is one nemesis run.
type Config struct {
	Bin      string // the baton binary
	Dir      string // configs, data dirs, logs; kept after the run
	Seed     uint64
	Duration time.Duration // the fault phase (default 2 min)
	Profile  string        // default | fast | wan
	Voters   int           // 3 or 5: members h1..h(N-1) and a witness hN
	Postgres bool          // also run the PostgreSQL group (needs Debian's postgresql 15)
	Kinds    []Kind        // nil: all
	MeanGap  time.Duration // mean time between fault starts (default 4 s)
	// Bound is the longest VIP outage allowed when an eligible member and
	// a quorum were free of faults from Settle before the outage to its end;
	// 0 takes the profile's (DefaultBound).
	Bound  time.Duration
	Settle time.Duration // default 2 s
	// LossNoise: during loss-only periods, outages up to this long are
	// reported but do not fail the run (a probe can time out on a loaded
	// machine with the VIP in place); default 150 ms.
	LossNoise time.Duration
	Log       *slog.Logger // the lab's log; nil discards
	Out       io.Writer    // the timeline as it happens; nil discards
}

// DefaultBound is the outage bound per profile: the profile's target
// (docs/design.md: default p99 ≤ 0.6 s, fast ≤ 0.2 s, wan seconds) with room
// for a loaded machine, well below what the compound-fault regression of
// issue 13 showed (1.8 s on default).
var DefaultBound = map[string]time.Duration{"default": time.Second, "fast": 500 * time.Millisecond, "wan": 10 * time.Second}

// ConvergeWithin is how soon after the last fault healed every group must
// have one owner that every node reports and that holds the VIPs.
const ConvergeWithin = 10 * time.Second

// Applied is a fault as it was carried out.
type Applied struct {
	Fault
	Hosts      []string  // whom it hit
	Start, End time.Time // wall clock of this process
	Skipped    string    // why it was not applied ("" if it was)
	Err        string
}

// touches lists the hosts a fault makes unfit to take over or to vote:
// clock steps and floods touch nobody (they must not matter), loss touches
// every host.
func (a Applied) touches() []string {
	if a.Skipped != "" {
		return nil
	}
	switch a.Kind {
	case ClockStep, Flood:
		return nil
	}
	return a.Hosts
}

// Report is what a run saw.
type Report struct {
	Config     Config
	Plan       []Fault
	Applied    []Applied
	T0         time.Time // start of the fault phase
	Healed     time.Time // every fault undone
	Converged  time.Duration
	ConvergeOK bool
	LastView   string // the views when convergence failed
	Events     []quorum.Event
	Probes     map[string][]probe.Probe // VIP → probes
	ARP        map[string]lab.ARPReport // VIP → ARP watch
	ARPEvery   time.Duration
	Acked      int
	Lost       []int64
	PGErr      string
	Violations []Violation
	groups     map[string][]string // group → members
	voters     []string
	vipGroup   map[string]string
}

// Run builds the lab, starts the cluster, runs the plan drawn from the seed
// and checks the result. The returned error is about the harness (the lab
// could not be built, the cluster never got ready); the checker's verdict
// is Report.Violations.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Duration == 0 {
		cfg.Duration = 2 * time.Minute
	}
	if cfg.Profile == "" {
		cfg.Profile = "default"
	}
	if cfg.Voters == 0 {
		cfg.Voters = 3
	}
	if cfg.Voters != 3 && cfg.Voters != 5 {
		return nil, fmt.Errorf("nemesis: voters = %d, want 3 or 5", cfg.Voters)
	}
	if cfg.Bound == 0 {
		cfg.Bound = DefaultBound[cfg.Profile]
	}
	if cfg.Bound == 0 {
		return nil, fmt.Errorf("nemesis: profile %q: want default, fast or wan", cfg.Profile)
	}
	if cfg.Settle == 0 {
		cfg.Settle = 2 * time.Second
	}
	if cfg.LossNoise == 0 {
		cfg.LossNoise = 150 * time.Millisecond
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Kinds == nil {
		cfg.Kinds = Kinds
	}
	if cfg.Postgres {
		if _, err := os.Stat(filepath.Join(pglab.BinDir, "pg_ctl")); err != nil {
			return nil, fmt.Errorf("nemesis: PostgreSQL 15 is not installed (%v); apt-get install postgresql, or run without the pg group", err)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	groups := []string{"web", "aa"}
	if cfg.Postgres {
		groups = append(groups, "pg")
	}
	r := &Report{Config: cfg, Probes: map[string][]probe.Probe{}, ARP: map[string]lab.ARPReport{}, ARPEvery: 20 * time.Millisecond,
		vipGroup: map[string]string{WebVIP: "web", AAVIP0: "aa", AAVIP1: "aa", PGVIP: "pg"}}
	r.Plan = Plan(PlanSpec{Seed: cfg.Seed, Duration: cfg.Duration, Kinds: cfg.Kinds, MeanGap: cfg.MeanGap, Settle: cfg.Settle, Groups: groups})
	fmt.Fprintf(cfg.Out, "nemesis: seed %d, %d voters, profile %s, %v of faults, %d planned; bound %v once an eligible member has been fault-free for %v\n",
		cfg.Seed, cfg.Voters, cfg.Profile, cfg.Duration, len(r.Plan), cfg.Bound, cfg.Settle)

	l, err := lab.New(lab.Options{Hosts: cfg.Voters, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	hosts := l.Hosts()
	members, witness := hosts[:len(hosts)-1], hosts[len(hosts)-1]
	r.voters = hosts
	r.groups = map[string][]string{"web": members, "aa": members, "pg": {"h1", "h2"}}
	faultFile := func(h string) string { return filepath.Join(cfg.Dir, h+".faults") }
	var more strings.Builder
	fmt.Fprintf(&more, "  - name: aa\n    mode: active-active\n    members:\n")
	for i, h := range members {
		fmt.Fprintf(&more, "      - {node: %s, priority: %d}\n", h, 200-10*i)
	}
	fmt.Fprintf(&more, "    vips:\n      - {address: %s/24, interface: eth0}\n      - {address: %s/24, interface: eth0}\n", AAVIP0, AAVIP1)
	if cfg.Postgres {
		if err := pglab.WriteSecrets(cfg.Dir); err != nil {
			return nil, err
		}
		fmt.Fprintf(&more, "  - name: pg\n    members:\n      - {node: h1, priority: 200}\n      - {node: h2, priority: 190}\n"+
			"    vips: [{address: %s/24, interface: eth0}]\n%s", PGVIP, pglab.DriverYAML(cfg.Dir, "on", l.Addr(lab.Client)))
		defer pglab.StopPostgres(l, cfg.Dir)
	}
	for _, h := range hosts {
		_ = os.Remove(faultFile(h))
	}
	c, err := l.StartCluster(lab.ClusterSpec{Bin: cfg.Bin, Dir: cfg.Dir, Members: len(members), Profile: cfg.Profile,
		VIP: WebVIP + "/24", Groups: more.String(),
		Env: func(h string) []string { return []string{agent.EnvDebugFaults + "=" + faultFile(h)} }})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	vips := []string{WebVIP, AAVIP0, AAVIP1}
	if cfg.Postgres {
		vips = append(vips, PGVIP)
	}
	if _, err := converge(ctx, c, vips, groups, 180*time.Second); err != nil {
		return r, fmt.Errorf("nemesis: the cluster never got ready: %w", err)
	}
	var writer *pgload.Writer
	if cfg.Postgres {
		pc, err := pgload.Connect(pglab.ConnString(PGVIP), pglab.Dialer(l))
		if err != nil {
			return r, err
		}
		if err := prepareRetry(ctx, pc, 60*time.Second); err != nil {
			return r, fmt.Errorf("nemesis: creating the table through the pg VIP: %w", err)
		}
		writer = pgload.Start(pc, 1)
	}
	probers := map[string]*probe.Prober{}
	watches := map[string]*lab.ARPWatch{}
	for _, v := range vips {
		if v != PGVIP {
			p, err := l.StartProber(v+":8080", 10*time.Millisecond)
			if err != nil {
				return r, err
			}
			probers[v] = p
		}
		w, err := l.StartARPWatch(v, r.ARPEvery)
		if err != nil {
			return r, err
		}
		watches[v] = w
	}
	time.Sleep(2 * time.Second)

	x := &executor{l: l, c: c, cfg: cfg, members: members, witness: witness, groups: r.groups, faultFile: faultFile,
		linkRef: map[string]int{}, proc: map[string]string{}, clock: map[string][]*Applied{}, disk: map[string][]*Applied{}}
	r.T0 = time.Now()
	r.Applied = x.run(ctx, r.Plan, r.T0)
	x.healAll()
	r.Healed = time.Now()
	fmt.Fprintf(cfg.Out, "%s every fault healed\n", rel(r.T0, r.Healed))
	r.LastView, err = converge(ctx, c, vips, groups, ConvergeWithin)
	r.Converged, r.ConvergeOK = time.Since(r.Healed), err == nil
	if err != nil {
		r.LastView = err.Error()
	}
	fmt.Fprintf(cfg.Out, "%s converged=%v after %v\n", rel(r.T0, time.Now()), r.ConvergeOK, r.Converged.Round(time.Millisecond))
	time.Sleep(time.Second)
	for v, p := range probers {
		r.Probes[v] = p.Stop()
	}
	for v, w := range watches {
		r.ARP[v] = w.Stop()
	}
	if writer != nil {
		acks, _, _ := writer.Stop()
		r.Acked = len(acks)
		if err := checkAcks(ctx, l, acks, r); err != nil {
			r.PGErr = err.Error()
		}
	}
	if r.Events, err = events(l, c, witness); err != nil {
		return r, err
	}
	r.Violations = Check(r)
	return r, nil
}

func rel(t0, t time.Time) string { return fmt.Sprintf("t+%7.3fs", t.Sub(t0).Seconds()) }

// prepareRetry creates the writer's table, retrying while the new group's
// primary comes up.
func prepareRetry(ctx context.Context, pc *pgx.ConnConfig, limit time.Duration) error {
	var err error
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = pgload.Prepare(cctx, pc)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

// checkAcks looks every acknowledged write up on the pg group's final
// primary (through its VIP).
func checkAcks(ctx context.Context, l *lab.Lab, acks []pgload.Ack, r *Report) error {
	cfg, err := pgload.Connect(pglab.ConnString(PGVIP), pglab.Dialer(l))
	if err != nil {
		return err
	}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r.Lost, _, last = pgload.Check(cctx, cfg, acks)
		cancel()
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("reading the acknowledged writes through %s: %w", PGVIP, last)
}

// events reads the history from the witness (any node's replica would do).
func events(l *lab.Lab, c *lab.Cluster, witness string) ([]quorum.Event, error) {
	var last error
	for _, h := range append([]string{witness}, c.Members...) {
		resp, err := l.HTTPClient(lab.Client, 5*time.Second).Get("http://" + net.JoinHostPort(l.Addr(h), "7480") + "/v1/events")
		if err != nil {
			last = err
			continue
		}
		var evs []quorum.Event
		err = json.NewDecoder(resp.Body).Decode(&evs)
		resp.Body.Close()
		if err == nil {
			return evs, nil
		}
		last = err
	}
	return nil, fmt.Errorf("nemesis: reading the history: %w", last)
}

// status is the part of /v1/status convergence reads.
type status struct {
	Groups []struct {
		Name   string
		Owner  string
		Epoch  uint64
		Units  []struct{ VIP, Owner string }
		Owners []string
	}
}

// converge waits until every node answers, every group has an owner (every
// unit of the active-active group too), all nodes report the same owners,
// and each VIP sits on exactly its owner. It returns "" or the last views.
func converge(ctx context.Context, c *lab.Cluster, vips, groups []string, limit time.Duration) (string, error) {
	var last string
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		ok, view := converged(c, vips, groups)
		if ok {
			return "", nil
		}
		last = view
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not converged within %v: %s", limit, last)
		}
	}
}

func converged(c *lab.Cluster, vips, groups []string) (bool, string) {
	views := map[string]string{} // node → "web=h1 aa=h1,h2 pg=h1"
	owner := map[string]string{} // VIP → owner per the first node
	var parts []string
	for _, h := range c.L.Hosts() {
		var st status
		if err := c.Status(h, &st); err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", h, err))
			return false, strings.Join(parts, "; ")
		}
		var v []string
		for _, g := range st.Groups {
			if !slices.Contains(groups, g.Name) {
				continue
			}
			if len(g.Units) > 0 {
				for _, u := range g.Units {
					a, _, _ := strings.Cut(u.VIP, "/")
					v = append(v, a+"="+u.Owner)
					owner[a] = u.Owner
				}
				continue
			}
			v = append(v, g.Name+"="+g.Owner)
			switch g.Name {
			case "web":
				owner[WebVIP] = g.Owner
			case "pg":
				owner[PGVIP] = g.Owner
			}
		}
		slices.Sort(v)
		views[h] = strings.Join(v, " ")
		parts = append(parts, h+": "+views[h])
	}
	ok := true
	for _, h := range c.L.Hosts() {
		if views[h] != views[c.L.Hosts()[0]] || strings.Contains(views[h], "= ") || strings.HasSuffix(views[h], "=") {
			ok = false
		}
	}
	for _, v := range vips {
		holders, err := c.HoldersOf(v)
		if err != nil || len(holders) != 1 || holders[0] != owner[v] {
			ok = false
			parts = append(parts, fmt.Sprintf("%s on %v", v, holders))
		}
	}
	return ok, strings.Join(parts, "; ")
}

// executor applies a plan's faults and undoes them.
type executor struct {
	l         *lab.Lab
	c         *lab.Cluster
	cfg       Config
	members   []string
	witness   string
	groups    map[string][]string
	faultFile func(string) string

	net     []*Applied // active network faults (partitions, deaf, loss)
	linkRef map[string]int
	proc    map[string]string // host → "killed" | "stopped"
	clock   map[string][]*Applied
	disk    map[string][]*Applied
	flood   *flood
	floodN  int
}

type step struct {
	at    time.Duration
	start bool
	a     *Applied
}

// run carries out the plan in time order, starts and ends interleaved.
func (x *executor) run(ctx context.Context, plan []Fault, t0 time.Time) []Applied {
	applied := make([]*Applied, len(plan))
	var steps []step
	for i, f := range plan {
		applied[i] = &Applied{Fault: f}
		steps = append(steps, step{f.At, true, applied[i]}, step{f.End(), false, applied[i]})
	}
	slices.SortStableFunc(steps, func(a, b step) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		if a.start != b.start { // ends first
			if a.start {
				return 1
			}
			return -1
		}
		return 0
	})
	for _, s := range steps {
		if d := time.Until(t0.Add(s.at)); d > 0 {
			select {
			case <-ctx.Done():
				return deref(applied)
			case <-time.After(d):
			}
		}
		if s.start {
			s.a.Start = time.Now()
			x.start(s.a)
			if s.a.Skipped != "" {
				fmt.Fprintf(x.cfg.Out, "%s skip  %s: %s\n", rel(t0, s.a.Start), s.a.Fault, s.a.Skipped)
			} else {
				fmt.Fprintf(x.cfg.Out, "%s start %s on %v%s\n", rel(t0, s.a.Start), s.a.Fault, s.a.Hosts, errNote(s.a.Err))
			}
			continue
		}
		if s.a.Skipped != "" {
			continue
		}
		x.end(s.a)
		s.a.End = time.Now()
		fmt.Fprintf(x.cfg.Out, "%s end   #%d %s on %v%s\n", rel(t0, s.a.End), s.a.N, s.a.Kind, s.a.Hosts, errNote(s.a.Err))
	}
	return deref(applied)
}

func deref(as []*Applied) []Applied {
	out := make([]Applied, len(as))
	for i, a := range as {
		out[i] = *a
	}
	return out
}

func errNote(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}

// owner is the host holding the group's (first) VIP, as the kernel says.
func (x *executor) owner(group string) string {
	vip := map[string]string{"web": WebVIP, "aa": AAVIP0, "pg": PGVIP}[group]
	if h, err := x.c.HoldersOf(vip); err == nil && len(h) == 1 {
		return h[0]
	}
	return ""
}

func (x *executor) resolve(t Target) ([]string, string) {
	switch t.Role {
	case "owner":
		if o := x.owner(t.Group); o != "" {
			return []string{o}, ""
		}
		return nil, "no owner of " + t.Group + " to hit"
	case "standby":
		o := x.owner(t.Group)
		var c []string
		for _, m := range x.groups[t.Group] {
			if m != o {
				c = append(c, m)
			}
		}
		return []string{c[t.Pick%len(c)]}, ""
	case "witness":
		return []string{x.witness}, ""
	case "member":
		return []string{x.members[t.Pick%len(x.members)]}, ""
	default:
		return x.l.Hosts(), ""
	}
}

func (x *executor) start(a *Applied) {
	a.Hosts, a.Skipped = x.resolve(a.Target)
	if a.Skipped != "" {
		return
	}
	h := a.Hosts[0]
	var err error
	switch a.Kind {
	case LinkDown:
		if x.linkRef[h]++; x.linkRef[h] == 1 {
			err = x.l.LinkDown(h)
		}
	case Kill, Stop:
		if st := x.proc[h]; st != "" {
			a.Skipped = h + "'s agent is already " + st
			return
		}
		if a.Kind == Kill {
			err = x.c.KillAgent(h)
			x.proc[h] = "killed"
		} else {
			err = x.c.Agent(h).Signal(syscall.SIGSTOP)
			x.proc[h] = "stopped"
		}
	case PartOwner, PartWit, Deaf, Loss:
		x.net = append(x.net, a)
		err = x.applyNet()
	case ClockStep:
		x.clock[h] = append(x.clock[h], a)
		err = x.writeFaults(h)
	case SlowDisk:
		x.disk[h] = append(x.disk[h], a)
		err = x.writeFaults(h)
	case Flood:
		if x.floodN++; x.floodN == 1 {
			x.flood, err = startFlood(x.l)
		}
	}
	if err != nil {
		a.Err = err.Error()
	}
}

func (x *executor) end(a *Applied) {
	h := a.Hosts[0]
	var err error
	switch a.Kind {
	case LinkDown:
		if x.linkRef[h]--; x.linkRef[h] == 0 {
			err = x.l.LinkUp(h)
		}
	case Kill:
		err = x.c.StartAgent(h)
		delete(x.proc, h)
	case Stop:
		err = x.c.Agent(h).Signal(syscall.SIGCONT)
		delete(x.proc, h)
	case PartOwner, PartWit, Deaf, Loss:
		x.net = slices.DeleteFunc(x.net, func(b *Applied) bool { return b == a })
		err = x.applyNet()
	case ClockStep:
		x.clock[h] = slices.DeleteFunc(x.clock[h], func(b *Applied) bool { return b == a })
		err = x.writeFaults(h)
	case SlowDisk:
		x.disk[h] = slices.DeleteFunc(x.disk[h], func(b *Applied) bool { return b == a })
		err = x.writeFaults(h)
	case Flood:
		if x.floodN--; x.floodN == 0 {
			x.flood.stop()
		}
	}
	if err != nil {
		a.Err = errors.Join(errors.New(a.Err), err).Error()
	}
}

func (x *executor) applyNet() error {
	n := lab.Net{Loss: map[string]int{}}
	for _, a := range x.net {
		h := a.Hosts[0]
		var rest []string
		for _, o := range x.l.Hosts() {
			if o != h {
				rest = append(rest, o)
			}
		}
		switch a.Kind {
		case PartOwner, PartWit:
			n.Drops = append(n.Drops, lab.Drop{From: []string{h}, To: rest}, lab.Drop{From: rest, To: []string{h}})
		case Deaf:
			n.Drops = append(n.Drops, lab.Drop{From: rest, To: []string{h}})
		case Loss:
			for _, o := range a.Hosts {
				n.Loss[o] = max(n.Loss[o], a.Percent)
			}
		}
	}
	return x.l.SetNet(n)
}

// writeFaults writes a host's debug fault file: the newest active clock
// step and slow disk win.
func (x *executor) writeFaults(h string) error {
	var b strings.Builder
	if cs := x.clock[h]; len(cs) > 0 {
		fmt.Fprintf(&b, "wall_clock_offset=%v\n", cs[len(cs)-1].Offset)
	}
	if ds := x.disk[h]; len(ds) > 0 {
		fmt.Fprintf(&b, "fsync_delay=%v\n", ds[len(ds)-1].FsyncDelay)
	}
	tmp := x.faultFile(h) + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, x.faultFile(h))
}

// healAll undoes whatever is still in place (after a cancelled run).
func (x *executor) healAll() {
	_ = x.l.SetNet(lab.Net{})
	_ = x.l.Heal()
	for h, st := range x.proc {
		if st == "killed" {
			_ = x.c.StartAgent(h)
		} else {
			_ = x.c.Agent(h).Signal(syscall.SIGCONT)
		}
	}
	x.proc = map[string]string{}
	for _, h := range x.l.Hosts() {
		_ = os.Remove(x.faultFile(h))
	}
	if x.floodN > 0 {
		x.flood.stop()
		x.floodN = 0
	}
}
