package sim

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/quorum"
)

const activeActive = `
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: n3, address: 10.0.0.3}
  - {name: w1, address: 10.0.0.4, witness: true}
groups:
  - name: edge
    mode: active-active
    failback: %t%s
    members: [{node: n1, priority: 150}, {node: n2}, {node: n3}]
    vips:
%s`

func newActiveActive(t *testing.T, vips int, failback bool, seed int64) *Cluster {
	t.Helper()
	var b strings.Builder
	for i := range vips {
		fmt.Fprintf(&b, "      - {address: 10.0.1.%d/24, interface: eth0}\n", i+1)
	}
	delay := ""
	if failback {
		delay = "\n    failback_delay: 2s"
	}
	c := New(mustConfig(t, fmt.Sprintf(activeActive, failback, delay, b.String())), seed, nil)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitOwner(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// spread returns how many units of edge each node acts for.
func spread(c *Cluster) map[string]int {
	out := map[string]int{}
	for _, u := range c.Spec.UnitsOf("edge") {
		if o := c.Owner(u.Name); o != "" {
			out[o]++
		}
	}
	return out
}

func moves(c *Cluster, after int) []quorum.Event {
	ev := c.Committed().Events
	return ev[min(after, len(ev)):]
}

func TestActiveActiveSpreadsEvenly(t *testing.T) {
	for _, vips := range []int{3, 4, 6} {
		c := newActiveActive(t, vips, false, int64(vips))
		s := spread(c)
		lo, hi := vips/3, (vips+2)/3
		for _, n := range []string{"n1", "n2", "n3"} {
			if s[n] < lo || s[n] > hi {
				t.Fatalf("%d VIPs: spread %v, want every member between %d and %d", vips, s, lo, hi)
			}
		}
		// Started together, nothing needed to move: one assignment per VIP.
		if n := len(c.Committed().Events); n != vips {
			t.Fatalf("%d VIPs: %d ownership changes at start, want %d: %+v", vips, n, vips, c.Committed().Events)
		}
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestActiveActiveFailedMembersVIPsMoveToSurvivors(t *testing.T) {
	c := newActiveActive(t, 6, false, 7)
	before := spread(c)
	c.Kill("n2")
	waitFor(t, c, 3*time.Second, "n2's VIPs served by survivors", func() bool {
		s := spread(c)
		return s["n1"]+s["n3"] == 6
	})
	s := spread(c)
	if s["n1"] != 3 || s["n3"] != 3 {
		t.Fatalf("after n2 died: spread %v (before %v), want 3 and 3", s, before)
	}
	// Only n2's units changed hands.
	for _, e := range moves(c, 6) {
		if e.From != "n2" || e.Reason != quorum.ReasonFailure {
			t.Fatalf("unexpected move %+v", e)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestActiveActiveRebalancesWithFewestMoves(t *testing.T) {
	c := newActiveActive(t, 6, true, 8)
	c.Kill("n3")
	waitFor(t, c, 3*time.Second, "failover", func() bool { s := spread(c); return s["n1"]+s["n2"] == 6 })
	mark := len(c.Committed().Events)
	if err := c.Restart("n3"); err != nil {
		t.Fatal(err)
	}
	// failback_delay is 2 s: n3 gets its share back after that, two moves.
	waitFor(t, c, 8*time.Second, "rebalanced", func() bool { return spread(c)["n3"] == 2 })
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	s := spread(c)
	if s["n1"] != 2 || s["n2"] != 2 || s["n3"] != 2 {
		t.Fatalf("spread %v, want 2 each", s)
	}
	mv := moves(c, mark)
	if len(mv) != 2 {
		t.Fatalf("%d moves to rebalance, want 2: %+v", len(mv), mv)
	}
	for _, e := range mv {
		if e.To != "n3" || e.Reason != quorum.ReasonFailback {
			t.Fatalf("unexpected move %+v", e)
		}
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestActiveActiveWithoutFailbackStaysPut(t *testing.T) {
	c := newActiveActive(t, 4, false, 9)
	c.Kill("n3")
	waitFor(t, c, 3*time.Second, "failover", func() bool { s := spread(c); return s["n1"]+s["n2"] == 4 })
	mark := len(c.Committed().Events)
	if err := c.Restart("n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Advance(6 * time.Second); err != nil {
		t.Fatal(err)
	}
	if mv := moves(c, mark); len(mv) != 0 {
		t.Fatalf("failback: false, yet %d moves after n3 returned: %+v", len(mv), mv)
	}
}

// A member whose checks flap never receives a unit while it flaps (failback
// waits for failback_delay of continuous health), and gets its share once
// it is stable.
func TestActiveActiveFlappingMember(t *testing.T) {
	c := newActiveActive(t, 6, true, 10)
	c.SetHealthy("n3", "edge", false)
	waitFor(t, c, 3*time.Second, "unhealthy n3 gives its VIPs up", func() bool { return spread(c)["n3"] == 0 })
	if err := c.Advance(time.Second); err != nil { // let the handoffs commit
		t.Fatal(err)
	}
	mark := len(c.Committed().Events)
	for i := range 10 {
		c.SetHealthy("n3", "edge", i%2 == 1)
		if err := c.Advance(700 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if s := spread(c); s["n3"] != 0 {
			t.Fatalf("flapping n3 was given a unit: %v", s)
		}
	}
	if mv := moves(c, mark); len(mv) != 0 {
		t.Fatalf("%d moves while n3 flapped: %+v", len(mv), mv)
	}
	c.SetHealthy("n3", "edge", true)
	waitFor(t, c, 6*time.Second, "stable n3 gets its share", func() bool { return spread(c)["n3"] == 2 })
	s := spread(c)
	if got := slices.Sorted(maps.Values(s)); !slices.Equal(got, []int{2, 2, 2}) {
		t.Fatalf("spread %v, want 2 each", s)
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestActiveActiveStatusShowsUnits(t *testing.T) {
	c := newActiveActive(t, 3, false, 11)
	if err := c.Advance(time.Second); err != nil {
		t.Fatal(err)
	}
	st := c.Status("n1")
	if len(st.Groups) != 1 || st.Groups[0].Name != "edge" {
		t.Fatalf("groups %+v, want the one group edge", st.Groups)
	}
	g := st.Groups[0]
	if len(g.Units) != 3 || len(g.Owners) != 3 || g.Units[0].VIP != "10.0.1.1/24" || g.Units[0].Name != "edge[0]" {
		t.Fatalf("edge status %+v, want 3 units over 3 owners", g)
	}
	if g.Role != "active" {
		t.Fatalf("n1 role %q, want active (it owns a unit)", g.Role)
	}
	if err := c.Switchover("edge", "n2"); err == nil || !strings.Contains(err.Error(), "edge[0]") {
		t.Fatalf("switchover of the whole active-active group: %v, want a refusal naming its units", err)
	}
	owner := g.Units[0].Owner
	to := "n2"
	if owner == "n2" {
		to = "n3"
	}
	if err := c.Switchover("edge[0]", to); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 2*time.Second, "unit switchover", func() bool { return c.Owner("edge[0]") == to })
}
