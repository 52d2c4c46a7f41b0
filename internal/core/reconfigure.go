package core

import (
	"fmt"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// A live reload (Reconfigure) replaces the node's Spec without a restart.
// What the shell allows to change is the groups and their units (added,
// removed, new members, priorities, failback, VIPs); the nodes and the timing
// stay, but for one node added or removed (config.CheckReload refuses the
// rest). A unit that is in both specs
// keeps all its state: lease, acks, promises, releases, the leader's
// bookkeeping. So an unchanged group is not disturbed at all: same owner,
// same epoch, no role transition. A unit this node may no longer own (the
// group was removed, or this node is no longer a member) is relinquished
// first, exactly like a planned handoff: the node stops acting (the shell
// takes the front doors down and runs the standby hook), and the voters
// release it at once, so the leader can give it to a remaining member without
// waiting out the lease.

// Reconfigure switches the node to spec at time now. spec must have the same
// timing as the running one and differ from it by at most one node.
func (n *Node) Reconfigure(now time.Duration, spec *Spec) error {
	self, ok := spec.Node(n.name)
	if !ok {
		return fmt.Errorf("core: node %q is not in the new configuration", n.name)
	}
	if spec.Timing != n.timing {
		return fmt.Errorf("core: the timing cannot change live")
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
				delete(p.groupAt, g)
			}
		}
	}
	for g := range n.hints {
		if spec.Unit(g) == nil {
			delete(n.hints, g)
		}
	}
	for g := range n.gossip {
		if spec.Unit(g) == nil {
			delete(n.gossip, g)
		}
	}
	// Peers keep what heartbeats told them and hear a group's status only
	// when it changes or on the slow refresh: tell them everything now.
	n.fullUntil = max(n.fullUntil, now+n.gossipFor())
	// Nodes: a node added or removed changes the voters, and with them the
	// majority that makes a lease and a release. The shell allows one node
	// per reload, so the old and the new voter sets differ by one, and any
	// majority of one meets any majority of the other: an owner counting
	// acks by the old set and a leader counting releases by the new one
	// still share a voter (the argument of Raft's single-server changes).
	if !slices.Equal(spec.Voters(), n.voters) {
		n.voters = spec.Voters()
		n.isVoter = slices.Contains(n.voters, n.name)
		n.major = decide.Majority(len(n.voters))
		for name := range n.peers {
			if _, ok := spec.Node(name); !ok {
				delete(n.peers, name)
			}
		}
		for _, nd := range spec.Nodes {
			if nd.Name != n.name && n.peers[nd.Name] == nil {
				n.peers[nd.Name] = newPeerState()
			}
		}
		n.log.Info("reload: the voters changed", "voters", n.voters, "majority", n.major)
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

// BootstrapDue tells a node that started without quorum state (a Fresh raft
// store) whether to bootstrap a new cluster now, and if not, why. A node must
// bootstrap only when the cluster is new: a node joining a running cluster,
// or replacing a member whose data_dir was lost, waits for the leader to add
// it instead (bootstrapping would make it a quorum of its own that the others
// refuse). So: never while any peer says it leads the quorum; at once when
// every other node has been heard and none leads (a new cluster, all up);
// after the startup grace when a majority of voters has been heard and none
// leads (a new cluster with a node still down). A node that hears nobody
// waits: the others may not know it yet (reload them).
func (n *Node) BootstrapDue(now time.Duration) (bool, string) {
	heard, leader := 1, ""
	for name, p := range n.peers {
		if !n.alive(now, p) {
			continue
		}
		if p.raftRole == "leader" {
			leader = name
		}
		if slices.Contains(n.voters, name) {
			heard++
		}
	}
	switch {
	case leader != "":
		return false, "the quorum is led by " + leader + ": waiting for it to add this node"
	case heard == len(n.voters):
		return true, "every node is up and none leads a quorum: a new cluster"
	case heard >= n.major && now >= n.startAt+n.timing.StartupGrace:
		return true, "a majority of the nodes is up and none leads a quorum: a new cluster"
	case heard == 1:
		return false, "no peer heard yet (a node new to the cluster waits until the others have reloaded a config that lists it)"
	}
	return false, "waiting for a majority of the nodes"
}

// Bootstrapped tells the node that it bootstrapped a new cluster: a voter of
// a new cluster released nothing before, so it need not wait to catch up
// before it acks (see Deps.Fresh).
func (n *Node) Bootstrapped() { n.fresh = false }

// ConfigAgreed reports whether every peer heard within the failure timeout
// announces the config this node runs. The leader changes the quorum's
// membership only then: the voters of the lease and of Raft move together.
func (n *Node) ConfigAgreed(now time.Duration) bool {
	for _, p := range n.peers {
		if n.alive(now, p) && p.configHash != n.spec.ConfigHash {
			return false
		}
	}
	return true
}

// AliveVoters lists the voters of the running spec this node hears (itself
// included).
func (n *Node) AliveVoters(now time.Duration) []string {
	var out []string
	for _, v := range n.voters {
		if p := n.peers[v]; v == n.name || (p != nil && n.alive(now, p)) {
			out = append(out, v)
		}
	}
	return out
}
