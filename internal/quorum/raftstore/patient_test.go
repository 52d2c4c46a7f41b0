package raftstore

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"
)

// downPeer is a transport to one peer that refuses connections while down.
type downPeer struct {
	raft.Transport // unused methods: nil
	raft.WithPreVote

	mu    sync.Mutex
	down  bool
	calls int
	other error // returned instead, when set (an error after connecting)
}

var errRefused = &unreachable{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}

func (d *downPeer) AppendEntries(_ raft.ServerID, _ raft.ServerAddress, _ *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	switch {
	case d.other != nil:
		return d.other
	case d.down:
		return errRefused
	}
	resp.Success = true
	return nil
}

func (d *downPeer) Close() error { return nil }

func (d *downPeer) set(down bool) {
	d.mu.Lock()
	d.down = down
	d.mu.Unlock()
}

func (d *downPeer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// patientFixture is a patient transport over a downPeer, leading in term 3
// until leading is cleared.
func patientFixture() (*patientTransport, *downPeer, *atomic.Bool) {
	inner := &downPeer{down: true}
	pt := newPatientTransport(inner)
	var leading atomic.Bool
	leading.Store(true)
	leads := func(term uint64) bool { return leading.Load() && term == 3 }
	pt.leads.Store(&leads)
	return pt, inner, &leading
}

var (
	entries   = &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 7, PrevLogTerm: 3, LeaderCommitIndex: 7, Entries: []*raft.Log{{Index: 8}}}
	heartbeat = &raft.AppendEntriesRequest{Term: 3}
)

// send runs a replication RPC in the background and returns its outcome.
func send(pt *patientTransport, req *raft.AppendEntriesRequest) <-chan error {
	done := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		done <- pt.AppendEntries("n2", "n2:1", req, &resp)
	}()
	return done
}

// The fix for raft's replication backoff: an RPC to a peer that is down is
// held, not failed, and goes through once a heartbeat does — the caller
// (raft's replicateTo) never counts a failure.
func TestPatientHoldsReplicationUntilThePeerIsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt, inner, _ := patientFixture()
		done := send(pt, entries)
		time.Sleep(30 * time.Second) // a long outage: retried every patientRetry
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("replication to a down peer returned %v; it must wait while this node leads", err)
		default:
		}
		if n := inner.count(); n < 25 || n > 35 {
			t.Errorf("%d tries in 30 s; want one per patientRetry (%v)", n, patientRetry)
		}

		// The peer is back; the next heartbeat gets through and the held
		// RPC follows at once, without waiting out patientRetry.
		inner.set(false)
		var resp raft.AppendEntriesResponse
		start := time.Now()
		if err := pt.AppendEntries("n2", "n2:1", heartbeat, &resp); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("held RPC: %v", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("held RPC went through %v after the heartbeat; want at once", waited)
		}
	})
}

func TestPatientGivesUpWhenTheTermEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt, _, leading := patientFixture()
		done := send(pt, entries)
		time.Sleep(1500 * time.Millisecond)
		leading.Store(false)
		pt.wake() // what an observation of the state change does
		if err := <-done; !errors.Is(err, errRefused) {
			t.Fatalf("after the term ended: %v; want the connect error", err)
		}

		// A request from an older term is not held at all.
		old := *entries
		old.Term = 2
		leading.Store(true)
		if err := <-send(pt, &old); !isUnreachable(err) {
			t.Fatalf("older term: %v; want the connect error at once", err)
		}
	})
}

func TestPatientGivesUpOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt, _, _ := patientFixture()
		done := send(pt, entries)
		synctest.Wait()
		if err := pt.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !isUnreachable(err) {
			t.Fatalf("after Close: %v; want the connect error", err)
		}
	})
}

// Heartbeats keep raft's own backoff, and an error after connecting (the
// request may have reached the peer) is raft's to handle.
func TestPatientPassesHeartbeatsAndOtherErrorsThrough(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt, inner, _ := patientFixture()
		if err := <-send(pt, heartbeat); !isUnreachable(err) {
			t.Fatalf("heartbeat to a down peer: %v; want the connect error at once", err)
		}
		eof := errors.New("EOF")
		inner.mu.Lock()
		inner.other = eof
		inner.mu.Unlock()
		if err := <-send(pt, entries); !errors.Is(err, eof) {
			t.Fatalf("error after connecting: %v; want it returned as is", err)
		}
		if n := inner.count(); n != 2 {
			t.Errorf("%d tries; want 2 (nothing retried)", n)
		}
	})
}

func TestUnreachableErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errRefused, true},
		{&net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, true},
		{&unreachable{errors.New("raft tls handshake with x: bad certificate")}, true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, false},
		{errors.New("EOF"), false},
		{net.ErrClosed, false},
	} {
		if got := isUnreachable(tc.err); got != tc.want {
			t.Errorf("isUnreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// freeLoopbackAddrs returns n loopback addresses with ports free a moment ago.
func freeLoopbackAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	return addrs
}

// TestCommitAfterALongFollowerOutage is the CI failure of
// TestFailoverAfterAStandbyRestart at the raft level, over the real TLS
// transport: a follower is down long enough for raft's replication backoff
// to reach its 10.24 s ceiling, comes back, and then the other follower
// dies. The next commit needs the restarted one. Without the patient
// transport it waited out the backoff (2.2 s in CI, up to 10 s); with it,
// the entry goes through with the next heartbeat.
func TestCommitAfterALongFollowerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a 12 s outage")
	}
	addrs := freeLoopbackAddrs(t, 3)
	var peers []Peer
	for i, a := range addrs {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: a})
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	open := func(i int) *testNode {
		cfg := RaftConfig{
			NodeID: peers[i].ID, Peers: peers, Bind: addrs[i], DataDir: dirs[i],
			Secret: testSecret, Cluster: "test", Logger: testLogger(t),
		}
		fastTimers(&cfg)
		r, err := OpenRaft(cfg)
		if err != nil {
			t.Fatalf("open %s: %v", cfg.NodeID, err)
		}
		n := &testNode{Raft: r}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	nodes := []*testNode{open(0), open(1), open(2)}
	l := waitLeader(t, nodes)
	var followers []int
	for i, n := range nodes {
		if n != l {
			followers = append(followers, i)
		}
	}
	back, dies := followers[0], followers[1]

	nodes[back].close(t)
	// Entries keep coming while it is down, as the agents' do.
	for i, outage := 0, time.Now(); time.Since(outage) < 12*time.Second; i++ {
		if err := l.Propose(assign(fmt.Sprintf("g%d", i), "", 0, l.id)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	nodes[back] = open(back)
	waitFor(t, 5*time.Second, "the restarted follower to hear the leader", func() bool {
		return nodes[back].Leader() == l.id
	})
	nodes[dies].close(t)

	start := time.Now()
	if err := l.Propose(assign("web", "", 0, l.id)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 8*time.Second, "the commit that needs the restarted follower", func() bool {
		return l.View().Group("web").Owner == l.id
	})
	took := time.Since(start)
	t.Logf("commit after a 12 s follower outage took %v", took)
	if took > 2*time.Second {
		t.Fatalf("commit took %v after the follower came back; raft's replication backoff held it (want well under 2 s)", took)
	}
}
