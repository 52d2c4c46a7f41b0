package core

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// Operator requests (switchover, maintenance, forced failover) run on the
// quorum leader. A refused request returns a *RequestError that wraps one of
// the kinds below; the API maps the kind to an HTTP status.

// Kinds of refused requests (test with errors.Is).
var (
	ErrUnknownGroup = errors.New("unknown group")
	ErrUnknownNode  = errors.New("unknown node")
	// ErrInvalid: the request cannot make sense (not a member, an
	// active-active group where a unit is needed).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request is refused in the group's current state.
	ErrConflict = errors.New("refused in the current state")
	// ErrNotLeader: only the quorum leader decides; ask it (the API forwards).
	ErrNotLeader = errors.New("not the quorum leader")
	// ErrUnavailable: the quorum could not take the proposal now; retry.
	ErrUnavailable = errors.New("quorum unavailable")
	// ErrTimeout: accepted, but not completed in time.
	ErrTimeout = errors.New("not completed in time")
)

// RequestError is a refused or failed operator request: Msg says what and
// why for a person, Kind is one of the Err* kinds above.
type RequestError struct {
	Kind error
	Msg  string
}

func (e *RequestError) Error() string { return e.Msg }

// Unwrap lets errors.Is find the kind.
func (e *RequestError) Unwrap() error { return e.Kind }

// Refuse builds a RequestError of kind with a formatted message.
func Refuse(kind error, format string, args ...any) error {
	return &RequestError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func (n *Node) notLeader() error {
	return Refuse(ErrNotLeader, "this node does not lead the quorum; retry")
}

// RequestHandoff validates and proposes a switchover of group to `to` (""
// picks the best healthy standby). Only the quorum leader can do it; the
// API forwards requests to it.
func (n *Node) RequestHandoff(now time.Duration, group, to, reason string) (from string, target string, epoch uint64, err error) {
	g := n.spec.Unit(group)
	if g == nil {
		if n.spec.Group(group) != nil {
			var names []string
			for _, u := range n.spec.UnitsOf(group) {
				names = append(names, u.Name)
			}
			return "", "", 0, Refuse(ErrInvalid, "group %q is active-active: switch one of its units over (%s)", group, strings.Join(names, ", "))
		}
		return "", "", 0, Refuse(ErrUnknownGroup, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return "", "", 0, n.notLeader()
	}
	gs := n.d.Quorum.View().Group(group)
	ls := n.leadOf(group)
	switch {
	case gs.Owner == "":
		return "", "", 0, Refuse(ErrConflict, "group %q has no owner to switch over from", group)
	case gs.HandoffTo != "":
		return "", "", 0, Refuse(ErrConflict, "group %q is mid-change: a handoff to %s is already pending", group, gs.HandoffTo)
	case n.inFlight(ls.assign, gs.Epoch, now):
		return "", "", 0, Refuse(ErrConflict, "group %q is mid-change: a new owner is being committed", group)
	}
	if n.releasedCount(group, gs.Epoch) > 0 && gs.Owner != n.name {
		if p := n.peers[gs.Owner]; p == nil || !n.alive(now, p) {
			v := n.d.Quorum.View()
			switch {
			case !n.maintenance(v, g):
				return "", "", 0, Refuse(ErrConflict, "group %q is mid-change: its owner %s is failing and Baton is failing it over", group, gs.Owner)
			case n.releasedCount(group, gs.Epoch) < n.major:
				return "", "", 0, Refuse(ErrConflict, "group %q: its owner %s is failing, but a quorum of voters still holds its lease; retry in %v",
					group, gs.Owner, n.timing.FailureTimeout)
			}
			// Maintenance pauses automatic failover, not the operator: the
			// owner's lease has ended for a quorum, so this is a failover to
			// the node asked for, under the same data policy.
			return n.maintenanceFailover(now, g, gs, to, reason)
		}
	}
	cands := n.candidates(now, g)
	if to == "" {
		to = decide.Best(without(cands, gs.Owner))
		if to == "" {
			return "", "", 0, Refuse(ErrConflict, "no healthy standby for group %q to switch over to", group)
		}
	}
	if _, ok := n.spec.Node(to); !ok {
		return "", "", 0, Refuse(ErrUnknownNode, "unknown node %q", to)
	}
	tc := candidate(cands, to)
	switch {
	case tc == nil:
		return "", "", 0, Refuse(ErrInvalid, "node %q is not a member of group %q", to, group)
	case to == gs.Owner:
		return "", "", 0, Refuse(ErrConflict, "node %q already owns group %q", to, group)
	case !tc.Alive:
		return "", "", 0, Refuse(ErrConflict, "node %q is not alive: cannot switch group %q to it", to, group)
	case !tc.Healthy:
		return "", "", 0, Refuse(ErrConflict, "node %q is unhealthy for group %q (its checks fail)", to, group)
	case !tc.Eligible:
		return "", "", 0, Refuse(ErrConflict, "node %q is not eligible for group %q (leaving, or its active hook failed recently)", to, group)
	}
	cmd := quorum.Command{Op: quorum.OpHandoff, Group: group, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Owner: to, Reason: reason, TimeUnixMs: n.d.WallNow().UnixMilli()}
	if err := n.d.Quorum.Propose(cmd); err != nil {
		return "", "", 0, Refuse(ErrUnavailable, "propose switchover: %v", err)
	}
	ls.handoff = proposal{set: true, epoch: gs.Epoch, at: now}
	return gs.Owner, to, gs.Epoch, nil
}

// maintenanceFailover assigns a group whose owner a quorum of voters has
// released to `to` ("" = the best usable member) while automatic failover is
// paused: what the leader would do without maintenance, aimed at one member.
func (n *Node) maintenanceFailover(now time.Duration, g *Group, gs quorum.GroupState, to, reason string) (string, string, uint64, error) {
	cands := n.candidates(now, g)
	if to == "" {
		to = decide.Best(without(cands, gs.Owner))
		if to == "" {
			return "", "", 0, Refuse(ErrConflict, "no usable member for group %q to fail over to (its owner %s is failing)", g.Name, gs.Owner)
		}
	}
	if _, ok := n.spec.Node(to); !ok {
		return "", "", 0, Refuse(ErrUnknownNode, "unknown node %q", to)
	}
	if candidate(cands, to) == nil {
		return "", "", 0, Refuse(ErrInvalid, "node %q is not a member of group %q", to, g.Name)
	}
	only := make([]decide.Candidate, len(cands))
	for i, c := range cands {
		if c.Node != to {
			c.Eligible = false
		}
		only[i] = c
	}
	act := decide.Decide(decide.Inputs{
		Now: now, Owner: gs.Owner, Epoch: gs.Epoch, Majority: n.major, Released: n.releasedCount(g.Name, gs.Epoch),
		GraceOver: true, Candidates: only,
	})
	if !act.Assign || act.Owner != to {
		why := act.Why
		if d := n.leadOf(g.Name).dataWhy; d != "" {
			why += " (sync policy: " + d + ")"
		}
		return "", "", 0, Refuse(ErrConflict, "cannot fail group %q over to %s: %s", g.Name, to, why)
	}
	if reason == "" {
		reason = quorum.ReasonSwitchover
	}
	cmd := quorum.Command{
		Op: quorum.OpAssign, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner, Owner: to,
		Reason: reason, TimeUnixMs: n.d.WallNow().UnixMilli(), Detail: "switchover during maintenance: " + act.Why,
	}
	n.dataAssign(g, gs, &cmd)
	if err := n.d.Quorum.Propose(cmd); err != nil {
		return "", "", 0, Refuse(ErrUnavailable, "propose failover: %v", err)
	}
	n.leadOf(g.Name).assign = proposal{set: true, epoch: gs.Epoch, at: now, to: to}
	n.log.Info("assigning group (switchover during maintenance)", "group", g.Name, "from", gs.Owner, "to", to, "epoch", gs.Epoch+1)
	return gs.Owner, to, gs.Epoch, nil
}

func candidate(cs []decide.Candidate, node string) *decide.Candidate {
	for i := range cs {
		if cs[i].Node == node {
			return &cs[i]
		}
	}
	return nil
}

func without(cs []decide.Candidate, node string) []decide.Candidate {
	out := make([]decide.Candidate, 0, len(cs))
	for _, c := range cs {
		if c.Node != node {
			out = append(out, c)
		}
	}
	return out
}

// SetMaintenance proposes maintenance on or off for a group ("" = the whole
// cluster). Leader only.
func (n *Node) SetMaintenance(group string, on bool) error {
	if group != "" && n.spec.Group(group) == nil {
		return Refuse(ErrUnknownGroup, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return n.notLeader()
	}
	if err := n.d.Quorum.Propose(quorum.Command{Op: quorum.OpMaintenance, Group: group, On: on}); err != nil {
		return Refuse(ErrUnavailable, "propose maintenance: %v", err)
	}
	return nil
}

// ForceFailover assigns a group whose owner is gone to `to` although the
// sync policy or max_lag would not allow it (baton failover
// --allow-data-loss). Leader only. The owner's lease must have been released
// by a quorum (the owner is silent): this never creates two owners.
func (n *Node) ForceFailover(now time.Duration, group, to string) (epoch uint64, err error) {
	g := n.spec.Unit(group)
	if g == nil {
		return 0, Refuse(ErrUnknownGroup, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return 0, n.notLeader()
	}
	gs := n.d.Quorum.View().Group(group)
	if gs.Owner != "" && n.releasedCount(group, gs.Epoch) < n.major {
		return 0, Refuse(ErrConflict, "group %q is owned by %s, whose lease a quorum still holds; use switchover (a live owner hands over without loss)", group, gs.Owner)
	}
	tc := candidate(n.candidates(now, g), to)
	switch {
	case tc == nil:
		return 0, Refuse(ErrInvalid, "node %q is not a member of group %q", to, group)
	case to == gs.Owner:
		return 0, Refuse(ErrConflict, "node %q already owns group %q", to, group)
	case !tc.Alive:
		return 0, Refuse(ErrConflict, "node %q is not alive", to)
	}
	cmd := quorum.Command{Op: quorum.OpAssign, Group: group, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner, Owner: to,
		Reason: quorum.ReasonManual, TimeUnixMs: n.d.WallNow().UnixMilli(),
		Detail: "forced by an operator with --allow-data-loss"}
	n.dataAssign(g, gs, &cmd)
	if g.Data != nil && cmd.PrimaryPos > cmd.PromotedPos {
		cmd.LostBytes = cmd.PrimaryPos - cmd.PromotedPos
		cmd.Detail += fmt.Sprintf(": up to %d bytes written on %s may be lost", cmd.LostBytes, gs.Owner)
	}
	if err := n.d.Quorum.Propose(cmd); err != nil {
		return 0, Refuse(ErrUnavailable, "propose failover: %v", err)
	}
	n.leadOf(group).assign = proposal{set: true, epoch: gs.Epoch, at: now, to: to}
	n.log.Warn("forced failover", "group", group, "from", gs.Owner, "to", to, "epoch", gs.Epoch+1)
	return gs.Epoch, nil
}
