package process

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// reloadAll runs `baton reload` on every named node.
func reloadAll(t *testing.T, c *proctest.Cluster, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		if out, err := c.Baton(n, "reload"); err != nil {
			t.Fatalf("baton reload on %s: %v\n%s", n, err, out)
		}
	}
}

// waitVoters waits until via's Raft configuration has exactly want.
func waitVoters(t *testing.T, c *proctest.Cluster, via string, want ...string) {
	t.Helper()
	slices.Sort(want)
	testkit.WaitForState(t, liveness, "quorum voters "+strings.Join(want, ",")+" via "+via, func() (bool, string) {
		st, err := c.Status(via)
		if err != nil {
			return false, err.Error()
		}
		got := slices.Clone(st.QuorumVoters)
		slices.Sort(got)
		return slices.Equal(got, want), "voters " + strings.Join(got, ",")
	})
}

// watchOwner polls via's status until stop is called and reports every web
// owner/epoch other than the expected one.
func watchOwner(c *proctest.Cluster, via, owner string, epoch uint64) (stop func() []string) {
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			st, err := c.Status(via)
			if err != nil {
				continue
			}
			if g := group(st, "web"); g != nil && (g.Owner != owner || g.Epoch != epoch) {
				mu.Lock()
				seen = append(seen, g.Owner+"@"+time.Now().Format("15:04:05.000"))
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

// TestMembershipGrowThenFailover: a 3-node cluster grows to 5 voters, one node
// at a time (in the config, the others reload, it starts and joins), while a
// poller watches the owner: web never moves. Then two of the five die, the
// owner among them, and the remaining three (a quorum of five) fail web over.
func TestMembershipGrowThenFailover(t *testing.T) {
	c := start(t, proctest.Spec{})
	stop := watchOwner(c, "w1", "n1", 1)
	nodes := []string{"n1", "n2", "w1"}
	for _, n := range []string{"n3", "n4"} {
		if err := c.AddNode(n, false); err != nil {
			t.Fatal(err)
		}
		reloadAll(t, c, nodes...)
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		waitVoters(t, c, "n1", nodes...)
		testkit.WaitForState(t, liveness, n+" to follow the quorum", func() (bool, string) {
			st, err := c.Status(n)
			if err != nil {
				return false, err.Error()
			}
			return st.Leader != "" && st.RaftRole == "follower", "leader " + st.Leader + ", role " + st.RaftRole
		})
	}
	waitVoters(t, c, "n4", nodes...)
	if moved := stop(); len(moved) > 0 {
		t.Fatalf("web moved while the cluster grew: %v", moved)
	}
	st, err := c.Status("n4")
	if err != nil {
		t.Fatal(err)
	}
	if g := group(st, "web"); g == nil || g.Owner != "n1" || g.Epoch != 1 {
		t.Fatalf("web via the new node n4: %+v, want n1 at epoch 1", g)
	}

	// Two of five die, the owner among them: n2, n3, n4 are a quorum.
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill("w1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "web to fail over to n2", func() (bool, string) {
		st, err := c.Status("n3")
		if err != nil {
			return false, err.Error()
		}
		g := group(st, "web")
		return g != nil && g.Owner == "n2" && g.Epoch == 2, "web " + g.Owner
	})
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Group == "web" && e.Node == "n2" && e.Role == "active" && e.Epoch == 2
	}); err != nil {
		t.Fatal(err)
	}
}

// TestReplaceMemberWithLostDataDir: the owner's host dies and its data_dir is
// gone. The other member takes over; a fresh n1 with the same name and an
// empty data_dir joins again without bootstrapping a quorum of its own, learns
// the current epoch (none goes back), reclaims nothing, and is a working
// member afterwards (a switchover to it succeeds).
func TestReplaceMemberWithLostDataDir(t *testing.T) {
	c := start(t, proctest.Spec{})
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "web to fail over to n2", func() (bool, string) {
		st, err := c.Status("w1")
		if err != nil {
			return false, err.Error()
		}
		g := group(st, "web")
		return g != nil && g.Owner == "n2" && g.Epoch == 2, ""
	})
	if err := os.RemoveAll(filepath.Join(c.Dir, "n1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "the fresh n1 to follow the quorum and see epoch 2", func() (bool, string) {
		st, err := c.Status("n1")
		if err != nil {
			return false, err.Error()
		}
		g := group(st, "web")
		return st.RaftRole == "follower" && st.Leader != "" && g != nil && g.Owner == "n2" && g.Epoch == 2,
			"role " + st.RaftRole
	})
	time.Sleep(quiet(t, c)) // long enough for a reclaim to show
	for _, n := range []string{"n1", "n2", "w1"} {
		st, err := c.Status(n)
		if err != nil {
			t.Fatal(err)
		}
		if g := group(st, "web"); g == nil || g.Owner != "n2" || g.Epoch != 2 {
			t.Fatalf("web via %s after the fresh n1 joined: %+v, want n2 at epoch 2", n, g)
		}
		if n == "n1" && len(st.QuorumVoters) != 3 {
			t.Fatalf("n1 knows the voters %v, want the three nodes", st.QuorumVoters)
		}
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, "n1.log"))
	if err != nil {
		t.Fatal(err)
	}
	// Its second life: it waited for the leader instead of bootstrapping.
	life := string(b[strings.LastIndex(string(b), "agent started"):])
	if strings.Contains(life, "bootstrapped a new quorum") || !strings.Contains(life, "waiting for it to add this node") {
		t.Fatalf("the fresh n1 did not wait to be added by the leader:\n%s", life)
	}
	if !strings.Contains(life, "caught up with the cluster; voting again") {
		t.Fatalf("the fresh n1 never said it caught up before voting:\n%s", life)
	}
	if out, err := c.Baton("w1", "switchover", "web", "--to", "n1"); err != nil {
		t.Fatalf("switchover to the fresh n1: %v\n%s", err, out)
	}
	owner, epoch, err := c.WaitOwner("w1", liveness)
	if err != nil || owner != "n1" || epoch != 3 {
		t.Fatalf("after the switchover: %s@%d (%v), want n1@3", owner, epoch, err)
	}
}

// TestRemoveWitnessFromFiveNodes: in a five-node cluster the witness is
// stopped, removed from the config and the others reload: the quorum drops it
// (four voters), web stays where it is, and the four still fail over. Removing
// the owner while it runs is refused with the reason.
func TestRemoveWitnessFromFiveNodes(t *testing.T) {
	c := start(t, proctest.Spec{Members: []string{"n1", "n2", "n3", "n4"}, Witness: "w1"})
	stop := watchOwner(c, "n2", "n1", 1)
	if err := c.Signal("w1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait("w1", liveness); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNode("w1"); err != nil {
		t.Fatal(err)
	}
	reloadAll(t, c, "n1", "n2", "n3", "n4")
	waitVoters(t, c, "n2", "n1", "n2", "n3", "n4")
	if moved := stop(); len(moved) > 0 {
		t.Fatalf("web moved while the witness was removed: %v", moved)
	}
	var st core.Status
	testkit.WaitForState(t, liveness, "w1 gone from n3's status", func() (bool, string) {
		var err error
		if st, err = c.Status("n3"); err != nil {
			return false, err.Error()
		}
		return !slices.ContainsFunc(st.Nodes, func(n core.NodeStatus) bool { return n.Name == "w1" }), ""
	})

	// The owner cannot be removed while it owns web.
	orig, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), "      - {node: n1, priority: 200}\n", "", 1)
	if err := os.WriteFile(c.ConfigPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNode("n1"); err != nil {
		t.Fatal(err)
	}
	out, err := c.Baton("n2", "reload")
	if err == nil || !strings.Contains(out, `node "n1" still owns group web`) {
		t.Fatalf("removing the running owner: %v\n%s", err, out)
	}
	if err := os.WriteFile(c.ConfigPath, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// Four voters: one may die.
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "web to fail over to n2", func() (bool, string) {
		st, err := c.Status("n3")
		if err != nil {
			return false, err.Error()
		}
		g := group(st, "web")
		return g != nil && g.Owner == "n2" && g.Epoch == 2, ""
	})
}

// TestNodeRemoveTakesADeadVoterOut: `baton node remove` takes a dead node out
// of the quorum at once (any node's API forwards to the leader); it refuses a
// running node, and in a three-node cluster any removal (two voters would be
// left), each with the reason.
func TestNodeRemoveTakesADeadVoterOut(t *testing.T) {
	c := start(t, proctest.Spec{Members: []string{"n1", "n2", "n3", "n4"}, Witness: "w1"})
	if err := c.Kill("w1"); err != nil {
		t.Fatal(err)
	}
	// w1 most likely led the quorum: retry until a new leader answers.
	testkit.WaitForState(t, liveness, "the removal of the running n2 to be refused", func() (bool, string) {
		out, err := c.Baton("n3", "node", "remove", "n2")
		return err != nil && strings.Contains(out, `node "n2" is running: stop its agent first`), out
	})
	testkit.WaitForState(t, liveness, "baton node remove w1 to succeed", func() (bool, string) {
		out, err := c.Baton("n3", "node", "remove", "w1")
		return err == nil && strings.Contains(out, "w1 removed from the quorum"), out
	})
	waitVoters(t, c, "n2", "n1", "n2", "n3", "n4")
	if g := mustStatus(t, c, "n2"); group(g, "web").Owner != "n1" || group(g, "web").Epoch != 1 {
		t.Fatalf("web after the removal: %+v", group(g, "web"))
	}

	small := start(t, proctest.Spec{})
	if err := small.Kill("w1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "the removal from three voters to be refused", func() (bool, string) {
		out, err := small.Baton("n1", "node", "remove", "w1")
		return err != nil && strings.Contains(out, `removing "w1" would leave 2 voters: keep at least 3`), out
	})
}

func mustStatus(t *testing.T, c *proctest.Cluster, n string) core.Status {
	t.Helper()
	st, err := c.Status(n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
