package sim

import (
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
)

// Ten minutes of 30 % loss on every message, nothing else wrong: the group
// never changes hands and never goes a moment without an acting owner (the
// nemesis' loss-only target). Before owners sent heartbeats faster while
// acks were missing (leaseAtRisk), the same runs had 18–64 lapses and up to
// two false failovers each.
func TestHeavyLossNeverLeavesTheGroupWithoutOwner(t *testing.T) {
	for _, tc := range []struct {
		profile string
		seed    int64
	}{{"default", 1}, {"default", 2}, {"fast", 3}} {
		c := newCluster(t, tc.profile, tc.seed)
		if err := c.Advance(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		c.Drop(0.30)
		var without, longest, run time.Duration
		for end := c.Now + 10*time.Minute; c.Now < end; {
			if err := c.Advance(Step); err != nil {
				t.Fatal(err)
			}
			if c.Node("n1").core.Role("web") == core.RoleActive || c.Node("n2").core.Role("web") == core.RoleActive {
				run = 0
				continue
			}
			run += Step
			without += Step
			longest = max(longest, run)
		}
		if e := epoch(c, "web"); e != 1 || without > 0 {
			t.Errorf("%s, seed %d: epoch %d (want 1), %v without an acting owner (longest %v), want none",
				tc.profile, tc.seed, e, without, longest)
		}
	}
}
