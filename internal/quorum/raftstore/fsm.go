package raftstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/baton-ha/baton/internal/quorum"

	"github.com/hashicorp/raft"
)

// maxSnapshotBytes bounds what Restore reads: a quorum.State holds at most quorum.MaxEvents
// events and one record per group, so anything near this size is corrupt.
const maxSnapshotBytes = 64 << 20

// FSM is the raft.FSM (and raft.BatchingFSM) over quorum.State.
//
// Raft calls Apply, ApplyBatch, Snapshot and Restore from one goroutine;
// View may be called from any goroutine at any time and never blocks: it
// returns an immutable copy published after every apply and restore.
type FSM struct {
	// Logger receives warnings about log entries that cannot be applied.
	// nil discards them.
	Logger *slog.Logger
	// OnApply, if set, is called after every apply batch and every restore,
	// outside the FSM's lock, on raft's FSM goroutine. It must not block
	// (e.g. a non-blocking send on a channel of capacity 1): raft cannot apply
	// further entries until it returns.
	OnApply func()

	mu    sync.Mutex    // serialises mutations of state
	state *quorum.State // mutable; only touched with mu held
	view  atomic.Pointer[quorum.State]
	// batches counts Apply and ApplyBatch calls.
	batches atomic.Uint64
}

// NewFSM returns an FSM over an empty state.
func NewFSM(logger *slog.Logger) *FSM {
	f := &FSM{Logger: logger, state: quorum.NewState()}
	f.view.Store(f.state.Clone())
	return f
}

// View returns the latest applied state. The result is shared between callers
// and must not be mutated; it is replaced, never changed, by later applies.
func (f *FSM) View() *quorum.State {
	if v := f.view.Load(); v != nil {
		return v
	}
	// Zero-value FSM that has applied nothing yet.
	return quorum.NewState()
}

// Apply implements raft.FSM. It returns nil on success, quorum.ErrStale for a CAS
// command that lost a race, or another error for an entry that cannot be
// applied. It never panics on bad input.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.batches.Add(1)
	f.mu.Lock()
	resp := f.applyLocked(l)
	f.publishLocked()
	f.mu.Unlock()
	f.notify()
	return resp
}

// ApplyBatch implements raft.BatchingFSM: one published View per batch
// instead of one per entry.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	f.batches.Add(1)
	resps := make([]interface{}, len(logs))
	f.mu.Lock()
	for i, l := range logs {
		resps[i] = f.applyLocked(l)
	}
	f.publishLocked()
	f.mu.Unlock()
	f.notify()
	return resps
}

func (f *FSM) applyLocked(l *raft.Log) interface{} {
	if f.state == nil {
		f.state = quorum.NewState()
	}
	if l.Type != raft.LogCommand {
		// ApplyBatch also receives configuration entries. Ignoring them keeps
		// quorum.State identical whether or not raft batches.
		return nil
	}
	cmd, err := quorum.DecodeCommand(l.Data)
	if err != nil {
		// Skip the entry but account for it, so Index still tracks the log.
		if l.Index > f.state.Index {
			f.state.Index = l.Index
		}
		f.log().Warn("skipping undecodable log entry", "index", l.Index, "error", err)
		return err
	}
	err = f.state.Apply(l.Index, cmd)
	switch {
	case err == nil:
	case errors.Is(err, quorum.ErrStale):
		f.log().Debug("stale command", "index", l.Index, "group", cmd.Group, "op", cmd.Op)
	default:
		f.log().Warn("skipping log entry", "index", l.Index, "group", cmd.Group, "error", err)
	}
	return err // a nil error becomes a nil interface{}
}

// Batches counts the apply calls raft made (each one batch of committed
// entries, or a single entry).
func (f *FSM) Batches() uint64 { return f.batches.Load() }

// publishLocked replaces the view with a copy of the current state.
func (f *FSM) publishLocked() { f.view.Store(f.state.Clone()) }

func (f *FSM) notify() {
	if f.OnApply != nil {
		f.OnApply()
	}
}

func (f *FSM) log() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger
}

// Snapshot implements raft.FSM. It only captures the current immutable view;
// encoding happens in Persist, concurrently with further applies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.View()}, nil
}

// Restore implements raft.FSM: it replaces the state with a JSON snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("read state snapshot: %w", err)
	}
	if len(b) > maxSnapshotBytes {
		return fmt.Errorf("state snapshot larger than %d bytes", maxSnapshotBytes)
	}
	s, err := quorum.UnmarshalState(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = s
	f.publishLocked()
	f.mu.Unlock()
	f.notify()
	return nil
}

type fsmSnapshot struct{ state *quorum.State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.state.Marshal()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist state snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

var _ raft.BatchingFSM = (*FSM)(nil)
