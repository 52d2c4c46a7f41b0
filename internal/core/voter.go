package core

import (
	"maps"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/decide"
)

// The voter's duty (docs/design.md, "The quorum lease"): ack the claims of
// the committed owner, which promises not to release its lease for a hold H
// after the receipt; release a lease once its owner was silent for H
// (durably, before anyone hears of it), or at once when the owner
// relinquished it; never ack a released lease again.

// voteState is this voter's record for one unit.
type voteState struct {
	viewEpoch   uint64
	viewOwner   string
	viewSince   time.Duration // when this voter first saw (viewEpoch, viewOwner)
	grantEpoch  uint64
	grantOwner  string
	lastGrant   time.Duration
	releasedMax uint64
	releasedAt  time.Duration
}

// ReleaseStore persists the highest lease epoch this voter released per
// group. Save must be durable (fsync) before it returns: a voter that forgot a
// release after a restart could ack a lease the cluster already gave away.
type ReleaseStore interface {
	Load() (map[string]uint64, error)
	Save(group string, epoch uint64) error
}

// MemReleases is the in-memory twin of ReleaseStore (it survives a simulated
// restart because the harness keeps it).
type MemReleases struct{ M map[string]uint64 }

// Load implements ReleaseStore.
func (m *MemReleases) Load() (map[string]uint64, error) {
	out := maps.Clone(m.M)
	if out == nil {
		out = map[string]uint64{}
	}
	return out, nil
}

// Save implements ReleaseStore.
func (m *MemReleases) Save(g string, e uint64) error {
	if m.M == nil {
		m.M = map[string]uint64{}
	}
	m.M[g] = e
	return nil
}

// grant applies the voter's ack rule to claims from node `from` and returns the
// claims it acks, recording the promise.
func (n *Node) grant(now time.Duration, from string, claims []cluster.Claim) []cluster.Claim {
	if n.fresh && !n.caughtUp() {
		return nil
	}
	var acked []cluster.Claim
	v := n.view()
	for _, c := range claims {
		vs := n.vote[c.Group]
		if vs == nil {
			continue
		}
		gs := v.Group(c.Group)
		switch {
		case c.Epoch <= vs.releasedMax: // released: never again
		case c.Epoch < gs.Epoch || c.Epoch < vs.grantEpoch: // superseded
		case c.Epoch == gs.Epoch && gs.Owner != from: // not the owner of that epoch
		case c.Epoch == vs.grantEpoch && vs.grantOwner != "" && vs.grantOwner != from:
		default:
			// c.Epoch > gs.Epoch happens when this voter's view lags: only the
			// committed owner ever claims an epoch, so the claim itself is proof.
			vs.grantEpoch, vs.grantOwner, vs.lastGrant = c.Epoch, from, now
			acked = append(acked, c)
		}
	}
	return acked
}

// caughtUp reports whether a fresh voter's view has caught up with the
// cluster: it has heard a majority of voters (itself included) and applied
// at least what the most advanced of them had applied when it first heard
// that majority. A voter that lost its data_dir forgot its releases; until
// its replica holds every commit made before it came back, its view could
// still name an owner whose lease it released in its earlier life, and
// acking that owner would break its promise. Once caught up, the view names
// the current epochs, which an old owner's claim can no longer match.
func (n *Node) caughtUp() bool {
	if n.catchUpTo == 0 {
		heard, most := 1, uint64(0)
		for name, p := range n.peers {
			if p.heard && slices.Contains(n.voters, name) {
				heard++
				most = max(most, p.applied)
			}
		}
		if heard < n.major {
			return false
		}
		n.catchUpTo = max(most, 1)
	}
	if n.d.Quorum.View().Index < n.catchUpTo && n.catchUpTo > 1 {
		return false
	}
	n.fresh = false
	n.log.Info("caught up with the cluster; voting again", "applied", n.d.Quorum.View().Index)
	return true
}

// onRelinquish: the owner of (group, epoch) gave it up and stopped acting, so
// this voter may release at once instead of waiting out the hold.
func (n *Node) onRelinquish(now time.Duration, from string, c cluster.Claim) {
	vs := n.vote[c.Group]
	if vs == nil || c.Epoch <= vs.releasedMax {
		return
	}
	if (c.Epoch == vs.viewEpoch && vs.viewOwner == from) || (c.Epoch == vs.grantEpoch && vs.grantOwner == from) {
		n.release(now, c.Group, c.Epoch, "owner relinquished")
	}
}

func (n *Node) checkReleases(now time.Duration) {
	if !n.isVoter {
		return
	}
	for _, g := range n.groups {
		vs := n.vote[g.Name]
		if vs.viewOwner == "" || vs.viewEpoch <= vs.releasedMax || vs.grantEpoch > vs.viewEpoch {
			continue
		}
		if vs.viewOwner == n.name {
			// Our own lease: we release it only by relinquishing.
			continue
		}
		base := max(n.floor, vs.viewSince, vs.lastGrant)
		if decide.ReleaseDue(now, base, n.hold) {
			n.release(now, g.Name, vs.viewEpoch, "owner silent")
		}
	}
}

func (n *Node) release(now time.Duration, group string, epoch uint64, why string) {
	vs := n.vote[group]
	if err := n.d.Releases.Save(group, epoch); err != nil {
		// Without a durable record we must not tell anyone: keep the promise.
		n.log.Error("cannot persist lease release; not releasing", "group", group, "epoch", epoch, "err", err)
		return
	}
	vs.releasedMax, vs.releasedAt = epoch, now
	n.log.Info("released lease", "group", group, "epoch", epoch, "owner", vs.viewOwner, "why", why)
	n.sendHeartbeats(now)
	if n.d.Quorum.IsLeader() {
		n.leadAll(now)
	}
}

// releasedCount is how many voters (this one included) report having
// released (group, epoch) or a later epoch.
func (n *Node) releasedCount(group string, epoch uint64) int {
	c := 0
	for _, v := range n.voters {
		if v == n.name {
			if n.vote[group].releasedMax >= epoch {
				c++
			}
			continue
		}
		if p := n.peers[v]; p != nil && p.released[group] >= epoch {
			c++
		}
	}
	return c
}
