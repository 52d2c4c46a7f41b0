package core

import "time"

// When the shell calls Tick. A fixed tick every TickPeriod (25 ms in the
// default profile) woke every agent 40 times a second, settled or not; on an
// idle cluster those wake-ups were a third of its CPU. NextTick keeps that
// period while anything is in flux and otherwise wakes the node only for
// what it has to do at a known time:
//
//   - its next heartbeat;
//   - the instant an owned lease stops allowing it to act (expiry − guard),
//     exactly, where the fixed tick noticed it up to a tick late;
//   - the instant a voter may release a silent owner's lease (base + hold);
//   - and, at the latest, idleTick after the last tick, which bounds how late
//     everything else that Tick does on a timer can be noticed: a health
//     check that started failing, a failback delay that ran out, a
//     rebalance. Each is a liveness delay of at most idleTick, never a safety
//     matter: every rule Tick applies is the same, only when it runs moved.
//
// Events (a packet, an apply, a request) are handled when they arrive, as
// before; after each one the shell asks NextTick again.

// wakeCache is NextTick's last answer.
type wakeCache struct {
	valid    bool
	at       time.Duration // when it was computed
	lastTick time.Duration // n.lastTick then
	nextHB   time.Duration // n.nextHB then
	next     time.Duration
}

// NextTick returns when the shell must next call Tick, on this node's clock
// (it may be now or earlier: call Tick at once).
//
// The shell asks after every event, and the answer costs a pass over every
// unit (settled, the deadlines): with 200 groups and a few hundred packets a
// second that pass was a tenth of the agent's CPU. So an answer is reused
// for half a TickPeriod unless Tick ran or a heartbeat was sent since. What an event in that time
// can change is safe to notice late: acks only move an acting deadline
// later, a new acting deadline or release deadline lies a lease or a hold
// ahead, and the armed tick is never further than idleTick, far less than
// that; an event that unsettles the node gets its fast ticks from the next
// event or tick that asks again — at worst idleTick later, a liveness delay
// like the others above.
func (n *Node) NextTick(now time.Duration) time.Duration {
	if w := n.wake; w.valid && w.lastTick == n.lastTick && w.nextHB == n.nextHB && now >= w.at && now-w.at < TickPeriod(n.timing)/2 {
		return w.next
	}
	next := n.nextTick(now)
	n.wake = wakeCache{valid: true, at: now, lastTick: n.lastTick, nextHB: n.nextHB, next: next}
	return next
}

func (n *Node) nextTick(now time.Duration) time.Duration {
	// Heartbeats go out when due even between ticks (an owner whose lease
	// is at risk sends more often than TickPeriod: leaseAtRisk).
	fast := min(n.lastTick+TickPeriod(n.timing), n.nextHB)
	if !n.settled(now) {
		return fast
	}
	next := min(n.nextHB, n.lastTick+n.idleTick())
	due := func(at time.Duration) bool {
		if at <= now {
			return true // overdue although Tick ran: keep the fixed period, never spin
		}
		next = min(next, at)
		return false
	}
	for _, g := range n.members {
		if os := n.own[g.Name]; os.role == RoleActive && due(os.expiry-n.timing.LeaseGuard) {
			return fast
		}
	}
	if n.isVoter {
		for _, g := range n.groups {
			vs := n.vote[g.Name]
			if vs.viewOwner == "" || vs.viewOwner == n.name || vs.viewEpoch <= vs.gone() || vs.grantEpoch > vs.viewEpoch {
				continue // no lease of another node this voter could release (checkReleases)
			}
			if due(max(n.floor, vs.viewSince, vs.lastGrant) + n.hold) {
				return fast
			}
		}
	}
	return next
}

// idleTick is the longest gap between two ticks of a settled node: the quiet
// heartbeat interval, and at most half the stall threshold, so that a gap
// beyond that threshold still means the process was stopped or starved.
func (n *Node) idleTick() time.Duration {
	return max(min(max(TickPeriod(n.timing), n.timing.QuietHeartbeatInterval), n.stallThreshold()/2), TickPeriod(n.timing))
}

// settled reports whether nothing is in flux for this node, so that it may
// tick at the idle pace (NextTick): it runs, caught up, past the startup
// grace and any stall's distrust; every unit has an owner and no handoff
// pending; it owns only units it acts for and acts for no other; it claims
// no lease it failed to renew, relinquished or released none recently, and
// still repeats no change as news; as leader it has no proposal in flight;
// and no unit is a data group (whose sync and promotion policy runs on
// timers all the time, as for the quiet heartbeats).
func (n *Node) settled(now time.Duration) bool {
	t := n.timing
	if !n.started || !n.announced || n.fresh || n.leaving || now < n.startAt+t.StartupGrace ||
		now < n.floor+n.hold || now < n.fullUntil {
		return false
	}
	v := n.view()
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		if g.Data != nil || gs.Owner == "" || gs.HandoffTo != "" {
			return false
		}
		if vs := n.vote[g.Name]; vs != nil && (vs.releasing > 0 || vs.releasedMax > 0 && (vs.releasedMax >= gs.Epoch || now-vs.releasedAt < t.FailureTimeout)) {
			return false
		}
		if ug := n.gossip[g.Name]; ug != nil && (now-ug.ownerAt < n.gossipFor() || now-ug.statusAt < n.gossipFor()) {
			return false
		}
		if ls := n.lead[g.Name]; ls != nil && (n.pending(ls.assign, now) || n.pending(ls.handoff, now) || n.pending(ls.sync, now)) {
			return false
		}
	}
	for _, g := range n.members {
		os, gs := n.own[g.Name], v.Group(g.Name)
		owner := gs.Owner == n.name && gs.Epoch == os.epoch
		if os.unacked || (os.relinquished != 0 && os.relinquished >= gs.Epoch) || owner != (os.role == RoleActive) {
			return false
		}
	}
	return true
}

// pending reports whether the leader proposed p recently enough that it may
// still commit (whatever epoch it expected).
func (n *Node) pending(p proposal, now time.Duration) bool {
	return p.set && now-p.at < n.proposalTimeout()
}
