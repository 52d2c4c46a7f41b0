package core

import (
	"strconv"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// The view: what a node knows of the replicated state. Its replica applies
// committed entries some time after the leader committed them; peers gossip
// the ownership records their replicas applied in every heartbeat. Both parts
// are committed data, so the overlay is as trustworthy as the replica and
// fresher: a new owner learns of its election from whichever node applied it
// first.

// viewState caches the merged view.
type viewState struct {
	hints      map[string]cluster.Owner // gossiped records newer than the replica
	merged     *quorum.State
	mergedFrom *quorum.State
	hintsDirty bool
	lastView   *quorum.State // the view refreshView last looked at
}

// View is the replicated state as this node knows it; the result is shared
// and must not be modified.
func (n *Node) View() *quorum.State { return n.view() }

// Events returns the replicated ownership history, oldest first.
func (n *Node) Events() []quorum.Event { return n.view().Events }

func (n *Node) view() *quorum.State {
	rv := n.d.Quorum.View()
	if rv == n.mergedFrom && !n.hintsDirty {
		return n.merged
	}
	merged := rv
	for g, h := range n.hints {
		cur := rv.Group(g)
		if h.Epoch < cur.Epoch || (h.Epoch == cur.Epoch && (h.HandoffTo == "" || cur.HandoffTo != "")) {
			delete(n.hints, g) // the replica caught up
			continue
		}
		if merged == rv {
			merged = &quorum.State{Index: rv.Index, Groups: make(map[string]quorum.GroupState, len(rv.Groups)+1),
				Events: rv.Events, NextEv: rv.NextEv}
			for k, v := range rv.Groups {
				merged.Groups[k] = v
			}
		}
		merged.Groups[g] = quorum.GroupState{Owner: h.Node, Epoch: h.Epoch, Maintenance: cur.Maintenance,
			HandoffTo: h.HandoffTo, HandoffReason: h.HandoffReason}
	}
	n.merged, n.mergedFrom, n.hintsDirty = merged, rv, false
	return merged
}

// learn merges gossiped ownership records; it reports whether any was news.
func (n *Node) learn(owners []cluster.Owner) bool {
	news := false
	v := n.view()
	for _, o := range owners {
		if n.vote[o.Group] == nil {
			continue
		}
		cur, h := v.Group(o.Group), n.hints[o.Group]
		newer := o.Epoch > cur.Epoch && o.Epoch > h.Epoch
		handoff := o.Epoch == cur.Epoch && o.Node == cur.Owner && o.HandoffTo != "" && cur.HandoffTo == ""
		if newer || handoff {
			n.hints[o.Group] = o
			n.hintsDirty, news = true, true
		} else if h.Epoch == o.Epoch && h.Reason == "" && o.Reason != "" {
			h.Reason = o.Reason // a later gossip knows why
			n.hints[o.Group] = h
		}
	}
	return news
}

// ownersKey summarises the ownership this node would gossip.
func (n *Node) ownersKey() string {
	b := n.keyBuf[:0]
	v := n.view()
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		b = append(b, gs.Owner...)
		b = append(b, '/')
		b = strconv.AppendUint(b, gs.Epoch, 10)
		b = append(b, '/')
		b = append(b, gs.HandoffTo...)
		b = append(b, ',')
	}
	n.keyBuf = b
	return string(b)
}

// refreshView notices changes of owner or epoch in the view: the voter dates
// its hold from when it first saw an epoch, and an owner starts counting acks
// for a new epoch afresh.
func (n *Node) refreshView(now time.Duration) {
	v := n.view()
	if v == n.lastView && n.started && now != n.startAt {
		return
	}
	n.lastView = v
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		vs := n.vote[g.Name]
		if gs.Epoch != vs.viewEpoch || gs.Owner != vs.viewOwner {
			vs.viewEpoch, vs.viewOwner, vs.viewSince = gs.Epoch, gs.Owner, now
		}
		if os := n.own[g.Name]; os != nil && gs.Owner == n.name && os.epoch != gs.Epoch {
			os.epoch, os.acks, os.expiry, os.learnedAt, os.dataFloor = gs.Epoch, map[string]time.Duration{}, 0, now, 0
			if g.Data != nil {
				for _, p := range n.peers {
					os.dataFloor = max(os.dataFloor, p.applied)
				}
			}
		}
	}
}

// previousOwner is the owner before epoch, from gossip or the history.
func (n *Node) previousOwner(v *quorum.State, group string, epoch uint64) string {
	if h, ok := n.hints[group]; ok && h.Epoch == epoch {
		return h.Prev
	}
	for i := len(v.Events) - 1; i >= 0; i-- {
		if e := v.Events[i]; e.Group == group && e.Epoch == epoch && e.Ownership() {
			return e.From
		}
	}
	return ""
}

// maintenance reports whether automatic failover of a unit is paused (for
// it, its group, or the whole cluster).
func (n *Node) maintenance(v *quorum.State, u *Group) bool {
	return v.Maintenance || v.Group(u.Name).Maintenance || (u.Parent != "" && v.Group(u.Parent).Maintenance)
}
