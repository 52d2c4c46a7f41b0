package process

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// TestAPIConnectionFloodChangesNothing: 600 idle connections to the owner's
// API from one address (more than the agent's per-address bound, and in all
// more descriptors than a default soft limit allows) neither exhaust the
// owner's file descriptors nor move the group; the API still answers other
// clients, and an idle connection is closed by the server.
func TestAPIConnectionFloodChangesNothing(t *testing.T) {
	c := start(t, proctest.Spec{})
	api := c.APIs["n1"]
	pid := c.PID("n1")
	before := openFDs(t, pid)
	// 127.0.0.2: a local address that is not the test's own, so the bound
	// per address falls on the flood, not on the test's status requests.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
	var held []net.Conn
	defer func() {
		for _, conn := range held {
			conn.Close()
		}
	}()
	for range 600 {
		conn, err := d.Dial("tcp", api)
		if err != nil {
			continue
		}
		held = append(held, conn)
	}
	time.Sleep(quiet(t, c)) // long enough for the flood to move the group, if it could
	if n := openFDs(t, pid); n > before+100 {
		t.Fatalf("the owner holds %d descriptors during the flood (%d before): the API bound did not hold", n, before)
	}
	st, err := c.Status("n1")
	if err != nil {
		t.Fatalf("the API does not answer during the flood: %v", err)
	}
	if g := st.Groups[0]; g.Owner != "n1" || g.Epoch != 1 {
		t.Fatalf("the flood moved the group: owner %s epoch %d", g.Owner, g.Epoch)
	}
	// An idle keep-alive connection is closed by the server.
	conn, err := net.Dial("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(45 * time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := conn.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("an idle keep-alive API connection stayed open for 45 s")
			}
			break // closed by the server
		}
	}
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSIGHUPNeverKillsAnAgent: SIGHUP's default action would kill the agent
// (an unplanned failover for keepalived habits); it reloads the (unchanged)
// config instead, which moves nothing.
func TestSIGHUPNeverKillsAnAgent(t *testing.T) {
	c := start(t, proctest.Spec{})
	for _, n := range []string{"n1", "w1"} {
		if err := c.Signal(n, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(quiet(t, c)) // long enough for a death or a failover to show
	for _, n := range []string{"n1", "w1"} {
		if err := syscall.Kill(c.PID(n), 0); err != nil {
			t.Fatalf("%s died of SIGHUP: %v", n, err)
		}
	}
	st, err := c.Status("w1")
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Groups[0]; g.Owner != "n1" || g.Epoch != 1 {
		t.Fatalf("SIGHUP moved the group: owner %s epoch %d", g.Owner, g.Epoch)
	}
	if b, err := os.ReadFile(filepath.Join(c.Dir, "n1.log")); err != nil || !strings.Contains(string(b), "SIGHUP received") {
		t.Fatalf("n1's log does not say it got SIGHUP (%v)", err)
	}
}

// TestPreemptionHandsBackToTheSlowerHigherPriorityMember: at a cold start
// where n1 (priority 150) comes up after the start-up grace, n2 (100) gets
// the group; with preemption on (failback: true) n1 takes it back once it
// has been healthy for failback_delay, and the history says why.
func TestPreemptionHandsBackToTheSlowerHigherPriorityMember(t *testing.T) {
	c, err := proctest.New(bin, t.TempDir(), proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1",
		GroupExtra: "    failback: true\n    failback_delay: 1s\n"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	for _, n := range []string{"w1", "n2"} {
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	if owner, _, err := c.WaitOwner("w1", liveness); err != nil || owner != "n2" {
		t.Fatalf("without n1, owner %q (%v), want n2", owner, err)
	}
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, liveness, "n1 to take the group back", func() bool {
		st, err := c.Status("w1")
		return err == nil && st.Groups[0].Owner == "n1"
	})
	// Status may show the new owner from gossip before w1's replica has the
	// history entry (reads are not yet consistent by default: issue 13).
	testkit.WaitFor(t, liveness, "the history to record the failback", func() bool {
		hist, err := c.Baton("w1", "history")
		return err == nil && strings.Contains(hist, "failback")
	})
}
