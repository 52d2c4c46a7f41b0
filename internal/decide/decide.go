// Package decide holds Baton's pure decision logic: lease arithmetic with a
// clock-drift bound, and who should own a group. Nothing here reads a clock,
// the network or the disk; callers pass time in, so every rule is tested with
// a fake clock and table-driven cases.
package decide

import (
	"slices"
	"time"
)

// Lease arithmetic. The owner dates its lease from the send time (its own
// clock) of the newest heartbeat that a majority of voters acked; a voter that
// acked at its own time r promises not to release that lease before
// r + VoterHold(L, ρ). With every clock's rate within a factor (1+ρ) of real
// time, the owner's L on its clock lasts at most L·(1+ρ) real time, and the
// voter's L·(1+ρ)² on its clock lasts at least L·(1+ρ) real time, so the
// promise always outlives the lease (docs/design.md has the full argument).

// VoterHold is how long (on the voter's clock) a voter keeps its promise after
// the last claim it acked.
func VoterHold(lease time.Duration, drift float64) time.Duration {
	f := (1 + drift) * (1 + drift)
	return time.Duration(float64(lease)*f) + 1
}

// LeaseExpiry returns when the owner's lease ends on its clock, given the send
// times (owner's clock) of the newest acked heartbeat per voter. ok is false
// when fewer than majority voters acked at all.
func LeaseExpiry(ackSentAt []time.Duration, majority int, lease time.Duration) (expiry time.Duration, ok bool) {
	if majority <= 0 || len(ackSentAt) < majority {
		return 0, false
	}
	var buf [16]time.Duration // on the stack for any real cluster: called for every acked claim
	s := append(buf[:0], ackSentAt...)
	slices.Sort(s)
	// The majority-th newest ack: at least `majority` voters acked at or after it.
	return s[len(s)-majority] + lease, true
}

// Acting reports whether an owner may act at now: it stops a guard interval
// before its lease ends, to leave time to take down its front doors.
func Acting(now, expiry, guard time.Duration) bool { return now < expiry-guard }

// ReleaseDue reports whether a voter may release a lease it has promised:
// base is the latest of its last ack to the owner, the moment it first saw the
// current epoch (a new owner gets a full hold to show up) and its own start or
// last detected stall (a voter that restarted or was frozen has forgotten or
// missed acks, so it waits a full hold before trusting silence).
func ReleaseDue(now, base, hold time.Duration) bool { return now >= base+hold }

// Majority is the number of voters needed for a quorum.
func Majority(voters int) int { return voters/2 + 1 }

// Candidate describes a member as the deciding node sees it.
type Candidate struct {
	Node     string
	Priority int
	Alive    bool // heard from within the failure timeout (or is the decider)
	Healthy  bool // its checks for the group pass
	Eligible bool // not leaving, not in maintenance, not relinquishing this group
	// Position orders data-aware candidates (higher is more up to date); 0 when unused.
	Position uint64
	// Load and Home spread the units of an active-active group: fewer units
	// owned already wins, then the member the unit is at home on. Both are
	// zero for an active-passive group.
	Load int
	Home bool
}

// Usable reports whether a candidate may be given the group.
func (c Candidate) Usable() bool { return c.Alive && c.Healthy && c.Eligible }

// Best picks the member to own a group: usable, then the most up-to-date data
// position, then highest priority, then the name as a stable tie-break. It
// returns "" when no member is usable.
func Best(cands []Candidate) string {
	best := -1
	for i, c := range cands {
		if !c.Usable() {
			continue
		}
		if best < 0 || better(c, cands[best]) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return cands[best].Node
}

func better(a, b Candidate) bool {
	if a.Position != b.Position {
		return a.Position > b.Position
	}
	if a.Load != b.Load {
		return a.Load < b.Load
	}
	if a.Home != b.Home {
		return a.Home
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Node < b.Node
}

// Inputs for deciding one active-passive group on the quorum leader.
type Inputs struct {
	Now        time.Duration
	Owner      string // current owner in the replicated state ("" = none)
	Epoch      uint64
	Released   int  // voters that released (Owner, Epoch)
	Majority   int  // voters needed
	Relinquish bool // the owner gave the group up on purpose
	GraceOver  bool // startup grace has passed (or every member is up)
	// Maintenance pauses automatic failover: only an owner that handed the
	// group off on purpose (switchover, shutdown) gets a successor.
	Maintenance bool
	// HandoffTo is the member a pending switchover or failback asked for.
	HandoffTo  string
	Candidates []Candidate
}

// Action is the outcome: nothing, or assign the group to Owner at Epoch+1.
type Action struct {
	Assign bool
	Owner  string
	Why    string // human-readable, for logs and status
}

// Decide returns what the leader should do for one group. It is the whole
// ownership policy for failures: a group with no owner gets the best usable
// member (after the startup grace); an owned group changes hands only once a
// majority of voters has released the owner's lease, so the old owner's lease
// has certainly ended.
func Decide(in Inputs) Action {
	if in.Owner == "" {
		if in.Maintenance {
			return Action{Why: "maintenance: automatic failover paused"}
		}
		if !in.GraceOver {
			return Action{Why: "startup grace: waiting for members to come up"}
		}
		if c := Best(in.Candidates); c != "" {
			return Action{Assign: true, Owner: c, Why: "group has no owner"}
		}
		return Action{Why: "no healthy eligible member"}
	}
	if in.Released < in.Majority {
		if in.HandoffTo != "" {
			return Action{Why: "handoff to " + in.HandoffTo + " pending: waiting for the owner to step down"}
		}
		return Action{Why: "owner's lease held"}
	}
	if !in.Relinquish {
		if in.Maintenance {
			return Action{Why: "maintenance: owner lost its lease but automatic failover is paused"}
		}
		if c := Best(in.Candidates); c != "" {
			return Action{Assign: true, Owner: c, Why: "owner silent: its lease was released by a quorum of voters"}
		}
		return Action{Why: "owner's lease released but no healthy eligible member"}
	}
	// The owner stepped down on purpose: the requested target if it is still
	// usable, else the best other member, else (never worse than nothing) the
	// old owner itself if it can still serve.
	for _, c := range in.Candidates {
		if c.Node == in.HandoffTo && c.Node != in.Owner && c.Usable() {
			return Action{Assign: true, Owner: c.Node, Why: "owner handed the group off to " + c.Node}
		}
	}
	if c := Best(without(in.Candidates, in.Owner)); c != "" {
		return Action{Assign: true, Owner: c, Why: "owner handed the group off"}
	}
	if c := Best(in.Candidates); c != "" {
		return Action{Assign: true, Owner: c, Why: "owner stepped down but no other member can serve; giving it back"}
	}
	// Nobody is healthy: an unhealthy owner that is still up and eligible
	// serves better than no owner at all.
	for _, c := range in.Candidates {
		if c.Node == in.Owner && c.Alive && c.Eligible {
			return Action{Assign: true, Owner: c.Node, Why: "no member is healthy; the owner keeps the group"}
		}
	}
	return Action{Why: "owner stepped down and no healthy eligible member is left"}
}

func without(cs []Candidate, node string) []Candidate {
	out := make([]Candidate, 0, len(cs))
	for _, c := range cs {
		if c.Node != node {
			out = append(out, c)
		}
	}
	return out
}
