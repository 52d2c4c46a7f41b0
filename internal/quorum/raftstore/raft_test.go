package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/quorum"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger shows raft's logs with -v when BATON_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("BATON_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testNode is one member of a test cluster.
type testNode struct {
	*Raft
	changes atomic.Int64
}

func (n *testNode) close(t *testing.T) {
	t.Helper()
	if err := n.Close(); err != nil {
		t.Errorf("close %s: %v", n.id, err)
	}
}

// leader returns the single node that believes it leads, or nil.
func leader(nodes []*testNode) *testNode {
	var l *testNode
	for _, n := range nodes {
		if n.Role() == "leader" {
			if l != nil {
				return nil
			}
			l = n
		}
	}
	return l
}

func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, 5*time.Second, "a leader", func() bool {
		l = leader(nodes)
		if l == nil {
			return false
		}
		// Every live node must agree on it.
		for _, n := range nodes {
			if n.Role() != "shutdown" && n.Leader() != l.id {
				return false
			}
		}
		return true
	})
	return l
}

func waitGroup(t *testing.T, nodes []*testNode, group, owner string, epoch uint64) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, 5*time.Second, fmt.Sprintf("%s to see %s owned by %s at epoch %d", n.id, group, owner, epoch), func() bool {
			g := n.View().Group(group)
			return g.Owner == owner && g.Epoch == epoch
		})
	}
}

func fastTimers(cfg *RaftConfig) {
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
}

// inmemCluster starts n raft nodes over raft's in-memory transport, with
// in-memory stores.
func inmemCluster(t *testing.T, n int) []*testNode { return inmemClusterStores(t, n, false) }

// inmemClusterStores is inmemCluster; with onDisk, each node keeps its log in
// raft-boltdb under a temporary directory (fsync per write, as in production).
func inmemClusterStores(t *testing.T, n int, onDisk bool) []*testNode {
	t.Helper()
	return inmemClusterWith(t, n, onDisk, nil)
}

// inmemClusterWith is inmemClusterStores; tune, if set, changes every node's
// configuration last.
func inmemClusterWith(t *testing.T, n int, onDisk bool, tune func(*RaftConfig)) []*testNode {
	t.Helper()
	trans := make([]*raft.InmemTransport, n)
	var peers []Peer
	for i := range trans {
		addr, tr := raft.NewInmemTransport("")
		trans[i] = tr
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: string(addr)})
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	nodes := make([]*testNode, n)
	for i := range nodes {
		node := &testNode{}
		cfg := RaftConfig{
			NodeID:    peers[i].ID,
			Peers:     peers,
			Transport: trans[i],
			Logger:    testLogger(t),
			OnChange:  func() { node.changes.Add(1) },
		}
		if onDisk {
			cfg.DataDir = t.TempDir()
		}
		fastTimers(&cfg)
		if tune != nil {
			tune(&cfg)
		}
		r, err := OpenRaft(cfg)
		if err != nil {
			t.Fatalf("open %s: %v", cfg.NodeID, err)
		}
		node.Raft = r
		nodes[i] = node
		t.Cleanup(func() { node.close(t) })
	}
	return nodes
}

func TestRaftInmemCluster(t *testing.T) {
	nodes := inmemCluster(t, 3)
	l := waitLeader(t, nodes)

	for _, n := range nodes {
		if n == l {
			continue
		}
		if err := n.Propose(assign("web", "", 0, "n1")); !errors.Is(err, quorum.ErrNotLeader) {
			t.Fatalf("Propose on follower %s: got %v, want quorum.ErrNotLeader", n.id, err)
		}
		if err := n.Barrier(time.Second); !errors.Is(err, quorum.ErrNotLeader) {
			t.Fatalf("Barrier on follower %s: got %v, want quorum.ErrNotLeader", n.id, err)
		}
		if n.Role() != "follower" || n.IsLeader() {
			t.Fatalf("%s: role %s", n.id, n.Role())
		}
		if time.Since(n.LastContact()) > 5*time.Second {
			t.Fatalf("%s: last contact %v", n.id, n.LastContact())
		}
	}

	if err := l.Propose(assign("web", "", 0, "n1")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, nodes, "web", "n1", 1)
	// A stale duplicate is harmless.
	if err := l.Propose(assign("web", "", 0, "n2")); err != nil {
		t.Fatal(err)
	}
	if err := l.Propose(assign("web", "n1", 1, "n2")); err != nil {
		t.Fatal(err)
	}
	if err := l.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, nodes, "web", "n2", 2)
	for _, n := range nodes {
		if ev := n.View().Events; len(ev) != 2 {
			t.Fatalf("%s: %d events, want 2: %+v", n.id, len(ev), ev)
		}
		if n.changes.Load() == 0 {
			t.Fatalf("%s: OnChange never called", n.id)
		}
	}
	if s := l.Stats(); s["state"] != "Leader" {
		t.Fatalf("leader stats: %v", s)
	}
}

// Followers apply a commit about one round trip after the leader, not when
// raft's CommitTimeout next sends them the commit index (announceCommits):
// with a CommitTimeout of 10 s, they must still apply within 2 s, round
// after round.
func TestFollowersApplyACommitAtOnce(t *testing.T) {
	nodes := inmemClusterWith(t, 3, false, func(c *RaftConfig) { c.CommitTimeout = 10 * time.Second })
	l := waitLeader(t, nodes)
	prev := ""
	for epoch, owner := range []string{"n1", "n2", "n3", "n1"} {
		if err := l.Propose(assign("web", prev, uint64(epoch), owner)); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			waitFor(t, 2*time.Second, fmt.Sprintf("%s to apply epoch %d", n.id, epoch+1), func() bool {
				return n.View().Group("web").Epoch == uint64(epoch+1)
			})
		}
		prev = owner
	}
}

func TestRaftLeaderFailover(t *testing.T) {
	nodes := inmemCluster(t, 3)
	old := waitLeader(t, nodes)
	if err := old.Propose(assign("web", "", 0, old.id)); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, nodes, "web", old.id, 1)
	assigned := old.View().Index
	if idx, err := old.ReadIndex(context.Background()); err != nil || idx < assigned {
		t.Fatalf("ReadIndex on the leader = %d, %v; want at least the assignment's index %d", idx, err, assigned)
	}
	for _, n := range nodes {
		if n != old {
			if _, err := n.ReadIndex(context.Background()); !errors.Is(err, quorum.ErrNotLeader) {
				t.Fatalf("ReadIndex on follower %s: %v, want quorum.ErrNotLeader", n.id, err)
			}
		}
	}

	old.close(t)
	if old.Role() != "shutdown" {
		t.Fatalf("closed node role %q", old.Role())
	}
	if err := old.Propose(assign("web", old.id, 1, "")); !errors.Is(err, quorum.ErrNotLeader) {
		t.Fatalf("Propose after Close: %v", err)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	start := time.Now()
	nl := waitLeader(t, rest)
	t.Logf("new leader %s after %v", nl.id, time.Since(start))
	// The new leader decides only once its View holds what the old one
	// committed; a follower never does.
	waitFor(t, 5*time.Second, "the new leader to decide", nl.DecidingLeader)
	if got := nl.View().Index; got < assigned {
		t.Fatalf("deciding leader's View is at index %d, before the old leader's assignment at %d", got, assigned)
	}
	for _, n := range rest {
		if n != nl && n.DecidingLeader() {
			t.Fatalf("follower %s reports itself a deciding leader", n.id)
		}
	}
	// A new leader's read index covers what the old one committed: it passes a
	// barrier first, so its View holds the assignment before it answers.
	if idx, err := nl.ReadIndex(context.Background()); err != nil || idx < assigned || nl.View().Group("web").Owner != old.id {
		t.Fatalf("ReadIndex on the new leader = %d, %v (owner %q); want at least %d with the old assignment applied", idx, err, nl.View().Group("web").Owner, assigned)
	}

	if err := nl.Propose(quorum.Command{Op: quorum.OpAssign, Group: "web", ExpectOwner: old.id, ExpectEpoch: 1, Owner: nl.id, Reason: quorum.ReasonFailure}); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, rest, "web", nl.id, 2)
}

func TestRaftTransferLeadership(t *testing.T) {
	nodes := inmemCluster(t, 3)
	l := waitLeader(t, nodes)
	var to *testNode
	for _, n := range nodes {
		if n != l {
			to = n
			break
		}
	}
	if err := to.TransferLeadership(l.id); !errors.Is(err, quorum.ErrNotLeader) {
		t.Fatalf("transfer from a follower: got %v, want quorum.ErrNotLeader", err)
	}
	if err := l.TransferLeadership("nobody"); err == nil || !strings.Contains(err.Error(), `"nobody" is not a voter`) {
		t.Fatalf("transfer to unknown node: %v", err)
	}
	changes := to.changes.Load()
	if err := l.TransferLeadership(to.id); err != nil {
		t.Fatal(err)
	}
	if got := waitLeader(t, nodes); got != to {
		t.Fatalf("leader after transfer is %s, want %s", got.id, to.id)
	}
	waitFor(t, 5*time.Second, "OnChange after the leadership change", func() bool { return to.changes.Load() > changes })
	if err := to.Propose(assign("web", "", 0, to.id)); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, nodes, "web", to.id, 1)
}

func TestOpenRaftValidation(t *testing.T) {
	_, tr := raft.NewInmemTransport("a1")
	t.Cleanup(func() { tr.Close() })
	base := func() RaftConfig {
		return RaftConfig{NodeID: "n1", Peers: []Peer{{"n1", "a1"}, {"n2", "a2"}}, Transport: tr}
	}
	tests := []struct {
		name string
		mod  func(*RaftConfig)
		want string
	}{
		{"no node id", func(c *RaftConfig) { c.NodeID = "" }, "NodeID is required"},
		{"lease above heartbeat", func(c *RaftConfig) {
			c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, 200*time.Millisecond
		}, "LeaderLeaseTimeout (200ms) must not exceed HeartbeatTimeout (100ms)"},
		{"heartbeat above election", func(c *RaftConfig) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Second, 500*time.Millisecond, 100*time.Millisecond
		}, "HeartbeatTimeout (1s) must not exceed ElectionTimeout (500ms)"},
		{"no peers", func(c *RaftConfig) { c.Peers = nil }, "Peers is empty"},
		{"self missing", func(c *RaftConfig) { c.Peers = []Peer{{"n2", "a2"}} }, `NodeID "n1" is not in Peers`},
		{"duplicate id", func(c *RaftConfig) { c.Peers = append(c.Peers, Peer{"n2", "a3"}) }, `Peers[2]: duplicate ID "n2"`},
		{"duplicate addr", func(c *RaftConfig) { c.Peers = append(c.Peers, Peer{"n3", "a2"}) }, `Peers[2] (n3): duplicate Addr "a2"`},
		{"empty addr", func(c *RaftConfig) { c.Peers[1].Addr = "" }, "Peers[1] (n2): empty Addr"},
		{"self addr mismatch", func(c *RaftConfig) { c.Peers[0].Addr = "elsewhere" }, `peers entry "n1" has address "elsewhere"`},
		{"no secret", func(c *RaftConfig) { c.Transport, c.Bind, c.DataDir = nil, "127.0.0.1:0", t.TempDir() }, "Secret is required"},
		{"no bind", func(c *RaftConfig) { c.Transport, c.Secret = nil, []byte("s") }, "Bind is required"},
		{"wildcard advertise", func(c *RaftConfig) {
			c.Transport, c.Secret, c.Bind = nil, []byte("s"), "0.0.0.0:7946"
		}, `Advertise "0.0.0.0:7946" must be a specific IP address`},
		{"memory without transport", func(c *RaftConfig) {
			c.Transport, c.Secret, c.Bind = nil, []byte("s"), "127.0.0.1:0"
		}, "DataDir is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			tt.mod(&cfg)
			r, err := OpenRaft(cfg)
			if err == nil {
				r.Close()
				t.Fatalf("OpenRaft succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestPeerUnreachableLogsAreWarningsAndRare: while a peer restarts, raft
// complains on every retry at ERROR; Baton logs it as a warning at most once
// per peerErrorEvery per peer and message, and says how many it skipped.
func TestPeerUnreachableLogsAreWarningsAndRare(t *testing.T) {
	var buf bytes.Buffer
	l := newHclogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).Named("raft")
	for range 50 {
		l.Error("failed to heartbeat to", "peer", "10.0.0.2:7946", "error", "connection refused")
	}
	l.Error("failed to heartbeat to", "peer", "10.0.0.3:7946", "error", "connection refused")
	l.Error("something else broke", "error", "disk full")
	out := buf.String()
	if n := strings.Count(out, "failed to heartbeat to"); n != 2 {
		t.Fatalf("%d heartbeat failures logged, want one per peer:\n%s", n, out)
	}
	if strings.Contains(out, "level=ERROR msg=\"failed to heartbeat") || !strings.Contains(out, "level=ERROR msg=\"something else broke\"") {
		t.Fatalf("levels wrong:\n%s", out)
	}
}

// TestSetTimeouts: raft's timeouts change while it runs, and at the idle pace
// (2.5 × the leader lease, the profiles' rule) the cluster keeps a leader and
// commits; a heartbeat timeout below the lease is refused; back at the normal
// pace a dead leader is replaced. (Whether leadership is ever lost at the idle
// pace is a matter of timing on a loaded host, not checked here.)
func TestSetTimeouts(t *testing.T) {
	nodes := inmemCluster(t, 3)
	waitLeader(t, nodes)
	idle := 125 * time.Millisecond // fastTimers' lease is 50 ms
	for _, n := range nodes {
		if err := n.SetTimeouts(idle, idle); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
		if hb, el := n.Timeouts(); hb != idle || el != idle {
			t.Fatalf("%s: timeouts %v/%v after SetTimeouts(%v)", n.id, hb, el, idle)
		}
	}
	time.Sleep(time.Second)
	l := waitLeader(t, nodes)
	if err := l.Propose(assign("web", "", 0, "n1")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, nodes, "web", "n1", 1)
	if err := l.SetTimeouts(20*time.Millisecond, 20*time.Millisecond); err == nil {
		t.Fatal("a heartbeat timeout below the leader lease was accepted")
	}
	for _, n := range nodes {
		if err := n.SetTimeouts(50*time.Millisecond, 50*time.Millisecond); err != nil {
			t.Fatalf("%s: back to the normal pace: %v", n.id, err)
		}
	}
	l = waitLeader(t, nodes)
	l.close(t)
	var rest []*testNode
	for _, n := range nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	waitLeader(t, rest)
}

// TestBurstOfProposalsCommitsInBatches: the leader proposes one assignment per
// group in one pass (the owner of many groups died); raft takes the queued
// proposals together, so they commit and apply in a few batches instead of
// one disk write and one apply per group.
func TestBurstOfProposalsCommitsInBatches(t *testing.T) {
	nodes := inmemClusterStores(t, 3, true)
	l := waitLeader(t, nodes)
	const groups = 200
	before := l.fsm.Batches()
	for i := range groups {
		if err := l.Propose(assign(fmt.Sprintf("g%03d", i), "", 0, "n1")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range groups {
		waitGroup(t, nodes, fmt.Sprintf("g%03d", i), "n1", 1)
	}
	// At most 256 entries per batch; a few more when the leader loop wakes
	// before the proposer is done. One per proposal (or close) without it.
	if b := l.fsm.Batches() - before; b > groups/10 {
		t.Fatalf("%d proposals applied in %d batches on the leader: raft did not group them", groups, b)
	} else {
		t.Logf("%d proposals applied in %d batches on the leader", groups, b)
	}
}
