package core

import (
	"fmt"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// A live reload (Reconfigure) replaces the node's Spec without a restart.
// What the shell allows to change is the groups and their units (added,
// removed, new members, priorities, failback, VIPs); the nodes and the timing
// stay (config.CheckReload refuses the rest). A unit that is in both specs
// keeps all its state: lease, acks, promises, releases, the leader's
// bookkeeping. So an unchanged group is not disturbed at all: same owner,
// same epoch, no role transition. A unit this node may no longer own (the
// group was removed, or this node is no longer a member) is relinquished
// first, exactly like a planned handoff: the node stops acting (the shell
// takes the front doors down and runs the standby hook), and the voters
// release it at once, so the leader can give it to a remaining member without
// waiting out the lease.

// Reconfigure switches the node to spec at time now. spec must name the same
// nodes with the same timing as the running one.
func (n *Node) Reconfigure(now time.Duration, spec *Spec) error {
	self, ok := spec.Node(n.name)
	if !ok {
		return fmt.Errorf("core: node %q is not in the new configuration", n.name)
	}
	if spec.Timing != n.timing {
		return fmt.Errorf("core: the timing cannot change live")
	}
	if !slices.Equal(spec.Voters(), n.voters) {
		return fmt.Errorf("core: the nodes cannot change live")
	}
	_ = self
	// Give up what this node may no longer own, under the old spec (so the
	// transitions name groups the shell still knows).
	v := n.view()
	for _, g := range n.members {
		if u := spec.Unit(g.Name); u != nil {
			if _, member := u.Member(n.name); member {
				continue
			}
		}
		os := n.own[g.Name]
		if gs := v.Group(g.Name); gs.Owner == n.name && gs.Epoch > 0 && os.relinquished != gs.Epoch {
			n.log.Info("reload: giving up a group this node may no longer own", "group", g.Name, "epoch", gs.Epoch)
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonReload)
			n.updateRoles(now)
		}
		if os.relinquished > 0 {
			// Keep telling the voters until they moved on: a voter that
			// missed the heartbeat would otherwise wait out the hold.
			n.dropped[g.Name] = os.relinquished
		}
		if os.role == RoleActive {
			// Not acting is what relinquish guarantees; say it if not.
			os.role = RoleStandby
			n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: os.epoch, PreviousOwner: n.name, Reason: quorum.ReasonReload})
		}
	}

	var saved map[string]uint64 // durable releases, read once if a unit is new
	oldOwn, oldVote, oldData := n.own, n.vote, n.data
	n.own, n.vote, n.data = map[string]*ownState{}, map[string]*voteState{}, map[string]*dataMember{}
	n.members, n.groups, n.spread = nil, nil, nil
	for _, g := range spec.Groups {
		if g.Mode == ModeActiveActive {
			n.spread = append(n.spread, g)
		}
	}
	for _, g := range spec.Units {
		n.groups = append(n.groups, g)
		if vs := oldVote[g.Name]; vs != nil {
			n.vote[g.Name] = vs
		} else {
			if saved == nil {
				var err error
				if saved, err = n.d.Releases.Load(); err != nil {
					// Without them this voter could ack a lease it released
					// before: do not vote for the new unit (it keeps no
					// state), and say so.
					n.log.Error("reload: cannot read released leases; not voting for the new groups", "err", err)
					saved = map[string]uint64{}
				}
			}
			n.vote[g.Name] = &voteState{releasedMax: saved[g.Name]}
		}
		if _, member := g.Member(n.name); !member {
			continue
		}
		n.members = append(n.members, g)
		if os := oldOwn[g.Name]; os != nil {
			n.own[g.Name] = os
		} else {
			// A unit this node rejoins after dropping it stays relinquished:
			// it must not claim again what it gave up.
			n.own[g.Name] = &ownState{role: RoleStandby, relinquished: n.dropped[g.Name], relReason: quorum.ReasonReload}
			if n.announced {
				gs := v.Group(g.Name)
				n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: quorum.ReasonReload})
			}
		}
		delete(n.dropped, g.Name)
		if g.Data != nil {
			if dm := oldData[g.Name]; dm != nil {
				n.data[g.Name] = dm
			} else {
				n.data[g.Name] = &dataMember{}
			}
		}
	}
	for name := range n.lead {
		if spec.Unit(name) == nil && spec.Group(name) == nil {
			delete(n.lead, name)
		}
	}
	for _, p := range n.peers {
		for g := range p.groups {
			if spec.Unit(g) == nil {
				delete(p.groups, g)
			}
		}
	}
	for g := range n.hints {
		if spec.Unit(g) == nil {
			delete(n.hints, g)
		}
	}
	n.spec = spec
	n.hintsDirty, n.lastView = true, nil
	n.refreshView(now)
	n.updateRoles(now)
	n.sendHeartbeats(now)
	if n.d.Quorum.IsLeader() {
		n.leadAll(now)
	}
	return nil
}

// droppedClaims are the units this node relinquished because a reload took
// them away, for as long as its view still names it their owner at that
// epoch (afterwards every voter has moved on).
func (n *Node) droppedClaims() []cluster.Claim {
	var out []cluster.Claim
	v := n.view()
	for g, e := range n.dropped {
		if gs := v.Group(g); gs.Owner != n.name || gs.Epoch != e {
			delete(n.dropped, g)
			continue
		}
		out = append(out, cluster.Claim{Group: g, Epoch: e})
	}
	slices.SortFunc(out, func(a, b cluster.Claim) int {
		if a.Group < b.Group {
			return -1
		}
		if a.Group > b.Group {
			return 1
		}
		return 0
	})
	return out
}
