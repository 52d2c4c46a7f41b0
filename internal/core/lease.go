package core

import (
	"fmt"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// The owner's side of the lease: the node the view names owner of a unit
// claims it in every heartbeat; its lease ends at s* + L, s* the send time of
// the newest heartbeat a majority of voters acked; it acts only while
// now < s* + L − guard and demotes itself when that no longer holds. A
// planned handoff (relinquish) stops acting first and only then tells the
// voters.

// ownState is this node's record for one unit it is a member of.
type ownState struct {
	epoch        uint64                   // epoch this node claims (0: none)
	acks         map[string]time.Duration // voter → send time of newest acked heartbeat
	expiry       time.Duration            // lease end on this node's clock
	role         string
	activeSince  time.Duration
	relinquished uint64 // epoch given up on purpose (0: none)
	relReason    string
	// relLapsed: for an epoch given up because this node had lost its lease,
	// how long it had not been acting by then (Claim.LapsedMs).
	relLapsed time.Duration
	// hookBlockUntil: after a failed active hook (or a takeover that did not
	// become healthy) the node is not eligible for the group until then, so
	// the next candidate is tried.
	hookBlockUntil time.Duration
	learnedAt      time.Duration // when this node learned it owns epoch
	// dataFloor, for a data-aware unit: the replica index this node must
	// have applied before it acts under epoch (refreshView, dataCaughtUp).
	dataFloor uint64
	// unacked: since when this node, owner of epoch in the view, has not
	// been acting (no majority-acked heartbeat within the lease), if set.
	unacked       bool
	unackedAt     time.Duration
	takeoverEpoch uint64
	takeoverMs    int64
}

func (n *Node) ackFrom(now time.Duration, voter string, c cluster.Claim, sentAt time.Duration) {
	os := n.own[c.Group]
	if os == nil || os.epoch != c.Epoch || sentAt > now {
		return
	}
	if sentAt > os.acks[voter] {
		os.acks[voter] = sentAt
	}
	var buf [16]time.Duration
	times := buf[:0]
	for _, t := range os.acks {
		times = append(times, t)
	}
	if exp, ok := decide.LeaseExpiry(times, n.major, n.timing.FailureTimeout); ok && exp > os.expiry {
		os.expiry = exp
		if os.role == RoleActive && n.d.OnActing != nil {
			n.d.OnActing(c.Group, os.expiry-n.timing.LeaseGuard)
		}
	}
}

// dataCaughtUp reports whether this node's replica holds what the cluster had
// committed when it learned it owns a data-aware unit's epoch: the owner
// names the recorded synchronous standbys when it promotes its database,
// and an owner that learned of its epoch from gossip — a restarted one
// regaining the epoch it held before, in particular — could otherwise name
// a set older than the record, and acknowledge writes the recorded standby
// never gets (TestSyncStandbyRandomFaults seed 348 over 1,500 seeds). The
// floor is the highest index its peers reported applied by then; the wait
// is a round trip or so (the leader announces every commit), and an owner
// whose replica cannot catch up gives the unit up after a lease
// (giveUpUnacked), as one that cannot act for any other reason.
func (n *Node) dataCaughtUp(g *Group, os *ownState) bool {
	return g.Data == nil || n.d.Quorum.View().Index >= os.dataFloor
}

// leaseAtRisk reports whether a lease this node acts under has gone without a
// majority's ack for longer than two heartbeat intervals, within two leases
// of that: its heartbeats then go out every urgentEvery instead of every
// interval.
//
// Why: under heavy loss a lease lapses when no heartbeat of a whole lease
// minus the guard (about 7 in the default profile) makes the round trip to
// any voter of a majority; at 30 % loss on every host's input a round trip
// to one voter fails half the time, and in the simulator 10 minutes of it
// cost 18–64 lapses and one or two false failovers. Sending four times as
// fast only while acks are missing costs nothing on a healthy network and
// leaves the lapse about as likely as four times as many losses in a row
// (twice as fast left the fast profile with lapses in the simulator). Safety is
// untouched: the lease still ends L after the newest acked send time.
//
// Only when acks are missing, not late: the extra heartbeats carry every
// unit, and with hundreds of them hurrying while a loaded CPU delays the
// acks added load to the load that delayed them — in bench/scale's kill of
// a 34-group owner under 5,000 probes a second, the per-group outage p99
// went from 2.9 s to 6 s. So an owner hurries only while the acks that do
// arrive come back within a quarter interval (loss, not load), and only
// for an acting lease, not for a new owner's first claim. An owner cut off
// from every voter stops hurrying after two leases (it gives the group up
// after one: giveUpUnacked).
func (n *Node) leaseAtRisk(now time.Duration) bool {
	if n.leaving {
		return false
	}
	t := n.timing
	if n.ackRTT > t.HeartbeatInterval/4 {
		return false
	}
	v := n.view()
	for _, g := range n.members {
		gs, os := v.Group(g.Name), n.own[g.Name]
		if gs.Owner != n.name || gs.Epoch == 0 || gs.Epoch != os.epoch || os.relinquished == gs.Epoch || os.expiry == 0 {
			continue
		}
		if age := now - (os.expiry - t.FailureTimeout); age > 2*t.HeartbeatInterval && age < 2*t.FailureTimeout {
			return true
		}
	}
	return false
}

// urgentEvery is the heartbeat interval of an owner whose lease is at risk.
func urgentEvery(t Timing) time.Duration { return max(t.HeartbeatInterval/4, time.Millisecond) }

func (n *Node) updateRoles(now time.Duration) {
	v := n.view()
	n.announceStart(now, v)
	for _, g := range n.members {
		os := n.own[g.Name]
		gs := v.Group(g.Name)
		mine := gs.Owner == n.name && gs.Epoch == os.epoch && os.relinquished != gs.Epoch && !n.leaving
		acting := mine && decide.Acting(now, os.expiry, n.timing.LeaseGuard) && n.dataCaughtUp(g, os)
		switch {
		case !mine || acting:
			os.unacked = false
		case !os.unacked:
			os.unacked, os.unackedAt = true, now
		}
		switch {
		case acting && os.role != RoleActive:
			os.role, os.activeSince = RoleActive, now
			if os.takeoverEpoch != gs.Epoch {
				os.takeoverEpoch, os.takeoverMs = gs.Epoch, max((now-os.learnedAt).Milliseconds(), 0)
			}
			var sync []string
			if dm := n.data[g.Name]; dm != nil {
				sync = dm.becameOwner(gs.Epoch, slices.Clone(gs.Sync))
			}
			prev := n.previousOwner(v, g.Name, gs.Epoch)
			n.log.Info("active", "group", g.Name, "epoch", gs.Epoch, "previous_owner", prev)
			if n.d.OnActing != nil {
				// The fence learns the deadline before the front doors go up.
				n.d.OnActing(g.Name, os.expiry-n.timing.LeaseGuard)
			}
			n.d.OnRole(Transition{Group: g.Name, Role: RoleActive, Epoch: gs.Epoch, PreviousOwner: prev, Reason: n.epochReason(v, g.Name, gs.Epoch), Sync: sync})
		case !acting && os.role == RoleActive:
			os.role = RoleStandby
			why, reason := "lease lost", quorum.ReasonFailure
			switch {
			case n.leaving || os.relinquished == os.epoch:
				why, reason = "relinquished", os.relReason
				if n.leaving {
					reason = quorum.ReasonShutdown
				}
			case gs.Owner != n.name:
				why, reason = "owner changed", n.epochReason(v, g.Name, gs.Epoch)
			}
			if dm := n.data[g.Name]; dm != nil {
				dm.lostOwnership()
			}
			n.log.Warn("standby", "group", g.Name, "epoch", gs.Epoch, "why", why, "reason", reason)
			n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: reason})
		}
	}
}

// abandonReleased gives up an epoch this node owns but can no longer hold:
// it is not acting (no valid lease), and voters reported releasing that
// epoch — they will never ack it again — so many that the voters still able
// to ack it (alive and not released; this node's own included) are fewer
// than a majority. Without this the group would stay ownerless: e.g. of
// three voters one is dead and one released the epoch while the owner
// stalled; the released one refuses its claims, and the majority of releases
// the leader needs for a new epoch would need the owner's own voter, which
// never releases its own lease. Relinquishing lets the leader assign a new
// epoch (to another member, or back to this one). It is safe: the node does
// not act. While a majority can still ack, the owner keeps claiming: the
// lease comes back without a new epoch.
func (n *Node) abandonReleased(now time.Duration) {
	v := n.view()
	for _, g := range n.members {
		os := n.own[g.Name]
		gs := v.Group(g.Name)
		if gs.Owner != n.name || gs.Epoch == 0 || os.epoch != gs.Epoch || os.relinquished == gs.Epoch || n.leaving ||
			decide.Acting(now, os.expiry, n.timing.LeaseGuard) {
			continue
		}
		ackable, released := 0, ""
		for _, voter := range n.voters {
			if voter == n.name {
				ackable++
				continue
			}
			switch p := n.peers[voter]; {
			case p == nil:
			case p.released[g.Name] >= gs.Epoch:
				released = voter
			case n.alive(now, p):
				ackable++
			}
		}
		if released != "" && ackable < n.major {
			n.log.Warn("giving up an epoch too many voters released (they never ack it again): asking for a new epoch",
				"group", g.Name, "epoch", gs.Epoch, "released_by", released, "voters_left", ackable, "majority", n.major)
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonFailure)
		}
	}
}

// giveUpUnacked relinquishes every unit this node owns in the view but has
// not been acting for during a whole lease (FailureTimeout) of heartbeats
// that no majority acknowledged, counted from the end of its lease, the start
// grace or the last stall, whichever is later. Such an owner sends but does
// not hear (a broken receive path, an asymmetric partition): the voters
// still hear its claims and keep granting them, so they would never release
// it and nobody else could take over until it heard again. It is not serving
// (its lease lapsed, its front doors are down), so giving the unit up only
// lets the voters release it at once and the quorum pick another member —
// or give the unit back to this node if no other can serve.
func (n *Node) giveUpUnacked(now time.Duration) {
	if now < n.startAt+n.timing.StartupGrace {
		return
	}
	v := n.view()
	for _, g := range n.members {
		os := n.own[g.Name]
		gs := v.Group(g.Name)
		if !os.unacked || gs.Owner != n.name || gs.Epoch != os.epoch || os.relinquished == gs.Epoch || n.leaving {
			continue
		}
		if now-max(os.unackedAt, n.floor) < n.timing.FailureTimeout {
			continue
		}
		n.log.Warn("no voter has acknowledged this owner's heartbeats for a whole lease; giving the group up so "+
			"another member can take over (can this node receive from its peers?)", "group", g.Name, "epoch", gs.Epoch)
		n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonFailure)
		os.unacked = false
		n.sendHeartbeats(now)
	}
}

// announceStart reports the initial standby role of every member group once
// the node knows the replicated state (so hooks get the real epoch and
// owner), or after the startup grace if the quorum is unreachable. A
// restarted node's own replica is stale until it hears a peer, whose
// heartbeat gossips the committed owners, so both are needed.
func (n *Node) announceStart(now time.Duration, v *quorum.State) {
	if n.announced {
		return
	}
	if now < n.startAt+n.timing.StartupGrace && (v.Index == 0 || !n.heardAnyPeer()) {
		return
	}
	n.announced = true
	for _, g := range n.members {
		if n.own[g.Name].role == RoleStandby {
			gs := v.Group(g.Name)
			n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: quorum.ReasonStartup})
		}
	}
}

// LeaseValid reports whether this node is acting for the group under a lease
// that has not ended at its time now. The harness checks that at no instant
// two nodes return true for one group.
func (n *Node) LeaseValid(group string, now time.Duration) bool {
	os := n.own[group]
	return os != nil && os.role == RoleActive && now < os.expiry
}

// ActingUntil is the time (on the node's clock) until which this node may act
// for a group, and whether it acts for it now: the deadline OnActing last
// reported. The shell uses it when a reload gives an owned group a VIP it did
// not have, to arm the fence before the address goes up.
func (n *Node) ActingUntil(group string) (time.Duration, bool) {
	os := n.own[group]
	if os == nil || os.role != RoleActive {
		return 0, false
	}
	return os.expiry - n.timing.LeaseGuard, true
}

// Role returns this node's role for a group ("" if it is not a member).
func (n *Node) Role(group string) string {
	if os := n.own[group]; os != nil {
		return os.role
	}
	return ""
}

// Leave starts a planned shutdown: every group this node owns is demoted at
// once and relinquished, so voters release without waiting out the lease and
// the leader hands the group to a successor. HandedOff tells when the
// successors are committed.
func (n *Node) Leave(now time.Duration) {
	n.leaving = true
	v := n.view()
	for _, g := range n.members {
		gs := v.Group(g.Name)
		if gs.Owner == n.name {
			if n.otherUsable(now, g) {
				n.log.Info("handing off", "group", g.Name, "epoch", gs.Epoch)
			} else {
				n.log.Warn("no other member can take the group now; leaving it to its lease (the leader assigns it once a member is usable)",
					"group", g.Name, "epoch", gs.Epoch)
			}
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonShutdown)
		}
	}
	n.updateRoles(now)
	n.sendHeartbeats(now)
}

// HandoffPending lists the groups a leaving node still waits for: those the
// replicated state still records as its own while another member could take
// them now. A group no other member can take is not waited for — its lease
// runs out on its own and the leader assigns it as soon as a member is usable
// — so an owner stopped with no successor exits at once instead of sitting
// out a timeout.
func (n *Node) HandoffPending(now time.Duration) []string {
	v := n.view()
	var out []string
	for _, g := range n.members {
		if v.Group(g.Name).Owner == n.name && n.otherUsable(now, g) {
			out = append(out, g.Name)
		}
	}
	return out
}

// HandedOff reports whether no group is owned by this node any more in the
// replicated state (the successor is committed).
func (n *Node) HandedOff() bool {
	v := n.view()
	for _, g := range n.members {
		if v.Group(g.Name).Owner == n.name {
			return false
		}
	}
	return true
}

// Relinquish gives up one group on purpose. The node stops acting first; only
// then do voters hear of it.
func (n *Node) Relinquish(now time.Duration, group, reason string) error {
	gs := n.view().Group(group)
	if gs.Owner != n.name {
		return fmt.Errorf("group %q: this node (%s) is not its owner", group, n.name)
	}
	n.relinquish(now, group, gs.Epoch, reason)
	n.updateRoles(now)
	n.sendHeartbeats(now)
	return nil
}

func (n *Node) relinquish(now time.Duration, group string, epoch uint64, reason string) {
	os := n.own[group]
	if os == nil {
		return
	}
	os.relinquished, os.relReason, os.relLapsed = epoch, reason, 0
	if reason == quorum.ReasonFailure && os.unacked {
		os.relLapsed = now - os.unackedAt // the history's detect time (leader.go)
	}
	os.expiry = 0
	// Stop acting (front doors down) before anyone hears of the relinquish.
	n.updateRoles(now)
	if n.isVoter {
		// Tell the voters first, then write this node's own release: the
		// others' releases (each written durably) run in parallel with ours
		// instead of after it, and the address is unanswered for one fsync
		// less. Ours is counted only once it is durable (release).
		n.sendHeartbeats(now)
		n.release(now, group, epoch, "relinquished by owner")
	}
}

// epochReason is the history's reason for the change to epoch of group, as
// far as this node knows it (initial for a first owner, failure otherwise).
func (n *Node) epochReason(v *quorum.State, group string, epoch uint64) string {
	if r, ok := n.knownEpochReason(v, group, epoch); ok {
		return r
	}
	if epoch <= 1 {
		return quorum.ReasonInitial
	}
	return quorum.ReasonFailure
}

// knownEpochReason is the reason of epoch's history entry, from this node's
// replica or, before it has the entry, from the gossip that told of it.
func (n *Node) knownEpochReason(v *quorum.State, group string, epoch uint64) (string, bool) {
	for i := len(v.Events) - 1; i >= 0; i-- {
		if e := v.Events[i]; e.Group == group && e.Epoch == epoch && e.Ownership() {
			return e.Reason, true
		}
	}
	if h, ok := n.hints[group]; ok && h.Epoch == epoch && h.Reason != "" {
		return h.Reason, true
	}
	return "", false
}
