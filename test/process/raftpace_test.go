package process

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// lastPace is the last raft pace a node's agent logged: "idle", "normal" or
// "" (none yet).
func lastPace(t *testing.T, c *proctest.Cluster, node string) string {
	b, err := os.ReadFile(filepath.Join(c.Dir, node+".log"))
	if err != nil {
		t.Fatal(err)
	}
	pace := ""
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(l, "raft at its idle pace"):
			pace = "idle"
		case strings.Contains(l, "raft at its normal pace"):
			pace = "normal"
		}
	}
	return pace
}

// TestRaftPaceFollowsTheLeader: once the quorum leader sits on a node that
// owns nothing, every agent runs raft at its idle pace; when leadership moves
// to the owner, every agent returns to the normal pace (so that the owner's
// death is followed by a fast election); and the cluster still fails over.
func TestRaftPaceFollowsTheLeader(t *testing.T) {
	// Leadership stays where it is put.
	c := start(t, proctest.Spec{Extra: "  keep_leader_off_owners: false\n"})
	nodes := []string{"n1", "n2", "w1"}
	// everyAt waits until every agent's last logged pace is want.
	everyAt := func(want, why string) {
		testkit.WaitForState(t, liveness, "every agent at the "+want+" pace ("+why+")", func() (bool, string) {
			ok, got := true, ""
			for _, n := range nodes {
				p := lastPace(t, c, n)
				ok = ok && p == want
				got += n + "=" + p + " "
			}
			return ok, got
		})
	}
	moveLeader(t, c, "w1")
	everyAt("idle", "leader w1 owns nothing")
	moveLeader(t, c, "n1")
	everyAt("normal", "leader n1 owns the group")
	killed := time.Now()
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill -9 of the owner that led the quorum → active hook on n2 after %v", e.At.Sub(killed).Round(time.Millisecond))
}

// moveLeader asks the current quorum leader to hand leadership to `to` until
// the witness reports it there.
func moveLeader(t *testing.T, c *proctest.Cluster, to string) {
	t.Helper()
	testkit.WaitForState(t, liveness, "quorum leadership on "+to, func() (bool, string) {
		st, err := c.Status("w1")
		if err != nil {
			return false, err.Error()
		}
		if st.Leader == to {
			return true, ""
		}
		if st.Leader != "" {
			body, _ := json.Marshal(map[string]string{"to": to})
			req, _ := http.NewRequest("POST", "http://"+c.APIs[st.Leader]+"/v1/debug/transfer-leadership", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+proctest.Token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false, "leader " + st.Leader
	})
}
