package process

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/demo"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// manyGroups is as many groups as one heartbeat datagram carries today
// (check-config refuses more); split heartbeats lift the limit.
const manyGroups = 30

// TestKill9OwnerOfManyGroups: n1 owns every one of many groups and is killed;
// every group, not only the first, gets served by n2 — seen per group on n2's
// role endpoint, as a health-checking proxy sees it. The bound is generous
// (a correctness test on a shared host); the outage per group is logged.
func TestKill9OwnerOfManyGroups(t *testing.T) {
	c := start2(t, proctest.Spec{Groups: manyGroups})
	var groups []string
	for i := range manyGroups {
		groups = append(groups, demo.GroupName(i))
	}
	testkit.WaitForState(t, liveness, "n1 owns every group", func() (bool, string) {
		st, err := c.Status("w1")
		if err != nil {
			return false, err.Error()
		}
		owned := 0
		for _, g := range st.Groups {
			if g.Owner == "n1" {
				owned++
			}
		}
		return owned == manyGroups, fmt.Sprintf("%d of %d groups owned by n1", owned, manyGroups)
	})
	if st, err := c.Status("w1"); err == nil {
		t.Logf("quorum leader at the kill: %s", st.Leader)
	}
	served, err := c.GroupsServed("n2", groups, 20*time.Millisecond, liveness, func() error { return c.Kill("n1") })
	if err != nil {
		t.Fatal(err)
	}
	if len(served) != manyGroups {
		var missing []string
		for _, g := range groups {
			if _, ok := served[g]; !ok {
				missing = append(missing, g)
			}
		}
		st, _ := c.Status("n2")
		t.Fatalf("%d of %d groups served by n2 within %v; not served: %v; n2's status: %+v", len(served), manyGroups, liveness, missing, st)
	}
	var d []time.Duration
	for _, v := range served {
		d = append(d, v)
	}
	slices.Sort(d)
	t.Logf("kill -9 of the owner of %d groups → served by n2 (role endpoint, 20 ms probes): p50 %v, p99 %v, max %v",
		manyGroups, d[len(d)/2].Round(time.Millisecond), d[(len(d)*99+99)/100-1].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	if out, err := c.Baton("w1", "history"); err == nil {
		t.Logf("history:\n%s", out)
	}
}
