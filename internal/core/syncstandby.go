package core

import (
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
)

// Data-aware groups, the member's side: what the shell's driver reports, the
// owner's half of the synchronous-standby protocol, and a standby following
// the current owner. The core decides; the shell runs the driver operations
// it asks for (Deps.DataOp) and reports their outcome (DataOpDone).
//
// The protocol (sync: on | strict, one synchronous standby at a time, as in
// PostgreSQL's "ANY 1 (x)") keeps one invariant: every write the owner
// acknowledged is on the recorded synchronous standby, whenever one is
// recorded. The owner orders its two actions so that it holds:
//
//   - add X: name X in the database's setting first (SetSync [X]); only once
//     the database reports X synchronous — from then on every commit waits
//     for X — ask the leader to record S = {X};
//   - remove X (on only, after X was not synchronous for failure_timeout):
//     ask the leader to record S = {} first and keep naming X in the
//     database (commits keep waiting for X) until the removal is committed;
//     only then stop naming it.
//
// "Committed" is judged on the owner's own replica, never on gossip (which
// carries no set) and never on a guess: the owner numbers its requests
// (SyncSeq), the replicated state records the number with the set and
// refuses a lower one, and the owner stops naming X only once its replica
// shows its latest request recorded with X absent. Until then a request that
// still names X may be recorded at any moment.
//
// The leader promotes only a member of S (data.go), so a member missing an
// acknowledged write is never promoted. strict never removes X: commits wait.

// DataReport is what the shell last learned from a data-aware group's driver
// (one poll of its state).
type DataReport struct {
	Known bool   // the driver has answered at least once
	Role  string // primary | standby | stopped | unknown
	Pos   uint64 // write position (higher is newer)
	// Empty: the database is stopped and holds no data at all (a member that
	// never had a copy): following the owner starts with a full copy.
	Empty bool
	// Synchronous lists the standbys the database reports synchronous now,
	// Streaming the standbys connected to it now (primary only).
	Synchronous []string
	Streaming   []string
	// Unrelated: the data is not on the group's replication history (the
	// driver says why; the shell shows it in status).
	Unrelated bool
}

// DataOpKind names a driver operation the core asks for.
type DataOpKind int

// Driver operations the core asks for.
const (
	// OpSetSync: name Standbys as the synchronous standbys (Strict: with none,
	// commits wait instead of going asynchronous).
	OpSetSync DataOpKind = iota + 1
	// OpFollow: become a streaming standby of Primary (Bootstrap: take a
	// first copy of its data).
	OpFollow
)

// DataOp is one driver operation for the shell to run. Hand it back
// unchanged to DataOpDone.
type DataOp struct {
	Kind      DataOpKind
	Standbys  []string
	Strict    bool
	Primary   string
	Bootstrap bool
	gen       uint64 // the member's ownership generation the op belongs to
}

// dataMember is this member's record of one data-aware group.
type dataMember struct {
	rep DataReport
	// gen grows with every change of this node's role for the group, so the
	// outcome of an operation asked for under the previous role is ignored.
	gen uint64
	// promoted is the epoch whose promotion the shell reported finished.
	promoted uint64
	// Owner: the standbys the database was last set to, whether a SetSync is
	// in flight, and the recorded standby the database stopped reporting
	// synchronous (since when; whether that was logged).
	applied       []string
	applying      bool
	missing       string
	missingSince  time.Duration
	missingLogged bool
	// want is the synchronous standby set the owner asks the leader to record
	// (wantSet: it asks at all), sent in heartbeats; wantSeq numbers it.
	want    []string
	wantSet bool
	wantSeq uint64
	// Standby: the owner it last followed successfully, and the earliest
	// next attempt.
	following string
	followAt  time.Duration
	// Divergence: the newest position seen while primary, and what this old
	// primary held beyond its successor (bytes) when it lost the group at
	// divEpoch.
	lastPrim, diverged, divEpoch uint64
	// ownedEpoch is the epoch this member last became owner under.
	ownedEpoch uint64
}

// becameOwner starts the owner's half for epoch and returns the standbys the
// shell names when it promotes the database (Transition.Sync): for a new
// epoch, the set recorded for it (sync), afresh.
//
// For the epoch it already acted under — its lease lapsed (a stall, lost
// acks) and came back without a new epoch — a request it made before the
// lapse may still be recorded at any moment: the leader may hold it, or have
// proposed it, from a status sent before. So nothing named since stays
// unnamed: the database keeps naming what it last named as well as the
// record, and the requests' numbering goes on. Starting afresh here named
// only the record, went asynchronous, and the request still in flight then
// recorded a standby that missed the writes acknowledged meanwhile
// (TestSyncStandbyRandomFaults, seed 182 once release saves took time).
func (dm *dataMember) becameOwner(epoch uint64, sync []string) []string {
	dm.gen++
	dm.applying, dm.following, dm.missing = false, "", ""
	if epoch != 0 && epoch == dm.ownedEpoch {
		for _, s := range dm.applied {
			if !slices.Contains(sync, s) {
				sync = append(sync, s)
			}
		}
		dm.applied = sync
		return sync
	}
	dm.ownedEpoch, dm.applied = epoch, sync
	dm.want, dm.wantSet, dm.wantSeq = nil, false, 0
	return sync
}

// lostOwnership: the shell fences the database; a standby follows afresh.
func (dm *dataMember) lostOwnership() {
	dm.gen++
	dm.promoted, dm.following, dm.applying = 0, "", false
}

// followRetry is how long a standby waits before it retries following the
// owner after a failed attempt (one attempt at a time).
const followRetry = 5 * time.Second

// DataPolled hands the core a fresh report of a data-aware group's driver and
// runs the member's half of the protocol.
func (n *Node) DataPolled(now time.Duration, group string, r DataReport) {
	dm, g := n.data[group], n.spec.Unit(group)
	if dm == nil || g == nil {
		return
	}
	if r.Known && r.Role == "primary" {
		dm.lastPrim = max(dm.lastPrim, r.Pos)
	}
	dm.rep = r
	dm.wantSet = false
	if n.Role(group) == RoleActive {
		n.ownerSync(now, g, dm)
	} else {
		n.measureDivergence(g, dm)
		n.followOwner(now, g, dm)
	}
}

// DataPromoted reports that the shell finished promoting the database for
// epoch (it accepts writes under it).
func (n *Node) DataPromoted(now time.Duration, group string, epoch uint64) {
	if dm := n.data[group]; dm != nil && n.Role(group) == RoleActive && n.view().Group(group).Epoch == epoch {
		dm.promoted = epoch
	}
}

// DataOpDone reports the outcome of an operation the core asked for.
func (n *Node) DataOpDone(now time.Duration, group string, op DataOp, err error) {
	dm := n.data[group]
	if dm == nil || op.gen != dm.gen {
		return // asked for under a role this node no longer has
	}
	switch op.Kind {
	case OpSetSync:
		dm.applying = false
		if err != nil {
			n.log.Error("setting synchronous standbys", "group", group, "standbys", op.Standbys, "err", err)
			return
		}
		dm.applied = op.Standbys
	case OpFollow:
		if err != nil {
			n.log.Error("following the primary failed; retrying", "group", group, "primary", op.Primary, "err", err, "retry_in", followRetry)
			return
		}
		dm.following, dm.followAt = op.Primary, now
	}
}

// ownerSync is the owner's half of the protocol (see the top of this file).
func (n *Node) ownerSync(now time.Duration, g *Group, dm *dataMember) {
	mode := g.syncMode()
	gs := n.view().Group(g.Name)
	if mode != "on" && mode != "strict" || dm.promoted != gs.Epoch {
		return
	}
	// The recorded set as this node's replica has it (gossip does not carry
	// it); nil while the replica has not yet applied this epoch, in which
	// case nothing it recorded for this epoch is known yet.
	rep := n.d.Quorum.View().Group(g.Name)
	var recorded []string
	if rep.Epoch == gs.Epoch && rep.Owner == n.name {
		recorded = rep.Sync
	}
	// confirmed: the replica shows this owner's latest request recorded, so
	// no request naming a standby that it lacks can still be recorded.
	confirmed := rep.Epoch == gs.Epoch && rep.Owner == n.name && rep.SyncSeq >= dm.wantSeq
	reported := dm.rep.Synchronous
	var setting, want []string
	switch {
	case len(recorded) > 0:
		x := recorded[0]
		setting, want = []string{x}, []string{x}
		if slices.Contains(reported, x) {
			dm.missing = ""
			break
		}
		if dm.missing != x {
			dm.missing, dm.missingSince, dm.missingLogged = x, now, false
		}
		if mode == "on" && now-dm.missingSince >= n.timing.FailureTimeout {
			// Ask for its removal; the setting keeps naming it (writes wait)
			// until the removal is confirmed.
			want = []string{}
			if !dm.missingLogged {
				dm.missingLogged = true
				n.log.Warn("synchronous standby lost: asking to drop it; replication becomes asynchronous (sync: on)", "group", g.Name, "standby", x)
			}
		}
	default:
		// Nobody recorded: name the first streaming standby in member order,
		// and ask for it to be recorded once the database reports it
		// synchronous under that setting.
		want = []string{}
		for _, m := range g.Members {
			if m.Node != n.name && slices.Contains(dm.rep.Streaming, m.Node) {
				setting = []string{m.Node}
				if slices.Equal(dm.applied, setting) && slices.Contains(reported, m.Node) {
					want = setting
				}
				break
			}
		}
	}
	// Never stop naming a standby that may be recorded: only a confirmed
	// record without it lets the setting move on.
	if len(dm.applied) > 0 && !slices.Equal(setting, dm.applied) && !(confirmed && !slices.Contains(recorded, dm.applied[0])) {
		setting = dm.applied
	}
	if !slices.Equal(setting, dm.applied) && !dm.applying {
		dm.applying = true
		n.d.DataOp(g.Name, DataOp{Kind: OpSetSync, Standbys: setting, Strict: mode == "strict", gen: dm.gen})
	}
	if !dm.wantSet && dm.wantSeq == 0 || !slices.Equal(want, dm.want) {
		dm.wantSeq = max(dm.wantSeq, rep.SyncSeq) + 1
	}
	dm.want, dm.wantSet = want, true
}

// followOwner keeps a standby streaming from the group's current owner once
// that owner's database is primary; a returning old primary is rewound by
// the driver's Follow.
func (n *Node) followOwner(now time.Duration, g *Group, dm *dataMember) {
	owner := n.view().Group(g.Name).Owner
	if owner == "" || owner == n.name || now < dm.followAt {
		return
	}
	if dm.following == owner && dm.rep.Role == "standby" {
		return
	}
	if d, ok := n.memberData(g.Name, owner); !ok || d.DB != "primary" {
		return // not promoted yet
	}
	dm.followAt = now + followRetry
	n.log.Info("following the primary", "group", g.Name, "primary", owner, "bootstrap", dm.rep.Empty)
	n.d.DataOp(g.Name, DataOp{Kind: OpFollow, Primary: owner, Bootstrap: dm.rep.Empty, gen: dm.gen})
}

// measureDivergence: an old primary compares the newest position it reached
// as primary with its successor's position at promotion (from the history,
// once its view has the entry); what lies beyond is what the failover lost
// (async mode), reported to the leader for the history.
func (n *Node) measureDivergence(g *Group, dm *dataMember) {
	v := n.view()
	for i := len(v.Events) - 1; i >= 0; i-- {
		e := v.Events[i]
		if e.Group != g.Name || !e.Ownership() {
			continue
		}
		if e.From != n.name || e.To == n.name || e.PromotedPos == 0 || dm.divEpoch == e.Epoch || dm.lastPrim == 0 {
			return
		}
		var div uint64
		if dm.lastPrim > e.PromotedPos {
			div = dm.lastPrim - e.PromotedPos
		}
		dm.lastPrim = 0
		dm.diverged, dm.divEpoch = div, e.Epoch
		if div > 0 {
			n.log.Warn("rejoining: this old primary holds writes the new primary lacks; the rewind discards them",
				"group", g.Name, "bytes", div, "epoch", e.Epoch, "new_primary", e.To)
		}
		return
	}
}

// addDataStatus puts the local database's report into a heartbeat.
func (n *Node) addDataStatus(g *Group, gst *cluster.GroupStatus, epoch uint64) {
	dm := n.data[g.Name]
	if dm == nil || !dm.rep.Known {
		return
	}
	gst.DB, gst.Pos = dm.rep.Role, dm.rep.Pos
	gst.Div, gst.DivEpoch, gst.Unrelated = dm.diverged, dm.divEpoch, dm.rep.Unrelated
	if dm.wantSet && gst.Role == RoleActive {
		gst.Sync, gst.SyncSet, gst.SyncSeq, gst.Epoch = dm.want, true, dm.wantSeq, epoch
	}
}
