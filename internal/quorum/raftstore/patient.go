package raftstore

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// patientTransport holds a leader's log replication to a peer it cannot
// reach until the peer is back, instead of failing the RPC.
//
// Why: hashicorp/raft backs a follower's log replication off after each
// failed RPC — 10 ms doubled per failure up to 10.24 s (replication.go:
// failureWait, maxFailureScale) — and resets the backoff only when an
// AppendEntries carrying the log succeeds. Its heartbeats to the same peer
// are capped at HeartbeatTimeout/2 and resume at once, so a standby that had
// been down for ten seconds or more looks healthy again while every entry
// for it waits out up to 10 s. In a three-node cluster the next commit that
// needs that standby — the failover when the owner dies next — waited for
// it: 2.2 s in a CI run of TestFailoverAfterAStandbyRestart, and a rolling
// upgrade restarts nodes exactly that way. Here an RPC that fails to connect
// is tried again as soon as a heartbeat to the same peer got through (or
// after patientRetry), so the failure count behind the backoff never grows
// while the peer is merely down.
//
// Delaying an RPC is safe in Raft: any message may be delayed, and a late
// one is judged by its term like any other. A wait ends, returning the
// connect error as before, once this node stopped leading in the term the
// request belongs to, or when the transport closes.
type patientTransport struct {
	patientInner
	// leads reports whether this node leads in a term; set once raft runs
	// (nil: no waiting).
	leads atomic.Pointer[func(term uint64) bool]

	mu      sync.Mutex
	poke    chan struct{}     // closed and replaced on any news
	reached map[string]uint64 // target → heartbeats that got through
	closed  bool
}

// patientInner is what raft sees of the transport underneath;
// *raft.NetworkTransport is one.
type patientInner interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// patientRetry bounds a wait without news: a peer that answers no heartbeat
// is tried again this often.
const patientRetry = time.Second

func newPatientTransport(inner patientInner) *patientTransport {
	return &patientTransport{
		patientInner: inner,
		poke:         make(chan struct{}),
		reached:      map[string]uint64{},
	}
}

// unreachable is an error from connecting to the peer (TCP or the TLS
// handshake): nothing of the request reached it.
type unreachable struct{ err error }

func (e *unreachable) Error() string { return e.err.Error() }
func (e *unreachable) Unwrap() error { return e.err }

func isUnreachable(err error) bool {
	var u *unreachable
	if errors.As(err, &u) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isHeartbeat is raft's own test for a heartbeat (net_transport.go).
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.Term != 0 && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

func (t *patientTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) {
		// Heartbeats keep raft's own capped backoff; one that gets through
		// ends the waits for its peer.
		err := t.patientInner.AppendEntries(id, target, args, resp)
		if err == nil {
			t.heard(target)
		}
		return err
	}
	return t.patiently(target, args.Term, func() error {
		return t.patientInner.AppendEntries(id, target, args, resp)
	})
}

func (t *patientTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress,
	args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	// A failed connect has read nothing from data, so the call can be
	// repeated.
	return t.patiently(target, args.Term, func() error {
		return t.patientInner.InstallSnapshot(id, target, args, resp, data)
	})
}

// patiently runs rpc until it connects, waiting between tries while this
// node still leads in term.
func (t *patientTransport) patiently(target raft.ServerAddress, term uint64, rpc func() error) error {
	for {
		t.mu.Lock()
		heard := t.reached[string(target)]
		t.mu.Unlock()
		err := rpc()
		if err == nil || !isUnreachable(err) {
			return err
		}
		if !t.wait(target, term, heard) {
			return err
		}
	}
}

// wait returns true once the peer at target answered more than heard
// heartbeats, or patientRetry passed; false if the request's term is over or
// the transport closed.
func (t *patientTransport) wait(target raft.ServerAddress, term uint64, heard uint64) bool {
	timer := time.NewTimer(patientRetry)
	defer timer.Stop()
	for {
		t.mu.Lock()
		closed, now, poke := t.closed, t.reached[string(target)], t.poke
		t.mu.Unlock()
		leads := t.leads.Load()
		switch {
		case closed || leads == nil || !(*leads)(term):
			return false
		case now > heard:
			return true
		}
		select {
		case <-poke:
		case <-timer.C:
			return true
		}
	}
}

// heard records a heartbeat that got through to target and wakes the waits.
func (t *patientTransport) heard(target raft.ServerAddress) {
	t.mu.Lock()
	t.reached[string(target)]++
	t.mu.Unlock()
	t.wake()
}

// wake makes every wait look again: raft's state or term may have changed.
func (t *patientTransport) wake() {
	t.mu.Lock()
	close(t.poke)
	t.poke = make(chan struct{})
	t.mu.Unlock()
}

// stopWaiting ends every wait for good; raft's Shutdown waits for the
// replication goroutines that may be in one.
func (t *patientTransport) stopWaiting() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.wake()
}

// follow makes the waits last only while ra leads in the request's term.
func (t *patientTransport) follow(ra *raft.Raft) {
	leads := func(term uint64) bool {
		return ra.State() == raft.Leader && ra.CurrentTerm() == term
	}
	t.leads.Store(&leads)
}

func (t *patientTransport) Close() error {
	t.stopWaiting()
	return t.patientInner.Close()
}
