package raftstore

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/baton-ha/baton/internal/quorum"

	"github.com/hashicorp/raft"
)

func cmdLog(idx uint64, c quorum.Command) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: c.Encode()}
}

func assign(group, from string, epoch uint64, to string) quorum.Command {
	return quorum.Command{Op: quorum.OpAssign, Group: group, ExpectOwner: from, ExpectEpoch: epoch, Owner: to, Reason: quorum.ReasonInitial, TimeUnixMs: 1000}
}

func TestFSMApplyAndCAS(t *testing.T) {
	f := NewFSM(nil)
	var applied atomic.Int32
	f.OnApply = func() { applied.Add(1) }

	if resp := f.Apply(cmdLog(3, assign("web", "", 0, "n1"))); resp != nil {
		t.Fatalf("first assign: got %v, want nil", resp)
	}
	v := f.View()
	if got := v.Group("web"); got.Owner != "n1" || got.Epoch != 1 {
		t.Fatalf("web after assign = %+v, want owner n1 epoch 1", got)
	}
	if v.Index != 3 || len(v.Events) != 1 || v.Events[0].To != "n1" || v.Events[0].Epoch != 1 {
		t.Fatalf("view after assign: index %d events %+v", v.Index, v.Events)
	}

	// A command proposed against epoch 0 lost the race: stale, no change.
	resp := f.Apply(cmdLog(4, assign("web", "", 0, "n2")))
	if err, _ := resp.(error); !errors.Is(err, quorum.ErrStale) {
		t.Fatalf("stale assign: got %v, want quorum.ErrStale", resp)
	}
	v2 := f.View()
	if got := v2.Group("web"); got.Owner != "n1" || got.Epoch != 1 {
		t.Fatalf("stale assign changed the group: %+v", got)
	}
	if v2.Index != 4 {
		t.Fatalf("stale assign: index %d, want 4", v2.Index)
	}

	if resp := f.Apply(cmdLog(5, assign("web", "n1", 1, "n2"))); resp != nil {
		t.Fatalf("takeover: got %v", resp)
	}
	if got := f.View().Group("web"); got.Owner != "n2" || got.Epoch != 2 {
		t.Fatalf("web after takeover = %+v, want owner n2 epoch 2", got)
	}
	// Views already handed out never change.
	if got := v.Group("web"); got.Owner != "n1" || v.Index != 3 {
		t.Fatalf("old view was mutated: %+v index %d", got, v.Index)
	}
	if n := applied.Load(); n != 3 {
		t.Fatalf("OnApply called %d times, want 3", n)
	}
}

func TestFSMBadEntriesSkipped(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("\x00\xffnot json")},
		{"wrong shape", []byte(`[1,2,3]`)},
		{"unknown op", quorum.Command{Op: "explode", Group: "web"}.Encode()},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFSM(nil)
			idx := uint64(10 + i)
			resp := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: tt.data})
			if err, ok := resp.(error); !ok || err == nil {
				t.Fatalf("got %v, want an error", resp)
			}
			v := f.View()
			if v.Index != idx {
				t.Fatalf("index %d, want %d", v.Index, idx)
			}
			if len(v.Groups) != 0 || len(v.Events) != 0 {
				t.Fatalf("bad entry changed state: %+v", v)
			}
		})
	}
}

func TestFSMIgnoresNonCommandEntries(t *testing.T) {
	f := NewFSM(nil)
	before := f.View()
	resp := f.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogConfiguration, Data: []byte("whatever")}})
	if len(resp) != 1 || resp[0] != nil {
		t.Fatalf("responses %v, want [nil]", resp)
	}
	if v := f.View(); v.Index != 0 || !reflect.DeepEqual(v, before) {
		t.Fatalf("configuration entry changed state: %+v", v)
	}
}

func TestFSMBatchMatchesSingle(t *testing.T) {
	logs := []*raft.Log{
		cmdLog(1, assign("web", "", 0, "n1")),
		{Index: 2, Type: raft.LogCommand, Data: []byte("junk")},
		cmdLog(3, assign("web", "", 0, "n2")), // stale
		cmdLog(4, assign("db", "", 0, "n2")),
		cmdLog(5, assign("web", "n1", 1, "")),
	}
	single, batch := NewFSM(nil), NewFSM(nil)
	var singleResp []interface{}
	for _, l := range logs {
		singleResp = append(singleResp, single.Apply(l))
	}
	batchResp := batch.ApplyBatch(logs)
	if !reflect.DeepEqual(single.View(), batch.View()) {
		t.Fatalf("batch state differs:\nsingle %+v\nbatch  %+v", single.View(), batch.View())
	}
	for i := range logs {
		if (singleResp[i] == nil) != (batchResp[i] == nil) {
			t.Fatalf("response %d: single %v, batch %v", i, singleResp[i], batchResp[i])
		}
	}
}

func TestFSMViewIsCached(t *testing.T) {
	f := NewFSM(nil)
	f.Apply(cmdLog(1, assign("web", "", 0, "n1")))
	if a, b := f.View(), f.View(); a != b {
		t.Fatal("View returned different pointers without an apply in between")
	}
	var zero FSM // usable without NewFSM
	if v := zero.View(); v == nil || v.Index != 0 {
		t.Fatalf("zero FSM view = %+v", v)
	}
	zero.Apply(cmdLog(7, assign("web", "", 0, "n1")))
	if zero.View().Group("web").Owner != "n1" {
		t.Fatal("zero FSM did not apply")
	}
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRoundTrip(t *testing.T) {
	f := NewFSM(nil)
	f.Apply(cmdLog(1, assign("web", "", 0, "n1")))
	f.Apply(cmdLog(2, assign("db", "", 0, "n2")))
	f.Apply(cmdLog(3, assign("web", "n1", 1, "n3")))

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after Snapshot must not leak into it.
	f.Apply(cmdLog(4, assign("db", "n2", 1, "n1")))
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}

	g := NewFSM(nil)
	var restored atomic.Int32
	g.OnApply = func() { restored.Add(1) }
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	v := g.View()
	if v.Index != 3 || v.Group("web").Owner != "n3" || v.Group("db").Owner != "n2" || len(v.Events) != 3 || v.NextEv != 4 {
		t.Fatalf("restored state: %+v", v)
	}
	if restored.Load() != 1 {
		t.Fatal("OnApply not called after Restore")
	}
	// The restored FSM keeps applying from there.
	if resp := g.Apply(cmdLog(4, assign("db", "n2", 1, "n1"))); resp != nil {
		t.Fatalf("apply after restore: %v", resp)
	}
	if !reflect.DeepEqual(g.View(), f.View()) {
		t.Fatalf("after restore+apply:\n got  %+v\n want %+v", g.View(), f.View())
	}

	if err := g.Restore(io.NopCloser(bytes.NewReader([]byte("{broken")))); err == nil {
		t.Fatal("restore of a corrupt snapshot succeeded")
	}
	if g.View().Index != 4 {
		t.Fatal("failed restore replaced the state")
	}
}

func FuzzFSMApply(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(assign("web", "", 0, "n1").Encode())
	f.Add([]byte(`{"op":"assign","group":"web","expect_epoch":18446744073709551615}`))
	f.Add([]byte(`{"op":"assign","group":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := NewFSM(nil)
		m.Apply(cmdLog(1, assign("web", "", 0, "n1")))
		m.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
		v := m.View()
		if v.Index != 2 {
			t.Fatalf("index %d, want 2", v.Index)
		}
		if g := v.Group("web"); g.Epoch < 1 || g.Epoch > 2 {
			t.Fatalf("web epoch %d after one entry", g.Epoch)
		}
	})
}
