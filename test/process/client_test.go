package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/client"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// The Go client against real agents: it dials the owner, loses the
// connection at once when the owner is deposed, and its next Dial retries
// across the failover to the new owner.
func TestClientAcrossFailover(t *testing.T) {
	c := start2(t, proctest.Spec{GroupExtra: "    port: $SVC\n"})
	serveWhoami(t, c)
	cl, err := client.New(client.Options{Agents: []string{c.APIs["n1"], c.APIs["n2"], c.APIs["w1"]}, RetryFor: liveness})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	conn, err := cl.Dial(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if who, err := ask(conn, br); err != nil || who != "n1" {
		t.Fatalf("first dial reached %q, %v; want n1", who, err)
	}
	// n1's agent dies (the client's first agent is n1) but its service keeps
	// answering, as a cut-off or stale owner would: the client must drop the
	// connection because n1 was deposed, not because n1 closed it.
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(liveness))
	if _, err := br.ReadByte(); !errors.Is(err, client.ErrDeposed) {
		t.Fatalf("read on the connection to the deposed owner: %v, want ErrDeposed", err)
	}
	conn2, err := cl.Dial(ctx, "web")
	if err != nil {
		t.Fatalf("dial across the failover: %v", err)
	}
	defer conn2.Close()
	if who, err := ask(conn2, bufio.NewReader(conn2)); err != nil || who != "n2" {
		t.Fatalf("dial after the failover reached %q, %v; want n2", who, err)
	}
}

// An active-active group without VIPs has one unit per member: every member
// owns one, DNS answers every owner's address, and a dead member's unit
// moves to the survivor and comes back (failback) when it returns.
func TestActiveActiveProcesses(t *testing.T) {
	c := start2(t, proctest.Spec{
		Top:        "dns: {listen: \":$DNS\", ttl: 1s}\n",
		GroupExtra: "    mode: active-active\n    failback: true\n    failback_delay: 1s\n    port: $SVC\n    dns: {name: web}\n",
	})
	both := []string{c.Addrs["n1"], c.Addrs["n2"]}
	slices.Sort(both)
	waitAA := func(node string, want []string) {
		t.Helper()
		testkit.WaitForState(t, liveness, fmt.Sprintf("DNS on %s to answer %v", node, want), func() (bool, string) {
			got, err := lookup(c, node)
			slices.Sort(got)
			return err == nil && slices.Equal(got, want), fmt.Sprintf("answers %v (%v)", got, err)
		})
	}
	for _, n := range []string{"n1", "n2", "w1"} {
		waitAA(n, both)
	}
	st, err := c.Status("w1")
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Groups[0]; len(g.Units) != 2 || len(g.Owners) != 2 {
		t.Fatalf("web: %+v, want two units with one owner each", g)
	}
	if out, err := c.Baton("w1", "status"); err != nil || !strings.Contains(out, "web[1]") || !strings.Contains(out, "active-active") {
		t.Fatalf("baton status does not list the units: %v\n%s", err, out)
	}
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	waitAA("w1", []string{c.Addrs["n1"]})
	waitAA("n1", []string{c.Addrs["n1"]})
	if err := c.Start("n2"); err != nil {
		t.Fatal(err)
	}
	// failback: true — n2 gets one unit back after failback_delay.
	waitAA("w1", both)
	waitAA("n2", both)
	st, _ = c.Status("w1")
	t.Logf("units after n2 returned: %+v", st.Groups[0].Units)
}
