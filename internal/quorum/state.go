// Package quorum is Baton's replicated cluster state (group owners, epochs,
// history), the commands that change it and the Quorum interface the core
// replicates it through. It does no I/O: package quorum/raftstore replicates
// it with hashicorp/raft in production, and the in-process harness (package
// sim) has an in-memory twin.
//
// The state is deliberately tiny. Raft only commits the *result* of an
// ownership decision (new owner, epoch+1); the lease clock that makes a
// decision safe runs on the voters (see docs/design.md), so a Raft election
// never sits in series with lease expiry.
package quorum

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// MaxEvents bounds the history kept in the replicated state.
const MaxEvents = 1000

// Reasons recorded with ownership changes.
const (
	ReasonInitial    = "initial"    // first owner of a group
	ReasonFailure    = "failure"    // previous owner lost its lease (silent to a quorum)
	ReasonShutdown   = "shutdown"   // previous owner handed off on SIGTERM
	ReasonCheck      = "check"      // previous owner's health checks failed
	ReasonSwitchover = "switchover" // operator asked for it
	ReasonFailback   = "failback"   // higher-priority member returned
	ReasonRelinquish = "relinquish" // owner gave the group up
	ReasonHook       = "hook"       // the new owner's active hook failed
	ReasonStart      = "start"      // the new owner's service did not become healthy within start_timeout
	ReasonManual     = "manual"     // forced by an operator (failover --to)
	ReasonReload     = "reload"     // a config reload removed the group or took it from its owner
	// ReasonSync marks a history entry that is not an ownership change: the
	// owner's set of synchronous standbys changed (data-aware groups).
	ReasonSync = "sync"
	// Two reasons only hooks see (BATON_REASON), for transitions that change
	// no ownership: ReasonStartup is the standby role reported when the agent
	// starts, ReasonHealth a member's checks starting to fail (fault) or
	// passing again (standby).
	ReasonStartup = "startup"
	ReasonHealth  = "health"
)

// GroupState is the replicated ownership record of one group.
type GroupState struct {
	Owner string `json:"owner"` // "" when nobody owns the group
	Epoch uint64 `json:"epoch"` // fencing token; grows with every change
	// SinceUnixMs is the wall-clock time of the last change (informational).
	SinceUnixMs int64 `json:"since_unix_ms"`
	// Maintenance pauses automatic failover for this group.
	Maintenance bool `json:"maintenance,omitempty"`
	// HandoffTo asks the owner of this epoch to hand the group to that node
	// (switchover, failback); "" when none is pending. Cleared by the next assign.
	HandoffTo     string `json:"handoff_to,omitempty"`
	HandoffReason string `json:"handoff_reason,omitempty"`
	// Sync lists the standbys known to be synchronous under this epoch. The
	// owner names exactly these (all of them) in its synchronous replication
	// setting before they are recorded here and after they are removed, so
	// every write it acknowledged is on each of them: in sync mode only they,
	// or the owner itself, may be promoted. Reset by every assignment.
	Sync []string `json:"sync,omitempty"`
	// SyncSeq is the owner's request number that Sync was recorded from
	// (OpSync applies only a higher one).
	SyncSeq uint64 `json:"sync_seq,omitempty"`
}

// Event is one ownership change, kept in the replicated history.
type Event struct {
	Seq        uint64 `json:"seq"`
	TimeUnixMs int64  `json:"time_unix_ms"`
	Group      string `json:"group"`
	Epoch      uint64 `json:"epoch"`
	From       string `json:"from"`
	To         string `json:"to"`
	Reason     string `json:"reason"`
	// DetectMs is how long the cluster took to notice the need for a change
	// (last heartbeat of the old owner → a quorum released its lease); 0 when
	// not measured (planned changes).
	DetectMs int64 `json:"detect_ms"`
	// DecideMs is the time from a quorum of releases to the proposal.
	DecideMs int64 `json:"decide_ms"`
	// TakeoverMs is how long the new owner took from learning of its election
	// to acting (lease acquired); reported by the new owner afterwards.
	TakeoverMs int64 `json:"takeover_ms"`
	// TakeoverRecorded says TakeoverMs was measured (0 ms is a valid value).
	TakeoverRecorded bool `json:"takeover_recorded"`
	// Detail is a human-readable note for operators.
	Detail string `json:"detail,omitempty"`
	// Data-aware groups: the old primary's last reported write position and
	// the promoted member's position at promotion (byte offsets, e.g.
	// PostgreSQL LSNs), and the bytes that may be lost with them (async mode:
	// written on the old primary, not yet on the new one).
	PrimaryPos  uint64 `json:"primary_pos,omitempty"`
	PromotedPos uint64 `json:"promoted_pos,omitempty"`
	LostBytes   uint64 `json:"maybe_lost_bytes,omitempty"`
	// Sync is the new synchronous standby set (Reason "sync" entries).
	Sync []string `json:"sync,omitempty"`
	// LostMeasured: LostBytes was measured on the old primary when it
	// rejoined (what it held that the new primary lacked), not estimated
	// from the positions last reported before the failover.
	LostMeasured bool `json:"lost_measured,omitempty"`
}

// Ownership reports whether the entry records a change of owner (and not,
// e.g., a change of the synchronous standby set).
func (e Event) Ownership() bool { return e.Reason != ReasonSync }

// State is the replicated state machine. It is mutated only through Apply,
// which is deterministic: every replica that applies the same commands in the
// same order holds the same State.
type State struct {
	Index  uint64                `json:"index"` // last applied command index (1-based)
	Groups map[string]GroupState `json:"groups"`
	Events []Event               `json:"events"`
	NextEv uint64                `json:"next_event"`
	// Maintenance pauses automatic failover cluster-wide.
	Maintenance bool `json:"maintenance,omitempty"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Groups: map[string]GroupState{}, NextEv: 1}
}

// Clone returns a deep copy, safe to hand to readers while the original moves on.
func (s *State) Clone() *State {
	c := &State{Index: s.Index, NextEv: s.NextEv, Maintenance: s.Maintenance, Groups: make(map[string]GroupState, len(s.Groups))}
	for k, v := range s.Groups {
		c.Groups[k] = v
	}
	c.Events = append([]Event(nil), s.Events...)
	return c
}

// Group returns the ownership record of a group (zero value if never owned).
func (s *State) Group(name string) GroupState { return s.Groups[name] }

// GroupNames returns the names of groups present in the state, sorted.
func (s *State) GroupNames() []string {
	names := make([]string, 0, len(s.Groups))
	for k := range s.Groups {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Command ops.
const (
	OpAssign      = "assign"      // compare-and-set ownership of a group to Owner at ExpectEpoch+1
	OpHandoff     = "handoff"     // ask the owner of ExpectEpoch to hand the group to Owner (Reason says why)
	OpMaintenance = "maintenance" // set maintenance On for Group ("" = cluster-wide)
	OpAnnotate    = "annotate"    // record TakeoverMs on the event of (Group, Epoch)
	OpSync        = "sync"        // set the synchronous standbys (Sync) of the owner of ExpectEpoch
	OpDiverged    = "diverged"    // record LostBytes measured when the old primary of (Group, Epoch) rejoined
)

// Command is one replicated mutation.
type Command struct {
	Op          string   `json:"op"`
	Group       string   `json:"group"`
	ExpectEpoch uint64   `json:"expect_epoch"` // CAS: applies only if the group is at this epoch
	ExpectOwner string   `json:"expect_owner"` // CAS: ... and has this owner
	Owner       string   `json:"owner"`        // new owner ("" = nobody)
	Reason      string   `json:"reason"`
	TimeUnixMs  int64    `json:"time_unix_ms"`
	DetectMs    int64    `json:"detect_ms,omitempty"`
	DecideMs    int64    `json:"decide_ms,omitempty"`
	Detail      string   `json:"detail,omitempty"`
	On          bool     `json:"on,omitempty"`
	Epoch       uint64   `json:"epoch,omitempty"`
	TakeoverMs  int64    `json:"takeover_ms,omitempty"`
	Sync        []string `json:"sync,omitempty"`
	PrimaryPos  uint64   `json:"primary_pos,omitempty"`
	PromotedPos uint64   `json:"promoted_pos,omitempty"`
	LostBytes   uint64   `json:"lost_bytes,omitempty"`
	SyncSeq     uint64   `json:"sync_seq,omitempty"`
}

// ErrBusy is returned by Apply for a handoff while another is pending.
var ErrBusy = errors.New("group is mid-change: a handoff is already pending")

// ErrStale is returned by Apply when a compare-and-set command no longer
// matches the state: someone else changed the group first. It is not a fault.
var ErrStale = errors.New("stale command: group changed since it was proposed")

// Encode serialises a command for the log.
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a Command holds only strings and integers
	}
	return b
}

// DecodeCommand parses a command from the log.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("decode command: %w", err)
	}
	return c, nil
}

// Apply applies one command at log index idx. It never panics on bad input:
// unknown ops and stale CAS commands return an error and leave the groups as
// they were (the index still advances, as for every log entry).
func (s *State) Apply(idx uint64, c Command) error {
	if idx > s.Index {
		s.Index = idx
	}
	switch c.Op {
	case OpAssign:
		g := s.Groups[c.Group]
		if g.Epoch != c.ExpectEpoch || g.Owner != c.ExpectOwner {
			return ErrStale
		}
		ev := Event{
			Seq: s.NextEv, TimeUnixMs: c.TimeUnixMs, Group: c.Group, Epoch: g.Epoch + 1,
			From: g.Owner, To: c.Owner, Reason: c.Reason, DetectMs: c.DetectMs, DecideMs: c.DecideMs, Detail: c.Detail,
			PrimaryPos: c.PrimaryPos, PromotedPos: c.PromotedPos, LostBytes: c.LostBytes,
		}
		s.NextEv++
		s.Groups[c.Group] = GroupState{Owner: c.Owner, Epoch: g.Epoch + 1, SinceUnixMs: c.TimeUnixMs, Maintenance: g.Maintenance}
		s.Events = append(s.Events, ev)
		if len(s.Events) > MaxEvents {
			s.Events = append([]Event(nil), s.Events[len(s.Events)-MaxEvents:]...)
		}
		return nil
	case OpHandoff:
		g := s.Groups[c.Group]
		if g.Epoch != c.ExpectEpoch || g.Owner != c.ExpectOwner || g.Owner == "" {
			return ErrStale
		}
		if g.HandoffTo != "" {
			return ErrBusy
		}
		g.HandoffTo, g.HandoffReason = c.Owner, c.Reason
		s.Groups[c.Group] = g
		return nil
	case OpMaintenance:
		if c.Group == "" {
			s.Maintenance = c.On
			return nil
		}
		g := s.Groups[c.Group]
		g.Maintenance = c.On
		s.Groups[c.Group] = g
		return nil
	case OpSync:
		g := s.Groups[c.Group]
		if g.Epoch != c.ExpectEpoch || g.Owner != c.ExpectOwner || g.Owner == "" {
			return ErrStale
		}
		if c.SyncSeq != 0 && c.SyncSeq <= g.SyncSeq {
			return ErrStale // superseded by a newer request of the owner
		}
		changed := !slices.Equal(g.Sync, c.Sync)
		g.Sync, g.SyncSeq = append([]string(nil), c.Sync...), c.SyncSeq
		s.Groups[c.Group] = g
		if !changed {
			return nil // a confirmation of the same set: nothing for the history
		}
		s.Events = append(s.Events, Event{Seq: s.NextEv, TimeUnixMs: c.TimeUnixMs, Group: c.Group, Epoch: g.Epoch,
			From: g.Owner, To: g.Owner, Reason: ReasonSync, Detail: c.Detail, Sync: g.Sync})
		s.NextEv++
		if len(s.Events) > MaxEvents {
			s.Events = append([]Event(nil), s.Events[len(s.Events)-MaxEvents:]...)
		}
		return nil
	case OpDiverged:
		for i := len(s.Events) - 1; i >= 0; i-- {
			if e := &s.Events[i]; e.Group == c.Group && e.Epoch == c.Epoch && e.Ownership() {
				if e.LostMeasured {
					return ErrStale
				}
				e.LostBytes, e.LostMeasured = c.LostBytes, true
				if c.Detail != "" {
					e.Detail += "; " + c.Detail
				}
				return nil
			}
		}
		return ErrStale
	case OpAnnotate:
		for i := len(s.Events) - 1; i >= 0; i-- {
			if e := &s.Events[i]; e.Group == c.Group && e.Epoch == c.Epoch && e.Ownership() {
				// The first measurement is the takeover: a later one comes
				// from an owner that restarted and resumed the same epoch
				// (it measures its re-acquisition, seconds later), reported
				// to a leader that had not annotated the epoch itself.
				if !e.TakeoverRecorded {
					e.TakeoverMs, e.TakeoverRecorded = c.TakeoverMs, true
				}
				return nil
			}
		}
		return ErrStale
	default:
		return fmt.Errorf("unknown command op %q", c.Op)
	}
}

// Marshal / Unmarshal are used for snapshots.
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// UnmarshalState restores a snapshot.
func UnmarshalState(b []byte) (*State, error) {
	s := NewState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("decode state snapshot: %w", err)
	}
	if s.Groups == nil {
		s.Groups = map[string]GroupState{}
	}
	return s, nil
}

// Quorum is what the agent needs from the replication layer. Implementations:
// Raft (hashicorp/raft over TLS, durable) and the in-memory twin in package sim.
//
// View, Leader and IsLeader never block. Propose never blocks on replication:
// the result is observed through a later View (commands are CAS, so a lost or
// duplicated proposal is harmless).
type Quorum interface {
	// View returns the latest applied state. Callers must not mutate it.
	View() *State
	// IsLeader reports whether this node currently leads and may decide:
	// its View already holds every entry committed before its term. (Raft
	// makes a node leader before it has applied those; raftstore's
	// DecidingLeader waits for a barrier.)
	IsLeader() bool
	// Leader returns the current leader's node name, "" if unknown.
	Leader() string
	// Propose submits a command; only the leader accepts (ErrNotLeader otherwise).
	Propose(c Command) error
}

// ErrNotLeader is returned by Propose on a follower.
var ErrNotLeader = errors.New("not the quorum leader")
