package sim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
)

// manyGroups is threeNodes with n two-member groups, all preferring n1.
func manyGroups(n int) string {
	var b strings.Builder
	b.WriteString(`
version: 1
cluster: {name: sim, secret: "0123456789abcdef0123", profile: default}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
groups:
`)
	for i := range n {
		fmt.Fprintf(&b, "  - name: g%03d\n    members: [{node: n1, priority: 150}, {node: n2, priority: 100}]\n", i)
	}
	return b.String()
}

// TestKillOwnerOfManyGroups: the node that owns many groups dies; every group,
// not only the first, is served by the successor within the default profile's
// outage target, counted per group from the kill to the successor acting.
func TestKillOwnerOfManyGroups(t *testing.T) {
	// As many as one heartbeat datagram carries today (check-config refuses
	// more); the split heartbeat of the wire work lifts the limit.
	const groups = 30
	for _, leader := range []string{"w1", "n1"} {
		t.Run("quorum leader "+leader, func(t *testing.T) {
			c := New(mustConfig(t, manyGroups(groups)), 11, nil)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitOwner(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			if err := c.Advance(time.Second); err != nil {
				t.Fatal(err)
			}
			for _, g := range c.Spec.Units {
				if o := c.Owner(g.Name); o != "n1" {
					t.Fatalf("group %s owned by %q, want n1 (priority 150)", g.Name, o)
				}
			}
			c.leader = leader
			killed := c.Now
			c.Kill("n1")
			served := map[string]time.Duration{}
			for len(served) < groups {
				if err := c.Advance(Step); err != nil {
					t.Fatal(err)
				}
				for _, a := range c.Activations {
					if a.At > killed && a.Node == "n2" && a.Role == core.RoleActive {
						if _, ok := served[a.Group]; !ok {
							served[a.Group] = a.At - killed
						}
					}
				}
				if c.Now-killed > 10*time.Second {
					t.Fatalf("after 10 s only %d of %d groups are served by n2", len(served), groups)
				}
			}
			var d []time.Duration
			for _, v := range served {
				d = append(d, v)
			}
			slices.Sort(d)
			p50, p99 := d[len(d)/2], d[(len(d)*99+99)/100-1]
			t.Logf("kill of the owner of %d groups → successor acting: p50 %v, p99 %v, max %v", groups, p50, p99, d[len(d)-1])
			// The default profile's target is p99 ≤ 0.6 s client-visible; the
			// harness has no CPU cost, so what it checks is that no group waits
			// for another (no serialisation in the core).
			if limit := 600 * time.Millisecond; p99 > limit {
				t.Fatalf("p99 %v over the default profile's target %v (max %v)", p99, limit, d[len(d)-1])
			}
		})
	}
}
