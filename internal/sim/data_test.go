package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/quorum"
)

const dataGroup = `
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
groups:
  - name: db
    members: [{node: n1, priority: 150}, {node: n2, priority: 100}]
    driver: {type: exec, sync: %s, max_lag: 1kB, commands: {state: [/bin/true]}}
`

func newDataCluster(t *testing.T, sync string, seed int64) *Cluster {
	t.Helper()
	c := New(mustConfig(t, fmt.Sprintf(dataGroup, sync)), seed, nil)
	c.SetData("n1", "db", core.DataReport{Known: true, Role: "primary", Pos: 5000})
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "standby", Pos: 4990})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitOwner(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("db"); o != "n1" {
		t.Fatalf("initial owner %s, want n1", o)
	}
	return c
}

func TestSyncOnlyPromotesASynchronousStandby(t *testing.T) {
	c := newDataCluster(t, "on", 31)
	// No synchronous standby recorded: n1's death must not promote n2.
	c.Kill("n1")
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("db"); o != "" {
		t.Fatalf("%s took over although it was never a synchronous standby", o)
	}
	st := c.Status(c.Leader())
	if note := st.Groups[0].Note; !strings.Contains(note, "n2 is not a synchronous standby") {
		t.Fatalf("leader note %q does not say why", note)
	}
	// The operator can force it, and the history says so.
	if err := c.ForceFailover("db", "n2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 2*time.Second, "forced failover", func() bool { return c.Owner("db") == "n2" })
	ev := c.Committed().Events
	if e := ev[len(ev)-1]; e.Reason != quorum.ReasonManual || !strings.Contains(e.Detail, "allow-data-loss") || e.PrimaryPos != 5000 || e.PromotedPos != 4990 {
		t.Fatalf("forced failover recorded as %+v", e)
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncStandbyRecordedThenPromoted(t *testing.T) {
	c := newDataCluster(t, "strict", 32)
	// The owner asks for n2 to be recorded as synchronous.
	c.SetData("n1", "db", core.DataReport{Known: true, Role: "primary", Pos: 6000, Streaming: []string{"n2"}, Synchronous: []string{"n2"}})
	waitFor(t, c, 2*time.Second, "sync set recorded", func() bool {
		return slices.Equal(c.Committed().Group("db").Sync, []string{"n2"})
	})
	ev := c.Committed().Events
	if e := ev[len(ev)-1]; e.Reason != quorum.ReasonSync || !slices.Equal(e.Sync, []string{"n2"}) {
		t.Fatalf("history entry %+v, want the sync set", e)
	}
	// A sync entry is not an ownership change: takeover annotations and
	// previous owners ignore it.
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "standby", Pos: 6000})
	if err := c.Advance(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.Kill("n1")
	waitFor(t, c, 3*time.Second, "synchronous standby promoted", func() bool { return c.Owner("db") == "n2" })
	e := c.Committed().Events[len(c.Committed().Events)-1]
	if e.From != "n1" || e.To != "n2" || e.Reason != quorum.ReasonFailure || e.PromotedPos != 6000 || e.LostBytes != 0 {
		t.Fatalf("failover recorded as %+v", e)
	}
	if g := c.Committed().Group("db"); len(g.Sync) != 0 {
		t.Fatalf("new epoch kept the old sync set %v", g.Sync)
	}
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestAsyncMaxLag(t *testing.T) {
	c := newDataCluster(t, "off", 33)
	// n2 trails by 4000 bytes > max_lag 1kB: not promoted automatically.
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "standby", Pos: 1000})
	if err := c.Advance(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.Kill("n1")
	if err := c.Advance(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("db"); o != "" {
		t.Fatalf("%s promoted although it trailed by more than max_lag", o)
	}
	// It catches up to within max_lag (replaying what it had received).
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "standby", Pos: 4500})
	waitFor(t, c, 2*time.Second, "promoted within max_lag", func() bool { return c.Owner("db") == "n2" })
	e := c.Committed().Events[len(c.Committed().Events)-1]
	if e.LostBytes != 500 || e.PrimaryPos != 5000 || e.PromotedPos != 4500 {
		t.Fatalf("failover recorded as %+v, want 500 bytes maybe lost", e)
	}
}

func TestDataBootstrapPrefersMostUpToDate(t *testing.T) {
	c := New(mustConfig(t, fmt.Sprintf(dataGroup, "on")), 34, nil)
	c.SetData("n1", "db", core.DataReport{Known: true, Role: "stopped", Pos: 100})
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "stopped", Pos: 900})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitOwner(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("db"); o != "n2" {
		t.Fatalf("owner %s, want n2 (the newer data), although n1 has the higher priority", o)
	}
}

// A member whose data is another dataset (a Redis with replication ids the
// group never had) is never promoted automatically, however high its offset;
// an operator may force it, and the history says so.
func TestUnrelatedDatasetNeverPromoted(t *testing.T) {
	c := newDataCluster(t, "off", 34)
	c.SetData("n2", "db", core.DataReport{Known: true, Role: "standby", Pos: 9_000_000, Unrelated: true})
	if err := c.Advance(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c.Kill("n1")
	if err := c.Advance(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o := c.Owner("db"); o != "" {
		t.Fatalf("%s promoted although its data is unrelated to the group's", o)
	}
	if note := c.Status(c.Leader()).Groups[0].Note; !strings.Contains(note, "n2's data is not on the group's replication history") {
		t.Fatalf("leader note %q does not say why", note)
	}
	if err := c.ForceFailover("db", "n2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, 2*time.Second, "forced failover", func() bool { return c.Owner("db") == "n2" })
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
}
