package process

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// upgradeFrom is the oldest commit a rolling upgrade must start from: the
// first with heartbeat protocol 2 (binary, receiver-bound MAC), keys from the
// argon2id-stretched secret, the config hash and the API version. Commits
// before it cannot talk to this one at all (another heartbeat protocol and
// other keys: their raft TLS handshakes fail), so an upgrade from them is a
// full stop and start, as the README says. Move it forward when a change of
// the heartbeat, the quorum log or the API makes a newer commit the one to test.
const upgradeFrom = "95656a8e61de"

// TestRollingUpgrade: a 3-node cluster of the previous release is upgraded
// to this one, one node at a time (SIGTERM, start the new binary): the owner
// keeps the group while the witness and the standby are upgraded, hands it
// off (SIGTERM handoff, reason shutdown) when its own turn comes, and the
// upgraded cluster fails over as usual when the new owner is killed.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release's binary; not in -short")
	}
	old, from, err := proctest.BuildRev(t.TempDir(), upgradeFrom)
	if err != nil {
		t.Fatalf("building the release to upgrade from (%s): %v", upgradeFrom, err)
	}
	t.Logf("upgrading from %s", from)
	c := proctest.Start(t, old, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1"})
	owner, epoch, err := c.WaitOwner("w1", liveness)
	if err != nil || owner != "n1" || epoch != 1 {
		t.Fatalf("the old cluster: owner %s@%d (%v), want n1@1", owner, epoch, err)
	}
	webAt := func(via, owner string, epoch uint64) {
		t.Helper()
		testkit.WaitForState(t, liveness, "web at "+owner+" via "+via, func() (bool, string) {
			st, err := c.Status(via)
			if err != nil {
				return false, err.Error()
			}
			g := group(st, "web")
			if g == nil {
				return false, "no web"
			}
			return g.Owner == owner && g.Epoch == epoch, g.Owner
		})
	}
	upgrade := func(n string) {
		t.Helper()
		if err := c.Signal(n, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(n, liveness); err != nil {
			t.Fatal(err)
		}
		c.Bin = bin
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
		c.Bin = old
		testkit.WaitForState(t, liveness, "the upgraded "+n+" to follow the quorum", func() (bool, string) {
			st, err := c.Status(n)
			if err != nil {
				return false, err.Error()
			}
			return st.Leader != "" && len(st.QuorumVoters) == 3, "leader " + st.Leader
		})
	}
	// Watched through n1, which is not restarted until the watch ends (a
	// restarted node's status shows no owner until it knows the state).
	stop := watchOwner(c, "n1", "n1", 1)
	upgrade("w1")
	upgrade("n2")
	if moved := stop(); len(moved) > 0 {
		t.Fatalf("web moved before its owner's upgrade: %v", moved)
	}
	for _, e := range c.Hooks() {
		if e.Group == "web" && e.Epoch != 1 {
			t.Fatalf("a hook for another epoch ran before the owner's upgrade: %+v", e)
		}
	}
	upgrade("n1") // the SIGTERM hands web to n2
	webAt("n1", "n2", 2)
	testkit.WaitForState(t, liveness, "the history to record the owner's handoff", func() (bool, string) {
		out, err := c.Baton("w1", "history")
		return err == nil && strings.Contains(out, "shutdown"), out
	})
	// Every node runs this release now: they announce the same config (the
	// restarted n1 shows a peer's hash once it heard that peer).
	testkit.WaitForState(t, liveness, "every node to announce the same config to n1", func() (bool, string) {
		st, err := c.Status("n1")
		if err != nil {
			return false, err.Error()
		}
		for _, n := range st.Nodes {
			if n.ConfigHash == "" || n.ConfigDiffers {
				return false, fmt.Sprintf("%s announces config %q (differs: %v)", n.Name, n.ConfigHash, n.ConfigDiffers)
			}
		}
		return true, ""
	})
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	webAt("w1", "n1", 3)
}
