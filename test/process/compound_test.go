package process

import (
	"fmt"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// TestFailoverAfterAStandbyRestart is the compound fault the nemesis found:
// the standby is down long enough for the quorum leader's replication towards
// it to back off, comes back, and then the owner dies. The successor must take
// over as fast as on a fresh cluster, and the history's times must add up.
func TestFailoverAfterAStandbyRestart(t *testing.T) {
	c := start(t, proctest.Spec{})
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(15 * time.Second)
	if err := c.Start("n2"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "n2 back", func() (bool, string) {
		_, err := c.Status("n2")
		return err == nil, fmt.Sprint(err)
	})
	time.Sleep(4 * time.Second)
	st, _ := c.Status("w1")
	t.Logf("quorum leader at the kill: %s", st.Leader)
	killed := time.Now()
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" })
	if err != nil {
		t.Fatal(err)
	}
	took := e.At.Sub(killed)
	t.Logf("kill -9 after a standby restart → active hook on n2 after %v", took.Round(time.Millisecond))
	// A fresh cluster takes ~0.4 s; raft's replication back-off towards the
	// restarted node would add seconds.
	if took > 2500*time.Millisecond {
		out, _ := c.Baton("w1", "history")
		t.Fatalf("failover after a standby restart took %v (a fresh cluster: ~0.4 s); history:\n%s", took, out)
	}
}
