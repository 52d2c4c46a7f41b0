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
// Save takes every release due at one instant (group → epoch) and writes them
// together: when a node owning many groups dies, its voters release all of
// them in one durable write, not one fsync per group in series.
type ReleaseStore interface {
	Load() (map[string]uint64, error)
	Save(releases map[string]uint64) error
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
func (m *MemReleases) Save(rels map[string]uint64) error {
	if m.M == nil {
		m.M = map[string]uint64{}
	}
	for g, e := range rels {
		m.M[g] = max(m.M[g], e)
	}
	return nil
}

// grant applies the voter's ack rule to claims from node `from` and returns the
// claims it acks, recording the promise.
func (n *Node) grant(now time.Duration, from string, claims []cluster.Claim) []cluster.Claim {
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

// onRelinquish: the owner of (group, epoch) gave it up and stopped acting, so
// this voter may release at once instead of waiting out the hold.
func (n *Node) onRelinquish(now time.Duration, from string, c cluster.Claim) {
	vs := n.vote[c.Group]
	if vs == nil || c.Epoch <= vs.releasedMax {
		return
	}
	if (c.Epoch == vs.viewEpoch && vs.viewOwner == from) || (c.Epoch == vs.grantEpoch && vs.grantOwner == from) {
		n.release(now, map[string]uint64{c.Group: c.Epoch}, "owner relinquished")
	}
}

func (n *Node) checkReleases(now time.Duration) {
	if !n.isVoter {
		return
	}
	var due map[string]uint64
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
			if due == nil {
				due = map[string]uint64{}
			}
			due[g.Name] = vs.viewEpoch
		}
	}
	if len(due) > 0 {
		n.release(now, due, "owner silent")
	}
}

// release gives up this voter's promises for every (group → epoch) in rels:
// one durable write, then one heartbeat that tells the others of all of them,
// and (on the quorum leader) one pass of the ownership policy, so that the
// death of a node owning many groups costs no more rounds than one group.
func (n *Node) release(now time.Duration, rels map[string]uint64, why string) {
	if err := n.d.Releases.Save(rels); err != nil {
		// Without a durable record we must not tell anyone: keep the promise.
		n.log.Error("cannot persist lease release; not releasing", "groups", slices.Sorted(maps.Keys(rels)), "err", err)
		return
	}
	for _, group := range slices.Sorted(maps.Keys(rels)) {
		vs, epoch := n.vote[group], rels[group]
		vs.releasedMax, vs.releasedAt = epoch, now
		n.log.Info("released lease", "group", group, "epoch", epoch, "owner", vs.viewOwner, "why", why)
	}
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
