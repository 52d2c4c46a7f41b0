package process

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/quorum"
	"github.com/baton-ha/baton/internal/testkit"
)

// TestHistoryShowsSwitchoverAtOnceOnAnotherNode: `baton history` asked on a
// node that neither leads the quorum nor answered the switchover shows the
// switchover as soon as the switchover command returned. To make that
// node's replica lag for sure, it is frozen (SIGSTOP) while the switchover
// runs, and the history request is queued on its socket before it thaws: a
// read served from its replica as it is would still show the old owner. With
// --stale the same node answers from its own replica.
func TestHistoryShowsSwitchoverAtOnceOnAnotherNode(t *testing.T) {
	// Five voters, so that the frozen reader leaves four: the switchovers'
	// commits and leases do not hang on every remaining voter answering at once.
	c := start(t, proctest.Spec{Members: []string{"n1", "n2", "n3", "n4"}, Witness: "w1"})
	var leader string
	testkit.WaitFor(t, liveness, "a quorum leader", func() bool {
		st, err := c.Status("w1")
		leader = st.Leader
		return err == nil && leader != ""
	})
	// The reader is a node that is not the leader and takes no part in the
	// switchovers between n1 and n2; the switchover is asked on another one.
	reader := "w1"
	if leader == "w1" {
		reader = "n4"
	}
	asked := "n1"
	if leader == "n1" {
		asked = "n2"
	}
	t.Logf("quorum leader %s, switchovers asked on %s, history read on %s", leader, asked, reader)
	for i, to := range []string{"n2", "n1", "n2", "n1"} {
		if err := c.Signal(reader, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		out, err := c.Baton(asked, "switchover", "web", "--to", to)
		if err != nil {
			_ = c.Signal(reader, syscall.SIGCONT)
			t.Fatalf("switchover %d to %s: %v\n%s", i, to, err, out)
		}
		epoch := uint64(i + 2)
		if !strings.Contains(out, fmt.Sprintf("→ %s (epoch %d)", to, epoch)) {
			_ = c.Signal(reader, syscall.SIGCONT)
			t.Fatalf("switchover output %q, want → %s (epoch %d)", out, to, epoch)
		}
		// Queue the history request on the frozen reader, then thaw it.
		cmd := exec.Command(c.Bin, "history", "--json", "--api", c.APIs[reader])
		res := make(chan []byte, 1)
		errc := make(chan error, 1)
		go func() {
			out, err := cmd.CombinedOutput()
			res <- out
			errc <- err
		}()
		time.Sleep(100 * time.Millisecond)
		if err := c.Signal(reader, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		hist, err := <-res, <-errc
		if err != nil {
			t.Fatalf("history on %s: %v\n%s", reader, err, hist)
		}
		var ev []quorum.Event
		if err := json.Unmarshal(hist, &ev); err != nil {
			t.Fatalf("history --json: %v\n%s", err, hist)
		}
		if !slices.ContainsFunc(ev, func(e quorum.Event) bool { return e.Epoch == epoch && e.To == to }) {
			t.Fatalf("history on %s right after switchover %d (→ %s, epoch %d) returned does not show it:\n%s", reader, i, to, epoch, hist)
		}
	}
	out, err := c.Baton(reader, "history", "--stale")
	if err != nil || !strings.Contains(out, "switchover") {
		t.Fatalf("history --stale: %v\n%s", err, out)
	}
}
