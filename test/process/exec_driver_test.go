package process

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/quorum"
	"github.com/baton-ha/baton/internal/testkit"
)

// A "database" made of one shell script, wired in through the exec driver:
// what any database needs to give Baton (a state line, promote, follow,
// fence).
const fakeDB = `#!/bin/sh
f=%[1]s/$BATON_NODE
case "$BATON_OPERATION" in
state)     role=$(cat $f.role 2>/dev/null || echo stopped); echo "role=$role timeline=1 lsn=$(cat $f.lsn)" ;;
bootstrap) if [ -n "$BATON_PRIMARY_NODE" ]; then echo standby > $f.role; else echo primary > $f.role; fi ;;
promote)   echo primary > $f.role; echo "promote $BATON_NODE $BATON_EPOCH" >> %[1]s/ops ;;
follow)    echo standby > $f.role; echo "follow $BATON_NODE $BATON_PRIMARY_NODE" >> %[1]s/ops ;;
fence)     echo "fence $BATON_NODE" >> %[1]s/ops ;;
set_sync)  ;;
stop)      echo stopped > $f.role ;;
esac
`

// startFakeDB starts two members and a witness whose group's database is
// fakeDB in dir, n1 at position 1000 and n2 at 990 (so a failover to n2 may
// lose 10 bytes), with the given sync mode.
func startFakeDB(t *testing.T, sync string) (c *proctest.Cluster, dir string) {
	t.Helper()
	dir = t.TempDir()
	script := filepath.Join(dir, "db.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(fakeDB, dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	for node, lsn := range map[string]string{"n1": "1000", "n2": "990"} {
		if err := os.WriteFile(filepath.Join(dir, node+".lsn"), []byte(lsn), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cmds []string
	for _, op := range []string{"state", "bootstrap", "promote", "follow", "fence", "set_sync", "stop"} {
		cmds = append(cmds, fmt.Sprintf("%s: [%q]", op, script))
	}
	return start(t, proctest.Spec{GroupExtra: "    driver: {type: exec, sync: " + sync + ", commands: {" + strings.Join(cmds, ", ") + "}}\n"}), dir
}

func TestExecDriverFailover(t *testing.T) {
	c, dir := startFakeDB(t, "off")
	ops := func() string { b, _ := os.ReadFile(filepath.Join(dir, "ops")); return string(b) }
	waitOps := func(want string) {
		t.Helper()
		testkit.WaitForState(t, liveness, fmt.Sprintf("%q in the driver's operations", want), func() (bool, string) {
			o := ops()
			return strings.Contains(o, want), "operations:\n" + o
		})
	}
	waitOps("promote n1 1")
	waitOps("follow n2 n1")
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	waitOps("promote n2 2")
	var last quorum.Event
	testkit.WaitForState(t, liveness, "the failover in w1's history", func() (bool, string) {
		out, err := c.Baton("w1", "history", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var ev []quorum.Event
		if err := json.Unmarshal([]byte(out), &ev); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for _, e := range ev {
			if e.Epoch == 2 && e.Ownership() {
				last = e
			}
		}
		return last.Epoch == 2, "history:\n" + out
	})
	if last.To != "n2" || last.PrimaryPos != 1000 || last.PromotedPos != 990 || last.LostBytes != 10 {
		t.Fatalf("failover recorded as %+v; want positions 1000 → 990 and 10 bytes maybe lost", last)
	}
	// n1 comes back: fenced first, then it follows n2.
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	waitOps("follow n1 n2")
	if o := ops(); strings.Index(o, "fence n1") > strings.Index(o, "follow n1 n2") || !strings.Contains(o, "fence n1") {
		t.Errorf("the returning old primary was not fenced before it followed:\n%s", o)
	}
	testkit.WaitForState(t, liveness, "database roles n1 standby and n2 primary", func() (bool, string) {
		st, err := c.Status("w1")
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]string{}
		for _, m := range st.Groups[0].Members {
			roles[m.Node] = m.DB
		}
		return roles["n1"] == "standby" && roles["n2"] == "primary", fmt.Sprintf("roles %v", roles)
	})
}

// sync: on with no synchronous standby recorded: the owner's death promotes
// nobody (status says why) until an operator forces it, which the history
// records.
func TestExecDriverForcedFailover(t *testing.T) {
	c, _ := startFakeDB(t, "on")
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet(t, c)) // long enough for a failover to show
	st, err := c.Status("w1")
	if err != nil {
		t.Fatal(err)
	}
	g := st.Groups[0]
	if g.Owner != "n1" {
		t.Fatalf("%s took over without being a recorded synchronous standby", g.Owner)
	}
	if out, err := c.Baton("w1", "failover", "web", "--to", "n2"); err == nil || !strings.Contains(out, "--allow-data-loss") {
		t.Fatalf("failover without --allow-data-loss: %v\n%s", err, out)
	}
	out, err := c.Baton("w1", "failover", "web", "--to", "n2", "--allow-data-loss")
	if err != nil || !strings.Contains(out, "forced failover n1 → n2 (epoch 2)") {
		t.Fatalf("forced failover: %v\n%s", err, out)
	}
	// w1's replica applies the change a moment after the leader answered.
	testkit.WaitForState(t, liveness, "w1's history to record the forced failover", func() (bool, string) {
		hist, err := c.Baton("w1", "history")
		return err == nil && strings.Contains(hist, "manual") && strings.Contains(hist, "allow-data-loss"), fmt.Sprintf("%v\n%s", err, hist)
	})
}

// Bad driver input gives a clear error: a missing bin_dir stops the agent at
// start with the field and the fix; a database that cannot report its state
// shows in status, and such a member is never promoted.
func TestDriverBadInput(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pg.pass")
	if err := os.WriteFile(pass, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := proctest.New(bin, t.TempDir(), proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", GroupExtra: fmt.Sprintf(`    driver:
      type: postgres
      bin_dir: /nonexistent/postgresql/bin
      data_dir: %s/{node}/pgdata
      superuser: {user: postgres, password_file: %s}
      replication: {user: replicator, password_file: %s}
`, dir, pass, pass)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(c.Bin, "agent", "--config", c.ConfigPath, "--node", "n1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "driver.bin_dir /nonexistent/postgresql/bin does not exist") ||
		!strings.Contains(string(out), "apt-get install") {
		t.Fatalf("agent with a missing bin_dir: %v\n%s", err, out)
	}

	// An exec database whose state command fails: status says why, and
	// that member does not take the group.
	script := filepath.Join(dir, "broken.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'cannot connect: password authentication failed for user \"app\"' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c2 := start2(t, proctest.Spec{GroupExtra: fmt.Sprintf("    driver: {type: exec, commands: {state: [%q], promote: [%q]}}\n", script, script)})
	testkit.WaitForState(t, liveness, "n1's status to show the database error", func() (bool, string) {
		s, err := c2.Status("n1")
		return err == nil && strings.Contains(s.Groups[0].DBError, "password authentication failed"), fmt.Sprintf("%+v %v", s, err)
	})
	// Watch past the startup grace (no member takes a group before it) and a
	// takeover's worth more.
	time.Sleep(timing(t, c2).StartupGrace + quiet(t, c2))
	if s, err := c2.Status("w1"); err != nil || s.Groups[0].Owner != "" {
		t.Fatalf("a member whose database cannot report took the group: %+v (%v)", s.Groups, err)
	}
}
