package quorum

import (
	"errors"
	"slices"
	"testing"
)

// TestSyncRequestsAreOrdered: the owner's numbered requests for its
// synchronous standbys apply only in increasing order, so a late request
// never overrides a newer one, and a confirmation of an unchanged set leaves
// no history entry.
func TestSyncRequestsAreOrdered(t *testing.T) {
	s := NewState()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Apply(1, Command{Op: OpAssign, Group: "db", Owner: "n1", Reason: ReasonInitial}))
	sync := func(seq uint64, set ...string) error {
		return s.Apply(s.Index+1, Command{Op: OpSync, Group: "db", ExpectEpoch: 1, ExpectOwner: "n1", Sync: set, SyncSeq: seq})
	}
	must(sync(2, "n2"))
	if err := sync(1); !errors.Is(err, ErrStale) {
		t.Fatalf("a superseded request applied: %v", err)
	}
	if g := s.Group("db"); !slices.Equal(g.Sync, []string{"n2"}) || g.SyncSeq != 2 {
		t.Fatalf("after a stale request: %+v", g)
	}
	events := len(s.Events)
	must(sync(3, "n2"))
	if len(s.Events) != events || s.Group("db").SyncSeq != 3 {
		t.Fatalf("confirming the same set: %d events (want %d), %+v", len(s.Events), events, s.Group("db"))
	}
	must(sync(4))
	if e := s.Events[len(s.Events)-1]; e.Reason != ReasonSync || len(e.Sync) != 0 {
		t.Fatalf("the removal was not recorded in the history: %+v", e)
	}
	// A new epoch starts with no synchronous standby and no request number.
	must(s.Apply(s.Index+1, Command{Op: OpAssign, Group: "db", ExpectEpoch: 1, ExpectOwner: "n1", Owner: "n2", Reason: ReasonFailure}))
	if g := s.Group("db"); len(g.Sync) != 0 || g.SyncSeq != 0 {
		t.Fatalf("new epoch kept %+v", g)
	}
}

// TestAnnotateKeepsTheFirstTakeover: an owner that restarts and resumes its
// epoch measures its re-acquisition (seconds) and reports it to a leader
// that may not have annotated the epoch yet; the history keeps the first,
// real takeover time.
func TestAnnotateKeepsTheFirstTakeover(t *testing.T) {
	s := NewState()
	for _, c := range []Command{
		{Op: OpAssign, Group: "web", Owner: "n1", Reason: ReasonInitial},
		{Op: OpAssign, Group: "web", ExpectEpoch: 1, ExpectOwner: "n1", Owner: "n2", Reason: ReasonFailure},
		{Op: OpAnnotate, Group: "web", Epoch: 2, TakeoverMs: 18},
		{Op: OpAnnotate, Group: "web", Epoch: 2, TakeoverMs: 1776},
	} {
		if err := s.Apply(s.Index+1, c); err != nil {
			t.Fatal(err)
		}
	}
	if e := s.Events[len(s.Events)-1]; e.Epoch != 2 || e.TakeoverMs != 18 || !e.TakeoverRecorded {
		t.Fatalf("history entry %+v, want epoch 2 with takeover 18 ms", e)
	}
	if err := s.Apply(s.Index+1, Command{Op: OpAnnotate, Group: "web", Epoch: 3, TakeoverMs: 5}); !errors.Is(err, ErrStale) {
		t.Fatalf("annotating an epoch with no entry: %v", err)
	}
}
