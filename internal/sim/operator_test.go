package sim

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
)

func waitFor(t *testing.T, c *Cluster, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := c.Now
	for !cond() {
		if err := c.Advance(Step); err != nil {
			t.Fatal(err)
		}
		if c.Now-start > limit {
			t.Fatalf("%s: not within %v; events %+v", what, limit, c.Committed().Events)
		}
	}
	return c.Now - start
}

func lastEvent(c *Cluster) string {
	ev := c.Committed().Events
	e := ev[len(ev)-1]
	return fmt.Sprintf("%s→%s %s", e.From, e.To, e.Reason)
}

func TestSwitchover(t *testing.T) {
	c := newCluster(t, "default", 21)
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Switchover("web", "n2"); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, c, c.Timing.FailureTimeout, "switchover without lease wait", func() bool { return c.Owner("web") == "n2" })
	t.Logf("switchover took %v", took)
	if e := lastEvent(c); e != "n1→n2 switchover" {
		t.Fatalf("last event %s", e)
	}
	// And back, with the target picked automatically.
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Switchover("web", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, c.Timing.FailureTimeout, "switchover back", func() bool { return c.Owner("web") == "n1" })
}

func TestSwitchoverRefusals(t *testing.T) {
	c := newCluster(t, "default", 22)
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetHealthy("n2", "web", false)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group, to string
		kind      error
		msg       string
	}{
		{"nope", "n2", core.ErrUnknownGroup, `unknown group "nope"`},
		{"web", "n9", core.ErrUnknownNode, `unknown node "n9"`},
		{"web", "w1", core.ErrInvalid, `node "w1" is not a member of group "web"`},
		{"web", "n1", core.ErrConflict, `node "n1" already owns group "web"`},
		{"web", "n2", core.ErrConflict, `node "n2" is unhealthy for group "web"`},
		{"web", "", core.ErrConflict, `no healthy standby for group "web"`},
	} {
		err := c.Switchover(tc.group, tc.to)
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Switchover(%q, %q) = %v, want %v %q", tc.group, tc.to, err, tc.kind, tc.msg)
		}
	}
	if o := c.Owner("web"); o != "n1" {
		t.Fatalf("owner %q after refused switchovers", o)
	}
}

func TestFailingChecksMoveTheGroupOnlyToAHealthyMember(t *testing.T) {
	c := newCluster(t, "default", 23)
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Both unhealthy: the owner keeps the group (never fail over to something worse).
	c.SetHealthy("n2", "web", false)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetHealthy("n1", "web", false)
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("web"); o != "n1" {
		t.Fatalf("owner %q, want n1 to keep the group while nobody is healthy", o)
	}
	// The standby recovers: the unhealthy owner steps down to it.
	c.SetHealthy("n2", "web", true)
	waitFor(t, c, 2*time.Second, "check failover", func() bool { return c.Owner("web") == "n2" })
	if e := lastEvent(c); e != "n1→n2 check" {
		t.Fatalf("last event %s", e)
	}
}

func TestFailback(t *testing.T) {
	text := strings.Replace(fmt.Sprintf(threeNodes, "default"), "members: [{node: n1, priority: 150}, {node: n2, priority: 100}]",
		"members: [{node: n1, priority: 150}, {node: n2, priority: 100}]\n    failback: true\n    failback_delay: 2s", 1)
	c := New(mustConfig(t, text), 24, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 5*time.Second, "initial owner", func() bool { return c.Owner("web") == "n1" })
	c.Kill("n1")
	waitFor(t, c, 2*time.Second, "failover", func() bool { return c.Owner("web") == "n2" })
	if err := c.Restart("n1"); err != nil {
		t.Fatal(err)
	}
	back := waitFor(t, c, 10*time.Second, "failback", func() bool { return c.Owner("web") == "n1" })
	if back < 2*time.Second {
		t.Fatalf("failback after %v, before failback_delay (2s)", back)
	}
	if e := lastEvent(c); e != "n2→n1 failback" {
		t.Fatalf("last event %s", e)
	}
}

func TestNoFailbackByDefault(t *testing.T) {
	c := newCluster(t, "default", 25)
	c.Kill("n1")
	waitFor(t, c, 2*time.Second, "failover", func() bool { return c.Owner("web") == "n2" })
	if err := c.Restart("n1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("web"); o != "n2" {
		t.Fatalf("owner %q: failback happened with failback: false", o)
	}
}

func TestMaintenancePausesFailoverButNotSwitchover(t *testing.T) {
	for _, scope := range []string{"", "web"} {
		t.Run("scope="+scope, func(t *testing.T) {
			c := newCluster(t, "default", 26)
			if err := c.SetMaintenance(scope, true); err != nil {
				t.Fatal(err)
			}
			if err := c.Advance(time.Second); err != nil {
				t.Fatal(err)
			}
			if err := c.Switchover("web", "n2"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, time.Second, "switchover in maintenance", func() bool { return c.Owner("web") == "n2" })
			c.Kill("n2")
			if err := c.Advance(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			if o := c.Committed().Group("web").Owner; o != "n2" {
				t.Fatalf("failover happened in maintenance: owner %q", o)
			}
			// The operator may still move the group off the dead owner: a
			// quorum released its lease, so this is a failover on request.
			if err := c.Switchover("web", "n1"); err != nil {
				t.Fatalf("switchover off a dead owner in maintenance: %v", err)
			}
			waitFor(t, c, time.Second, "switchover off the dead owner", func() bool { return c.Owner("web") == "n1" })
			if e := lastEvent(c); e != "n2→n1 switchover" {
				t.Fatalf("last event %s, want n2→n1 switchover", e)
			}
			if err := c.Restart("n2"); err != nil {
				t.Fatal(err)
			}
			if err := c.SetMaintenance(scope, false); err != nil {
				t.Fatal(err)
			}
			if err := c.Advance(3 * time.Second); err != nil {
				t.Fatal(err)
			}
			if o := c.Committed().Group("web").Owner; o != "n1" {
				t.Fatalf("after maintenance off the owner is %q, want n1", o)
			}
		})
	}
}

func TestFailingActiveHookTriesTheNextCandidate(t *testing.T) {
	c := newCluster(t, "default", 27)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.HookFailed("n1", "web", 1)
	waitFor(t, c, time.Second, "next candidate", func() bool { return c.Owner("web") == "n2" })
	if e := lastEvent(c); e != "n1→n2 hook" {
		t.Fatalf("last event %s", e)
	}
	// n1 stays out for the cooldown even though it has the higher priority.
	c.Kill("n2")
	if err := c.Advance(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("web"); o == "n1" {
		t.Fatal("n1 got the group back inside its hook cooldown")
	}
	if err := c.Advance(core.HookCooldown); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("web"); o != "n1" {
		t.Fatalf("owner %q after the cooldown, want n1", o)
	}
}

func TestTakeoverTimeIsRecorded(t *testing.T) {
	c := newCluster(t, "default", 28)
	c.Kill("n1")
	waitFor(t, c, 2*time.Second, "failover", func() bool { return c.Owner("web") == "n2" })
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	ev := c.Committed().Events
	e := ev[len(ev)-1]
	if e.Reason != "failure" || e.DetectMs < 300 || e.TakeoverMs < 0 {
		t.Fatalf("event %+v: want failure with detect ≈ lease and a takeover time", e)
	}
	t.Logf("detect %d ms, takeover %d ms", e.DetectMs, e.TakeoverMs)
}

// TestStandbyHookOnceAtStart: a member whose checks pass only after start
// reports standby once (at start), not again when they first pass; after a
// real fault it reports fault, then standby when they pass again.
func TestStandbyHookOnceAtStart(t *testing.T) {
	c := New(mustConfig(t, fmt.Sprintf(threeNodes, "default")), 41, nil)
	c.SetHealthy("n2", "web", false) // its first checks have not passed yet
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetHealthy("n2", "web", true)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	roles := func() []string {
		var out []string
		for _, a := range c.Activations {
			if a.Node == "n2" && a.Group == "web" {
				out = append(out, a.Role)
			}
		}
		return out
	}
	if got := roles(); !slices.Equal(got, []string{"standby"}) {
		t.Fatalf("n2's transitions at start: %v, want one standby", got)
	}
	c.SetHealthy("n2", "web", false)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetHealthy("n2", "web", true)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	if got := roles(); !slices.Equal(got, []string{"standby", "fault", "standby"}) {
		t.Fatalf("n2's transitions after a fault: %v, want standby, fault, standby", got)
	}
}

// TestTransitionReasonsAreHistoryReasons: hooks get the history's words
// (BATON_REASON): startup at start, initial for the first owner,
// switchover on both sides of a switchover, failure for a takeover after a
// crash.
func TestTransitionReasonsAreHistoryReasons(t *testing.T) {
	c := newCluster(t, "default", 42)
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Switchover("web", "n2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.Kill("n2")
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range c.Activations {
		if a.Group == "web" {
			got = append(got, a.Node+" "+a.Role+" "+a.Reason)
		}
	}
	want := []string{"n1 standby startup", "n1 active initial", "n2 standby startup", "n1 standby switchover",
		"n2 active switchover", "n1 active failure"}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions\n got %q\nwant %q", got, want)
	}
}

// An owner that hears nobody loses its lease and, a lease later, gives the
// group up itself: the history's detect time is how long it had not been
// acting by then (Claim.LapsedMs), so detect + decide + takeover add up to
// the time the group went without an acting owner — not 0 + decide + takeover.
func TestDeafOwnersHistoryAddsUp(t *testing.T) {
	c := newCluster(t, "default", 29)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	c.Deafen("n1")
	waitFor(t, c, 2*time.Second, "n1 stops acting", func() bool { return c.Node("n1").core.Role("web") != core.RoleActive })
	lapsed := c.Now
	waitFor(t, c, 5*time.Second, "n2 acts", func() bool { return c.Node("n2").core.Role("web") == core.RoleActive })
	outage := c.Now - lapsed
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	ev := c.Committed().Events
	e := ev[len(ev)-1]
	sum := time.Duration(e.DetectMs+e.DecideMs+e.TakeoverMs) * time.Millisecond
	if e.Reason != "failure" || e.DetectMs == 0 || sum < outage-100*time.Millisecond || sum > outage+100*time.Millisecond {
		t.Fatalf("event %+v: detect+decide+takeover = %v, want a failure adding up to the %v without an acting owner", e, sum, outage)
	}
	t.Logf("without an acting owner %v; history detect %d + decide %d + takeover %d ms", outage, e.DetectMs, e.DecideMs, e.TakeoverMs)
}
