package process

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/proctest"
)

// TestTwoHundredGroups: 200 groups on 3 real agents (heartbeats of ~30
// packets in the worst case, split by the wire) all get an owner that acts
// for them, and when the node owning the most is killed with SIGKILL, every
// one of its groups is taken over by a survivor at a higher epoch. It used
// to serve no group at all beyond ~65–90 groups (the heartbeat did not fit
// one datagram). The bounds are generous: a correctness test on a shared
// host, not a benchmark (bench/scale measures).
func TestTwoHundredGroups(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	var more strings.Builder
	for i := 1; i < 200; i++ { // "web" is the 200th
		fmt.Fprintf(&more, "  - {name: service-number-%03d, members: [{node: %s, priority: 200}, {node: %s, priority: 100}, {node: %s, priority: 50}]}\n",
			i, nodes[i%3], nodes[(i+1)%3], nodes[(i+2)%3])
	}
	c := proctest.Start(t, bin, proctest.Spec{Members: nodes, MoreGroups: more.String()})

	// acting returns, for every group some node acts for, that node (as its
	// own status says: it is the owner and its role is active).
	acting := func(among []string) (map[string]string, map[string]uint64) {
		owner, epoch := map[string]string{}, map[string]uint64{}
		for _, n := range among {
			st, err := c.Status(n)
			if err != nil {
				continue
			}
			for _, g := range st.Groups {
				if g.Owner == n && g.Role == core.RoleActive {
					owner[g.Name], epoch[g.Name] = n, g.Epoch
				}
			}
		}
		return owner, epoch
	}
	var owner map[string]string
	var epoch map[string]uint64
	start := time.Now()
	for {
		if owner, epoch = acting(nodes); len(owner) == 200 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("after 60 s, %d of 200 groups have an acting owner", len(owner))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("all 200 groups acted for %v after start", time.Since(start).Round(time.Millisecond))

	count := map[string][]string{}
	for g, n := range owner {
		count[n] = append(count[n], g)
	}
	victim := slices.MaxFunc(nodes, func(a, b string) int { return len(count[a]) - len(count[b]) })
	survivors := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == victim })
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	lost := count[victim]
	for {
		now, nowEpoch := acting(survivors)
		var missing []string
		for _, g := range lost {
			if now[g] == "" || nowEpoch[g] <= epoch[g] {
				missing = append(missing, g)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("60 s after kill -9 of %s, %d of its %d groups have no acting successor (e.g. %s)",
				victim, len(missing), len(lost), missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("kill -9 %s (owner of %d groups): every one taken over within %v (polled)",
		victim, len(lost), time.Since(killed).Round(time.Millisecond))
	// The survivors' own groups should not move. On a saturated shared host
	// an agent starved for longer than failure_timeout loses some (its
	// own log says "agent was stalled"): reported with the history's
	// reason, not failed on — issue 13's nemesis and bench/scale measure
	// false failovers; this test is about liveness.
	now, nowEpoch := acting(survivors)
	var moved []string
	for g, n := range owner {
		if n != victim && (now[g] != n || nowEpoch[g] != epoch[g]) {
			moved = append(moved, fmt.Sprintf("%s %s@%d→%s@%d", g, n, epoch[g], now[g], nowEpoch[g]))
		}
	}
	if len(moved) > 0 {
		out, _ := c.Baton(survivors[0], "history")
		t.Logf("%d groups of surviving owners moved (a starved agent's leases lapsed): %v\nhistory:\n%s", len(moved), moved, tail(out, 2000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
