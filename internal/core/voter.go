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
	// releasing: the highest epoch this voter decided to release whose
	// record is not durable yet (Deps.SaveReleases); it acks that epoch no
	// more, and nobody hears of the release before ReleasesSaved.
	releasing    uint64
	releasingWhy string
}

// gone is the highest epoch this voter released or is releasing: it never
// acks it again.
func (vs *voteState) gone() uint64 { return max(vs.releasedMax, vs.releasing) }

// ReleaseStore persists the highest lease epoch this voter released per
// group. Save records the releases of several groups at once (a node that
// dies takes all its groups with it: one write, not one per group) and must
// be durable (fsync) before it returns: a voter that forgot a release after
// a restart could ack a lease the cluster already gave away.
type ReleaseStore interface {
	Load() (map[string]uint64, error)
	Save(released map[string]uint64) error
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
func (m *MemReleases) Save(released map[string]uint64) error {
	if m.M == nil {
		m.M = map[string]uint64{}
	}
	for g, e := range released {
		m.M[g] = max(m.M[g], e)
	}
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
		case c.Epoch <= vs.gone(): // released (or being released): never again
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
// It returns the release to make (ok false: none).
func (n *Node) onRelinquish(from string, c cluster.Claim) (r releaseReq, ok bool) {
	vs := n.vote[c.Group]
	if vs == nil || c.Epoch <= vs.gone() {
		return r, false
	}
	if (c.Epoch == vs.viewEpoch && vs.viewOwner == from) || (c.Epoch == vs.grantEpoch && vs.grantOwner == from) {
		return releaseReq{c.Group, c.Epoch, "owner relinquished"}, true
	}
	return r, false
}

func (n *Node) checkReleases(now time.Duration) {
	if !n.isVoter {
		return
	}
	var due []releaseReq
	for _, g := range n.groups {
		vs := n.vote[g.Name]
		if vs.viewOwner == "" || vs.viewEpoch <= vs.gone() || vs.grantEpoch > vs.viewEpoch {
			continue
		}
		if vs.viewOwner == n.name {
			// Our own lease: we release it only by relinquishing.
			continue
		}
		base := max(n.floor, vs.viewSince, vs.lastGrant)
		if decide.ReleaseDue(now, base, n.hold) {
			due = append(due, releaseReq{g.Name, vs.viewEpoch, "owner silent"})
		}
	}
	n.releaseAll(now, due)
}

// releaseReq is one lease release to make.
type releaseReq struct {
	group string
	epoch uint64
	why   string
}

func (n *Node) release(now time.Duration, group string, epoch uint64, why string) {
	n.releaseAll(now, []releaseReq{{group, epoch, why}})
}

// releaseAll releases several leases with one durable write, one heartbeat
// and one round of leader decisions: the groups of a dead owner are released
// together, and doing it one by one (an fsync each) stalled the agent long
// enough for its own leases to lapse. With Deps.SaveReleases the write runs
// off the loop and ReleasesSaved finishes the job: a slow disk (an fsync of
// seconds) then delays only these releases, not the node's own heartbeats
// and acks — before, a voter that had to release while its disk was slow
// also stopped renewing the leases it owned and acking everyone else's.
func (n *Node) releaseAll(now time.Duration, reqs []releaseReq) {
	if len(reqs) == 0 {
		return
	}
	rel := make(map[string]uint64, len(reqs))
	for _, r := range reqs {
		rel[r.group] = max(rel[r.group], r.epoch)
		if vs := n.vote[r.group]; r.epoch > vs.releasing {
			vs.releasing, vs.releasingWhy = r.epoch, r.why
		}
	}
	if n.d.SaveReleases != nil {
		n.d.SaveReleases(rel)
		return
	}
	n.ReleasesSaved(now, rel, n.d.Releases.Save(rel))
}

// ReleasesSaved finishes releaseAll once the shell made released durable
// (err nil) or failed to: a durable release is final and announced at once;
// a failed one is forgotten (the promise is kept, the voter acks again) and
// decided again when it is due.
func (n *Node) ReleasesSaved(now time.Duration, released map[string]uint64, err error) {
	if err != nil {
		// Without a durable record we must not tell anyone: keep the promise.
		n.log.Error("cannot persist lease releases; not releasing", "groups", len(released), "err", err)
		for g, e := range released {
			if vs := n.vote[g]; vs != nil && vs.releasing <= e {
				vs.releasing = 0
			}
		}
		return
	}
	announce := false
	for g, e := range released {
		vs := n.vote[g]
		if vs == nil || e <= vs.releasedMax {
			continue // a reload removed the group, or a later save came first
		}
		vs.releasedMax, vs.releasedAt, announce = e, now, true
		if vs.releasing <= e {
			vs.releasing = 0
		}
		n.log.Info("released lease", "group", g, "epoch", e, "owner", vs.viewOwner, "why", vs.releasingWhy)
	}
	if !announce {
		return
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
