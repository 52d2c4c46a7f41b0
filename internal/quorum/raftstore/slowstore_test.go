package raftstore

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/baton-ha/baton/internal/quorum"
)

// Writes wait for the delay; reads do not.
func TestSlowStore(t *testing.T) {
	mem := raft.NewInmemStore()
	s := &slowStore{LogStore: mem, StableStore: mem, delay: func() time.Duration { return 80 * time.Millisecond }}
	for name, write := range map[string]func() error{
		"StoreLog":  func() error { return s.StoreLog(&raft.Log{Index: 1, Term: 1}) },
		"StoreLogs": func() error { return s.StoreLogs([]*raft.Log{{Index: 2, Term: 1}}) },
		"SetUint64": func() error { return s.SetUint64([]byte("k"), 7) },
		"Set":       func() error { return s.Set([]byte("j"), []byte("v")) },
	} {
		t0 := time.Now()
		if err := write(); err != nil {
			t.Fatal(name, err)
		}
		if took := time.Since(t0); took < s.delay() {
			t.Errorf("%s took %v, want ≥ %v", name, took, s.delay())
		}
	}
	if v, err := s.GetUint64([]byte("k")); err != nil || v != 7 {
		t.Errorf("GetUint64 = %d, %v", v, err)
	}
	if last, err := s.LastIndex(); err != nil || last != 2 {
		t.Errorf("LastIndex = %d, %v", last, err)
	}
}

// A leader whose disk is slow must not block whoever proposes: the agent's
// loop proposes, and while it waits it sends no heartbeats and renews no
// lease (nemesis seed 1 with 5 voters: a 1.6 s fsync delay on the quorum
// leader stalled its agent for 6.4 s). Proposals queue instead.
func TestProposeDoesNotWaitForASlowDisk(t *testing.T) {
	addr, tr := raft.NewInmemTransport("")
	cfg := RaftConfig{NodeID: "n1", Peers: []Peer{{ID: "n1", Addr: string(addr)}}, Transport: tr, Logger: testLogger(t),
		FsyncDelay: func() time.Duration { return 300 * time.Millisecond }}
	fastTimers(&cfg)
	r, err := OpenRaft(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for deadline := time.Now().Add(20 * time.Second); !r.IsLeader(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
	}
	start := r.View().Index
	var slowest time.Duration
	for i := range 6 {
		t0 := time.Now()
		if err := r.Propose(quorum.Command{Op: quorum.OpMaintenance, Group: "", On: i%2 == 0}); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("a proposal to a leader whose writes take 300 ms blocked the caller for %v", slowest)
	}
	// They still commit, in order.
	for deadline := time.Now().Add(20 * time.Second); r.View().Index < start+6 || r.View().Maintenance; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the last proposal (maintenance off) never applied: %+v", r.View())
		}
	}
}
