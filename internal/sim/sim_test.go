package sim

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
)

var (
	seedFlag  = flag.Int64("sim.seed", -1, "rerun TestRandomFaults with only this seed")
	seedsFlag = flag.Int("sim.seeds", 200, "number of seeded fault schedules in TestRandomFaults")
	verbose   = flag.Bool("sim.verbose", false, "log every agent event of a rerun seed")
)

const threeNodes = `
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123456789abcdef", profile: %s}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
groups:
  - name: web
    members: [{node: n1, priority: 150}, {node: n2, priority: 100}]
`

const fiveNodes = `
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: n3, address: 10.0.0.3}
  - {name: n4, address: 10.0.0.4}
  - {name: w1, address: 10.0.0.5, witness: true}
groups:
  - name: web
    members: [{node: n1, priority: 150}, {node: n2, priority: 100}, {node: n3}]
  - name: db
    members: [{node: n3, priority: 200}, {node: n4}, {node: n2}]
  - name: edge
    mode: active-active
    failback: true
    members: [{node: n1}, {node: n2}, {node: n4}]
    vips:
      - {address: 10.0.1.1/24, interface: eth0}
      - {address: 10.0.1.2/24, interface: eth0}
      - {address: 10.0.1.3/24, interface: eth0}
      - {address: 10.0.1.4/24, interface: eth0}
`

func mustConfig(t testing.TB, text string) *core.Spec {
	t.Helper()
	cfg, err := config.Parse([]byte(text), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg.CoreSpec()
}

func newCluster(t testing.TB, profile string, seed int64) *Cluster {
	t.Helper()
	c := New(mustConfig(t, fmt.Sprintf(threeNodes, profile)), seed, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitOwner(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

func epoch(c *Cluster, g string) uint64 { return c.Committed().Group(g).Epoch }

func TestInitialOwnerIsHighestPriority(t *testing.T) {
	c := newCluster(t, "default", 1)
	if o := c.Owner("web"); o != "n1" {
		t.Fatalf("owner = %q, want n1 (priority 150)", o)
	}
	if e := epoch(c, "web"); e != 1 {
		t.Fatalf("epoch = %d, want 1", e)
	}
}

func TestFailover(t *testing.T) {
	hold := func(c *Cluster) time.Duration { return c.Timing.FailureTimeout }
	cases := []struct {
		name  string
		fault func(c *Cluster)
	}{
		{"kill owner", func(c *Cluster) { c.Kill("n1") }},
		{"pause owner", func(c *Cluster) { c.Pause("n1") }},
		{"isolate owner", func(c *Cluster) { c.Isolate("n1") }},
		{"owner hears nobody but is heard", func(c *Cluster) { c.Deafen("n1") }},
		{"kill owner that leads the quorum", func(c *Cluster) { c.leader = "n1"; c.Kill("n1") }},
	}
	for _, profile := range []string{"default", "fast"} {
		for _, tc := range cases {
			t.Run(profile+"/"+tc.name, func(t *testing.T) {
				c := newCluster(t, profile, 7)
				if err := c.Advance(time.Second); err != nil {
					t.Fatal(err)
				}
				tc.fault(c)
				start := c.Now
				for c.Owner("web") != "n2" {
					if err := c.Advance(Step); err != nil {
						t.Fatal(err)
					}
					if c.Now-start > 10*hold(c) {
						t.Fatalf("n2 did not take over within %v; status: %+v", 10*hold(c), c.Status("n2"))
					}
				}
				took := c.Now - start
				// The old lease ran until the last acked heartbeat (at most one
				// interval before the fault) plus the lease: taking over earlier
				// would be unsafe, which the harness would also have caught.
				if earliest := c.Timing.FailureTimeout - c.Timing.HeartbeatInterval; took < earliest {
					t.Fatalf("takeover after %v: before the lease could have ended (%v)", took, earliest)
				}
				if e := epoch(c, "web"); e != 2 {
					t.Fatalf("epoch = %d, want 2", e)
				}
				t.Logf("takeover after %v (lease %v)", took, c.Timing.FailureTimeout)
				// Recovery: the old owner rejoins as standby and does not reclaim (failback off).
				c.Heal()
				c.Resume("n1")
				if err := c.Restart("n1"); err != nil {
					t.Fatal(err)
				}
				if err := c.Advance(3 * time.Second); err != nil {
					t.Fatal(err)
				}
				if o := c.Owner("web"); o != "n2" {
					t.Fatalf("after n1 returned, owner = %q, want n2 (no failback)", o)
				}
				if r := c.Node("n1").core.Role("web"); r != "standby" {
					t.Fatalf("n1 role = %q, want standby", r)
				}
			})
		}
	}
}

func TestLeaveHandsOffWithoutLeaseWait(t *testing.T) {
	c := newCluster(t, "default", 3)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.Leave("n1")
	start := c.Now
	for c.Owner("web") != "n2" {
		if err := c.Advance(Step); err != nil {
			t.Fatal(err)
		}
		if c.Now-start > c.Timing.FailureTimeout {
			t.Fatalf("handoff took longer than a lease (%v): it waited for expiry", c.Timing.FailureTimeout)
		}
	}
	t.Logf("handoff after %v", c.Now-start)
	ev := c.Committed().Events
	if last := ev[len(ev)-1]; last.Reason != "shutdown" || last.From != "n1" || last.To != "n2" {
		t.Fatalf("last event = %+v, want shutdown n1→n2", last)
	}
}

func TestNoFailoverWhen(t *testing.T) {
	cases := []struct {
		name  string
		fault func(c *Cluster)
	}{
		{"witness cut off", func(c *Cluster) { c.Isolate("w1") }},
		{"standby cut off", func(c *Cluster) { c.Isolate("n2") }},
		{"standby killed", func(c *Cluster) { c.Kill("n2") }},
		{"10% loss everywhere", func(c *Cluster) { c.Drop(0.10) }},
		{"20% loss and jitter", func(c *Cluster) { c.Drop(0.20); c.Delay(0, 20*time.Millisecond) }},
		{"witness paused", func(c *Cluster) { c.Pause("w1") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "default", 11)
			tc.fault(c)
			if err := c.Advance(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			if e := epoch(c, "web"); e != 1 {
				t.Fatalf("epoch moved to %d: false failover; events %+v", e, c.Committed().Events)
			}
			if o := c.Owner("web"); o != "n1" {
				t.Fatalf("owner = %q, want n1 still acting", o)
			}
		})
	}
}

func TestPausedOwnerNeverActsUnderOldEpoch(t *testing.T) {
	c := newCluster(t, "default", 5)
	c.Pause("n1")
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("web"); o != "n2" {
		t.Fatalf("owner = %q, want n2", o)
	}
	c.Resume("n1")
	if err := c.Advance(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r := c.Node("n1").core.Role("web"); r != "standby" {
		t.Fatalf("resumed n1 role = %q, want standby", r)
	}
	for _, a := range c.Activations {
		if a.Node == "n1" && a.Role == "active" && a.At > 0 && a.Epoch == 1 && a.At > time.Second {
			t.Fatalf("n1 acted under its old epoch after resuming: %+v", a)
		}
	}
}

// TestRandomFaults runs seeded random fault schedules and checks the
// invariants at every step (the harness fails on a violation) and liveness
// once the faults stop. A failure prints its seed; rerun just that one with
//
//	go test ./internal/sim -run TestRandomFaults -sim.seed=N -sim.verbose
func TestRandomFaults(t *testing.T) {
	forSeeds(t, "TestRandomFaults", func(seed int64, verbose bool) error { return runSchedule(t, seed, verbose) })
}

// forSeeds runs schedule for -sim.seeds seeds from 1 (30 with -short), or
// only -sim.seed, and fails at the first error with the command that replays
// that seed. It returns how many seeds ran.
func forSeeds(t *testing.T, test string, schedule func(seed int64, verbose bool) error) int {
	t.Helper()
	seeds := *seedsFlag
	first := int64(1)
	if *seedFlag >= 0 {
		first, seeds = *seedFlag, 1
	}
	if testing.Short() {
		seeds = min(seeds, 30)
	}
	for i := 0; i < seeds; i++ {
		seed := first + int64(i)
		if err := schedule(seed, *seedFlag >= 0 && *verbose); err != nil {
			t.Fatalf("seed %d: %v\nrerun: go test ./internal/sim -run %s -sim.seed=%d -sim.verbose", seed, err, test, seed)
		}
	}
	return seeds
}

func runSchedule(t *testing.T, seed int64, verbose bool) error {
	text := fmt.Sprintf(threeNodes, "default")
	if seed%3 == 0 {
		text = fiveNodes
	}
	var c *Cluster
	if verbose {
		c = New(mustConfig(t, text), seed, newTestLogger(t))
	} else {
		c = New(mustConfig(t, text), seed, nil)
	}
	if err := c.Start(); err != nil {
		return err
	}
	r := c.Rand
	names := c.Names()
	pick := func() string { return names[r.Intn(len(names))] }
	// Fault phase: 8 s with a fault or repair every 50–800 ms.
	for c.Now < 8*time.Second {
		if err := c.Advance(time.Duration(50+r.Intn(750)) * time.Millisecond); err != nil {
			return err
		}
		var what string
		switch k := r.Intn(14); k {
		case 0:
			what = "kill"
			c.Kill(pick())
		case 1:
			n := pick()
			what = "restart " + n
			if err := c.Restart(n); err != nil {
				return err
			}
		case 2:
			what = "pause"
			c.Pause(pick())
		case 3:
			what = "resume"
			c.Resume(pick())
		case 4:
			what = "isolate"
			c.Isolate(pick())
		case 5:
			a := r.Perm(len(names))
			cut := 1 + r.Intn(len(names)-1)
			var x, y []string
			for i, j := range a {
				if i < cut {
					x = append(x, names[j])
				} else {
					y = append(y, names[j])
				}
			}
			what = fmt.Sprintf("partition %v | %v", x, y)
			c.Partition(x, y)
		case 6:
			p := []float64{0.1, 0.3, 0.6, 0.9}[r.Intn(4)]
			what = fmt.Sprintf("drop %.0f%%", p*100)
			c.Drop(p)
		case 7:
			what = "delay"
			c.Delay(0, time.Duration(1+r.Intn(100))*time.Millisecond)
		case 8:
			what = "one-way cut"
			a, b := pick(), pick()
			c.blocked[[2]string{a, b}] = true
		case 9:
			what = "leave"
			c.Leave(pick())
		case 10:
			n, g := pick(), c.Spec.Groups[r.Intn(len(c.Spec.Groups))].Name
			ok := r.Intn(2) == 0
			what = fmt.Sprintf("health %s/%s=%v", n, g, ok)
			c.SetHealthy(n, g, ok)
		case 11:
			g := c.Spec.Groups[r.Intn(len(c.Spec.Groups))].Name
			to := ""
			if r.Intn(2) == 0 {
				to = pick()
			}
			what = fmt.Sprintf("switchover %s to %q: %v", g, to, c.Switchover(g, to))
		case 12:
			n, d := pick(), time.Duration(100+r.Intn(1400))*time.Millisecond
			what = fmt.Sprintf("slow disk %s +%v", n, d)
			c.SlowDisk(n, d)
		default:
			what = "heal"
			c.Heal()
		}
		if verbose {
			t.Logf("t=%v fault: %s", c.Now, what)
		}
	}
	// Repair everything, then the cluster must settle on owners.
	c.Heal()
	for _, n := range names {
		c.SlowDisk(n, 0)
		c.Resume(n)
		if err := c.Restart(n); err != nil {
			return err
		}
		c.SetHealthy(n, "web", true)
		c.SetHealthy(n, "db", true)
	}
	// Nodes that left stay out (they were shut down); restart them as fresh processes.
	for _, n := range names {
		if c.Node(n).core.Status(c.Local(c.Node(n))).Leaving {
			c.Kill(n)
			if err := c.Restart(n); err != nil {
				return err
			}
		}
	}
	bound := 4*c.Timing.FailureTimeout + 4*c.Timing.RaftElectionTimeout + c.Timing.StartupGrace
	if _, err := c.WaitOwner(bound); err != nil {
		return err
	}
	// And stays settled and safe.
	return c.Advance(2 * time.Second)
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(m.Run())
}

// A settled cluster ticks only for what is due (core.NextTick): the owner at
// its heartbeats, the standby and the witness at their quiet heartbeats, far
// below the fixed TickPeriod's 40 a second; and as soon as the owner dies,
// the failover runs as fast as on a cluster that ticks all the time.
func TestSettledNodesTickOnlyWhenDue(t *testing.T) {
	c := newCluster(t, "default", 3)
	if err := c.Advance(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, n := range []string{"n1", "n2", "w1"} {
		before[n] = c.Ticks(n)
	}
	const window = 10 * time.Second
	if err := c.Advance(window); err != nil {
		t.Fatal(err)
	}
	perSecond := func(n string) float64 { return float64(c.Ticks(n)-before[n]) / window.Seconds() }
	fixed := float64(time.Second / core.TickPeriod(c.Timing))
	// The owner heartbeats every HeartbeatInterval (20/s), the others every
	// QuietHeartbeatInterval (10/s); a little more for the odd deadline.
	for n, most := range map[string]float64{"n1": 24, "n2": 13, "w1": 13} {
		if got := perSecond(n); got > most {
			t.Errorf("%s ticked %.1f times a second settled, want at most %.0f (the fixed tick: %.0f)", n, got, most, fixed)
		} else {
			t.Logf("%s: %.1f ticks/s settled (fixed tick: %.0f)", n, got, fixed)
		}
	}
	c.Kill("n1")
	start := c.Now
	for c.Owner("web") != "n2" {
		if err := c.Advance(Step); err != nil {
			t.Fatal(err)
		}
		if c.Now-start > 2*c.Timing.FailureTimeout {
			t.Fatalf("n2 did not take over within %v", 2*c.Timing.FailureTimeout)
		}
	}
	t.Logf("takeover after %v", c.Now-start)
}

// A voter whose disk takes seconds to make a release durable keeps serving
// the group it owns and acking the others while that release is written:
// the save runs off its loop (core.Deps.SaveReleases). Here n2 owns api and
// must release web's dead owner n1 with a 3 s fsync: api stays active on n2
// all along, and web moves to n2 once the release is durable.
func TestSlowDiskReleaseKeepsTheVoterServing(t *testing.T) {
	// threeNodes plus a group the other way round.
	spec := mustConfig(t, fmt.Sprintf(threeNodes, "default")+`  - name: api
    members: [{node: n2, priority: 150}, {node: n1, priority: 100}]
`)
	c := New(spec, 5, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if c.Owner("web") != "n1" || c.Owner("api") != "n2" {
		t.Fatalf("owners web=%q api=%q, want n1 and n2", c.Owner("web"), c.Owner("api"))
	}
	const fsync = 3 * time.Second
	c.SlowDisk("n2", fsync)
	c.Kill("n1")
	start := c.Now
	for c.Owner("web") != "n2" {
		if err := c.Advance(Step); err != nil {
			t.Fatal(err)
		}
		if r := c.Node("n2").core.Role("api"); r != core.RoleActive {
			t.Fatalf("%v after the kill, n2 is %s for api: its slow release stalled it", c.Now-start, r)
		}
		if c.Now-start > fsync+5*c.Timing.FailureTimeout {
			t.Fatalf("web not on n2 %v after the kill", c.Now-start)
		}
	}
	if took := c.Now - start; took < fsync {
		t.Fatalf("web moved %v after the kill, before n2's release could be durable (%v)", took, fsync)
	} else {
		t.Logf("web on n2 after %v (fsync %v); api active on n2 throughout", took, fsync)
	}
}
