package core

import (
	"slices"
	"strconv"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// A heartbeat goes to every peer each heartbeat_interval (and at once when
// the node's claims or its view of the owners change): the leases it claims,
// the leases it released or relinquished, its health and eligibility per
// member group (with its database's role and position for data groups), and
// the ownership it knows (gossip) — claims in every one, the rest when it
// changed or on a slow refresh (see sendHeartbeats). The transport splits a
// heartbeat that does not fit in one packet.

// claims lists the groups this node owns in its view and still wants.
func (n *Node) claims() []cluster.Claim {
	var out []cluster.Claim
	v := n.view()
	for _, g := range n.members {
		gs := v.Group(g.Name)
		os := n.own[g.Name]
		if gs.Owner == n.name && gs.Epoch > 0 && os.relinquished != gs.Epoch && !n.leaving {
			out = append(out, cluster.Claim{Group: g.Name, Epoch: gs.Epoch})
		}
	}
	return out
}

func (n *Node) claimKey() string {
	b := n.keyBuf[:0]
	for _, c := range n.claims() {
		b = append(b, c.Group...)
		b = append(b, '/')
		b = strconv.AppendUint(b, c.Epoch, 10)
		b = append(b, ',')
	}
	n.keyBuf = b
	return string(b)
}

// What a heartbeat repeats and what it sends only on change. Claims (and the
// acks they draw) renew leases, so every heartbeat carries every claim. The
// rest — the ownership gossip, each member group's status, and releases and
// relinquishments — goes out while it is news (for gossipFor after it
// changed: enough heartbeats that losing all of them is unlikely even at 30 %
// loss), while it still matters (a release or relinquishment of the current
// epoch), and otherwise once every refreshEvery, a slice of the units in
// each heartbeat; everything goes out while a peer needs it all (fullUntil:
// a peer that just started, or was silent until now). So an idle cluster of
// hundreds of groups sends a few packets per heartbeat, not dozens, and a
// receiver merges what arrives (it never takes a missing entry as news).
const refreshEvery = time.Second

func (n *Node) gossipFor() time.Duration {
	return max(n.timing.FailureTimeout, 4*n.timing.HeartbeatInterval)
}

// unitGossip is what this node last said about one unit, and since when.
type unitGossip struct {
	owner    cluster.Owner // Group, Node, Epoch, HandoffTo, HandoffReason: the change key
	ownerAt  time.Duration
	status   cluster.GroupStatus
	statusAt time.Duration
	seen     bool
}

// groupForget is how long a peer may leave a group unmentioned before this
// node takes it that the peer no longer has the group: two refresh rounds
// and a failure timeout, so a lost heartbeat or two never forgets one.
func (n *Node) groupForget() time.Duration {
	return 2*refreshEvery + n.timing.FailureTimeout
}

func sameStatus(a, b cluster.GroupStatus) bool {
	return a.Group == b.Group && a.Healthy == b.Healthy && a.Eligible == b.Eligible && a.Role == b.Role &&
		a.Epoch == b.Epoch && a.TakeoverMs == b.TakeoverMs && a.DB == b.DB && a.Pos == b.Pos &&
		slices.Equal(a.Sync, b.Sync) && a.SyncSet == b.SyncSet && a.SyncSeq == b.SyncSeq && a.Div == b.Div && a.DivEpoch == b.DivEpoch &&
		a.Unrelated == b.Unrelated
}

func (n *Node) gossipOf(group string) *unitGossip {
	ug := n.gossip[group]
	if ug == nil {
		ug = &unitGossip{}
		n.gossip[group] = ug
	}
	return ug
}

func (n *Node) sendHeartbeats(now time.Duration) {
	n.lastClaims, n.lastOwners = n.claimKey(), n.ownersKey()
	v := n.view()
	// The refresh rotates over refreshEvery at the current pace.
	rounds := max(1, int(refreshEvery/max(n.hbEvery, n.timing.HeartbeatInterval)))
	slot := int(n.hbCount % uint64(rounds))
	n.hbCount++
	full := now < n.fullUntil
	news := func(at time.Duration) bool { return now-at < n.gossipFor() }
	m := &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: int64(now), Claims: n.claims(), Leaving: n.leaving,
		Applied: v.Index, Fresh: now-n.startAt < n.gossipFor(), ConfigHash: n.spec.ConfigHash}
	inNews := m.Fresh || full // something this heartbeat tells as news
	if n.d.RaftRole != nil {
		m.RaftRole = n.d.RaftRole()
	}
	for i, g := range n.groups {
		gs := v.Group(g.Name)
		ug := n.gossipOf(g.Name)
		refresh := full || i%rounds == slot
		if gs.Epoch > 0 {
			key := cluster.Owner{Group: g.Name, Node: gs.Owner, Epoch: gs.Epoch, HandoffTo: gs.HandoffTo, HandoffReason: gs.HandoffReason}
			if !ug.seen || key != ug.owner {
				ug.owner, ug.ownerAt, ug.seen = key, now, true
			}
			inNews = inNews || news(ug.ownerAt)
			if refresh || news(ug.ownerAt) {
				o := key
				o.Prev = n.previousOwner(v, g.Name, gs.Epoch)
				o.Reason, _ = n.knownEpochReason(v, g.Name, gs.Epoch)
				m.Owners = append(m.Owners, o)
			}
		}
		if vs := n.vote[g.Name]; vs.releasedMax > 0 && (vs.releasedMax >= gs.Epoch || refresh) {
			m.Released = append(m.Released, cluster.Claim{Group: g.Name, Epoch: vs.releasedMax})
		}
		os := n.own[g.Name]
		if os == nil {
			continue // not a member
		}
		gst := cluster.GroupStatus{Group: g.Name, Healthy: n.healthy(g.Name), Eligible: n.eligible(now, g.Name), Role: os.role}
		if os.takeoverEpoch > 0 && os.takeoverEpoch == gs.Epoch {
			gst.Epoch, gst.TakeoverMs = os.takeoverEpoch, os.takeoverMs
		}
		n.addDataStatus(g, &gst, gs.Epoch)
		if !sameStatus(gst, ug.status) {
			ug.status, ug.statusAt = gst, now
		}
		inNews = inNews || news(ug.statusAt)
		if refresh || news(ug.statusAt) {
			m.Groups = append(m.Groups, gst)
		}
		if os.relinquished > 0 && (os.relinquished >= gs.Epoch || refresh) {
			m.Relinquished = append(m.Relinquished, cluster.Claim{Group: g.Name, Epoch: os.relinquished,
				LapsedMs: uint64(max(os.relLapsed.Milliseconds(), 0))})
			m.RelinquishReason = os.relReason
		}
	}
	if dropped := n.droppedClaims(); len(dropped) > 0 {
		m.Relinquished = append(m.Relinquished, dropped...)
		if m.RelinquishReason == "" {
			m.RelinquishReason = quorum.ReasonReload
		}
	}
	n.hbEvery = n.heartbeatEvery(now, v, len(m.Claims) > 0 || inNews)
	n.nextHB = now + n.hbEvery
	if n.leaseAtRisk(now) {
		n.nextHB = now + urgentEvery(n.timing)
	}
	// The node is a voter for its own claims too.
	if n.isVoter && len(m.Claims) > 0 {
		for _, c := range n.grant(now, n.name, m.Claims) {
			n.ackFrom(now, n.name, c, now)
		}
	}
	to := make([]string, 0, len(n.peers))
	for _, p := range n.voters {
		if p != n.name {
			to = append(to, p)
		}
	}
	for name := range n.peers {
		if !slices.Contains(n.voters, name) {
			to = append(to, name)
		}
	}
	if n.d.SendMany != nil {
		n.d.SendMany(to, m)
		return
	}
	for _, p := range to {
		n.d.Send(p, m)
	}
}

// heartbeatEvery is how long until the next regular heartbeat: the heartbeat
// interval for an owner (its lease needs it) and for every node while
// something is in flux; the quiet interval otherwise, when a heartbeat only
// says "alive and healthy". In flux (busy is true): it claims a lease, or its
// heartbeats still repeat a change as news (gossipFor, so that as many
// copies go out as before); or this node is leaving, relinquished or
// released a lease within the last failure timeout (a lost heartbeat carrying
// the release is repeated soon), a unit has no owner, or the cluster has a
// data group (the promotion policy reads positions and sync sets that move
// all the time; the randomized sync-standby simulation found a schedule that
// broke its invariant with quiet heartbeats on the nodes outside the group,
// so data clusters keep the full rate everywhere).
func (n *Node) heartbeatEvery(now time.Duration, v *quorum.State, busy bool) time.Duration {
	t := n.timing
	if t.QuietHeartbeatInterval <= t.HeartbeatInterval || busy || n.leaving {
		return t.HeartbeatInterval
	}
	for _, g := range n.members {
		if n.own[g.Name].relinquished != 0 && n.own[g.Name].relinquished >= v.Group(g.Name).Epoch {
			return t.HeartbeatInterval
		}
	}
	for _, g := range n.groups {
		if g.Data != nil || v.Group(g.Name).Owner == "" {
			return t.HeartbeatInterval
		}
		if vs := n.vote[g.Name]; vs != nil && vs.releasedMax > 0 && (vs.releasedMax >= v.Group(g.Name).Epoch || now-vs.releasedAt < t.FailureTimeout) {
			return t.HeartbeatInterval
		}
	}
	return t.QuietHeartbeatInterval
}
