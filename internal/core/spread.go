package core

import (
	"cmp"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// Active-active groups: every VIP (or, without VIPs, every member slot) is a
// unit with its own owner, lease and epoch (Spec.Units), so failing one
// over is exactly the active-passive machinery. What is particular to them
// is where a unit goes: the leader spreads a group's units evenly over its
// healthy members (fewest units owned first, then the unit's home member),
// and with failback it rebalances a returning member with the fewest moves.

// spreadInputs fills in the Load and Home of an active-active unit's
// candidates.
func (n *Node) spreadInputs(now time.Duration, v *quorum.State, u *Group, cands []decide.Candidate) {
	if u.Parent == "" {
		return
	}
	load := n.unitLoad(now, v, u.Parent, u.Name)
	home := homeMember(u)
	for i := range cands {
		cands[i].Load, cands[i].Home = load[cands[i].Node], cands[i].Node == home
	}
}

// homeMember is the member a unit prefers when loads are equal: slot i goes
// to the i-th member by priority, so a cluster that starts together ends up
// evenly spread without any moves.
func homeMember(u *Group) string {
	ms := slices.Clone(u.Members)
	slices.SortStableFunc(ms, func(a, b Member) int { return cmp.Compare(b.Priority, a.Priority) })
	if len(ms) == 0 {
		return ""
	}
	return ms[u.Slot%len(ms)].Node
}

// unitLoad counts, per node, the units of group that it owns or is about to
// own (a pending assignment or handoff counts for its target), leaving out
// the unit except.
func (n *Node) unitLoad(now time.Duration, v *quorum.State, group, except string) map[string]int {
	load := map[string]int{}
	for _, u := range n.spec.UnitsOf(group) {
		if u.Name == except {
			continue
		}
		gs := v.Group(u.Name)
		owner := gs.Owner
		if gs.HandoffTo != "" {
			owner = gs.HandoffTo
		}
		if p := n.leadOf(u.Name).assign; p.to != "" && n.inFlight(p, gs.Epoch, now) {
			owner = p.to
		}
		if owner != "" {
			load[owner]++
		}
	}
	return load
}

// rebalance moves one unit of an active-active group with failback from its
// most loaded usable member to its least loaded one, when they differ by
// more than one unit and the receiver has been usable for failback_delay.
// Moving only from the fullest to the emptiest member, one unit at a time,
// reaches an even spread with the fewest moves. It waits while any unit of
// the group is unowned or changing hands.
func (n *Node) rebalance(now time.Duration, v *quorum.State, g *Group) {
	units := n.spec.UnitsOf(g.Name)
	if !g.Failback || len(units) == 0 {
		return
	}
	for _, u := range units {
		gs := v.Group(u.Name)
		if gs.Owner == "" || gs.HandoffTo != "" {
			return
		}
		if ls := n.leadOf(u.Name); n.inFlight(ls.assign, gs.Epoch, now) || n.inFlight(ls.handoff, gs.Epoch, now) {
			return
		}
	}
	cands := n.candidates(now, units[0])
	gl := n.leadOf(g.Name)
	n.trackUsable(now, gl, cands)
	load := n.unitLoad(now, v, g.Name, "")
	var from, to string
	for _, c := range cands {
		if !c.Usable() {
			continue
		}
		if from == "" || load[c.Node] > load[from] {
			from = c.Node
		}
		since, ok := gl.usableSince[c.Node]
		if ok && now-since >= g.FailbackDelay && (to == "" || load[c.Node] < load[to]) {
			to = c.Node
		}
	}
	if from == "" || to == "" || load[from]-load[to] <= 1 {
		return
	}
	// Prefer handing over a unit whose home is the receiver.
	var move *Group
	for _, u := range units {
		if v.Group(u.Name).Owner != from {
			continue
		}
		if move == nil || (homeMember(u) == to && homeMember(move) != to) {
			move = u
		}
	}
	if move == nil {
		return
	}
	gs := v.Group(move.Name)
	cmd := quorum.Command{Op: quorum.OpHandoff, Group: move.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Owner: to, Reason: quorum.ReasonFailback, TimeUnixMs: n.d.WallNow().UnixMilli(),
		Detail: "rebalancing active-active group " + g.Name}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		n.leadOf(move.Name).handoff = proposal{set: true, epoch: gs.Epoch, at: now}
		n.log.Info("rebalancing: asking an owner to hand a unit over", "group", g.Name, "unit", move.Name,
			"from", from, "to", to, "loads", load)
	}
}
