package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
)

// syncGroup is a data-aware group whose databases the harness models
// (db.go): members n1, n2 (and n3 in the five-voter variant), sync %s.
const syncGroup = `
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123"}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
%s
groups:
  - name: db
    members: [{node: n1, priority: 150}, {node: n2, priority: 100}%s]
    driver: {type: exec, sync: %s, commands: {state: [/bin/true]}}
`

// TestSyncStandbyRandomFaults drives the sync-standby protocol (sync: on and
// strict, alternating by seed) through seeded random faults while a client
// writes to whoever acts for the group. The harness fails the run at the
// first step where a recorded synchronous standby lacks an acknowledged
// write, or where a member outside the recorded set (or missing an
// acknowledged write) is promoted. A failure prints its seed; rerun it with
//
//	go test ./internal/sim -run TestSyncStandbyRandomFaults -sim.seed=N -sim.verbose
func TestSyncStandbyRandomFaults(t *testing.T) {
	var acked, failovers, recorded int
	seeds := forSeeds(t, "TestSyncStandbyRandomFaults", func(seed int64, verbose bool) error {
		st, err := runSyncSchedule(t, seed, verbose)
		acked += st.acked
		failovers += st.failovers
		recorded += st.recorded
		return err
	})
	// The invariants are only as strong as what the schedules exercised.
	if *seedFlag < 0 && (acked == 0 || failovers < seeds/2 || recorded < seeds) {
		t.Fatalf("schedules too tame to prove anything: %d acknowledged writes, %d failovers, %d synchronous standbys recorded over %d seeds",
			acked, failovers, recorded, seeds)
	}
	t.Logf("%d seeds: %d acknowledged writes, %d promotions after the first owner, %d synchronous standbys recorded, none lost",
		seeds, acked, failovers, recorded)
}

type syncStats struct{ acked, failovers, recorded int }

func runSyncSchedule(t *testing.T, seed int64, verbose bool) (syncStats, error) {
	mode := []string{"on", "strict"}[seed%2]
	extraNode, extraMember := "", ""
	if seed%3 == 0 {
		extraNode = "  - {name: n3, address: 10.0.0.4}\n  - {name: w2, address: 10.0.0.5, witness: true}"
		extraMember = ", {node: n3, priority: 120}"
	}
	spec := mustConfig(t, fmt.Sprintf(syncGroup, extraNode, extraMember, mode))
	c := New(spec, seed, nil)
	if verbose {
		c = New(spec, seed, newTestLogger(t))
	}
	if err := c.Start(); err != nil {
		return syncStats{}, err
	}
	r := c.Rand
	names := c.Names()
	pick := func() string { return names[r.Intn(len(names))] }
	// Settle first, so the protocol has a standby to record.
	if err := c.Advance(3 * time.Second); err != nil {
		return syncStats{}, err
	}
	for c.Now < 15*time.Second {
		if err := c.Advance(time.Duration(100+r.Intn(900)) * time.Millisecond); err != nil {
			return syncStats{}, err
		}
		var what string
		switch k := r.Intn(11); k {
		case 0, 1:
			owner := c.Committed().Group("db").Owner
			if owner == "" || r.Intn(3) == 0 {
				owner = pick()
			}
			what = "kill " + owner
			c.Kill(owner)
		case 2:
			n := pick()
			what = "restart " + n
			if err := c.Restart(n); err != nil {
				return syncStats{}, err
			}
		case 3:
			n := pick()
			what = "pause " + n
			c.Pause(n)
		case 4:
			what = "resume all"
			for _, n := range names {
				c.Resume(n)
			}
		case 5:
			owner := c.Committed().Group("db").Owner
			if owner == "" {
				owner = pick()
			}
			what = "isolate " + owner
			c.Isolate(owner)
		case 6:
			a, b := pick(), pick()
			what = fmt.Sprintf("one-way cut %s→%s", a, b)
			c.blocked[[2]string{a, b}] = true
		case 7:
			p := []float64{0.1, 0.3, 0.6}[r.Intn(3)]
			what = fmt.Sprintf("drop %.0f%%", p*100)
			c.Drop(p)
		case 8:
			what = fmt.Sprintf("switchover: %v", c.Switchover("db", ""))
		default:
			what = "heal"
			c.Heal()
		}
		if verbose {
			t.Logf("t=%v fault: %s (owner %q, sync %v, acked %d)", c.Now, what, c.Committed().Group("db").Owner,
				c.Committed().Group("db").Sync, c.Acknowledged())
		}
	}
	c.Heal()
	for _, n := range names {
		c.Resume(n)
		if err := c.Restart(n); err != nil {
			return syncStats{}, err
		}
	}
	for _, n := range names {
		if c.Node(n).core.Status(c.Local(c.Node(n))).Leaving {
			c.Kill(n)
			if err := c.Restart(n); err != nil {
				return syncStats{}, err
			}
		}
	}
	bound := 4*c.Timing.FailureTimeout + 4*c.Timing.RaftElectionTimeout + c.Timing.StartupGrace + 5*time.Second
	if _, err := c.WaitOwner(bound); err != nil {
		return syncStats{}, err
	}
	if err := c.Advance(3 * time.Second); err != nil {
		return syncStats{}, err
	}
	var st syncStats
	st.acked = c.Acknowledged()
	for _, e := range c.Committed().Events {
		switch {
		case e.Reason == "sync" && len(e.Sync) > 0:
			st.recorded++
		case e.Ownership() && e.From != "":
			st.failovers++
		}
	}
	return st, nil
}

// TestWorstHeartbeatBoundsRealOnes: the size check-config refuses configs
// by (core.WorstHeartbeat) is above every heartbeat the cores really send,
// through failovers, switchovers and data groups.
func TestWorstHeartbeatBoundsRealOnes(t *testing.T) {
	spec := mustConfig(t, fiveNodes)
	c := New(spec, 7, nil)
	worst := map[string]int{}
	for _, n := range spec.Nodes {
		size, _, err := cluster.PacketSize(n.Name, core.WorstHeartbeat(spec, n.Name))
		if err != nil {
			t.Fatal(err)
		}
		worst[n.Name] = size
	}
	var biggest int
	c.OnSend = func(from, _ string, m *cluster.Message) {
		size, _, err := cluster.PacketSize(from, m)
		if err != nil {
			t.Fatal(err)
		}
		biggest = max(biggest, size)
		if size > worst[from] {
			t.Fatalf("%s sent a %d-byte heartbeat, above its computed worst case %d", from, size, worst[from])
		}
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	steps := []func(){func() { c.Kill("n1") }, func() { _ = c.Switchover("db", "") }, func() { _ = c.Restart("n1") },
		func() { c.Leave("n3") }, func() { c.Isolate("n2") }, func() { c.Heal() }}
	for _, step := range steps {
		if err := c.Advance(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		step()
	}
	t.Logf("largest heartbeat %d bytes; computed worst cases %v", biggest, worst)
}
