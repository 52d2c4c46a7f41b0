package core

import "github.com/baton-ha/baton/internal/quorum"

// Raft's pace. A failover needs one commit by a live quorum leader. While the
// leader owns no unit and every unit has an owner, the leader's death alone
// needs no failover (its death together with an owner's is a double fault),
// so Raft may detect it more slowly: the shell then runs Raft with the
// profile's RaftIdleHeartbeatTimeout, and the leader sends its heartbeats less
// often. As soon as the leader owns a unit (it took over one, or leadership
// moved to an owner), or a unit lost its owner, the normal timeouts apply
// again, so that a leader that dies with its groups is replaced within the
// lease hold (docs/design.md, "Why the outage does not include a Raft
// election").
//
// Every node decides from its own view and the leader it knows. The leader
// usually learns first that it became an owner (it commits the assignment),
// so it speeds up before its followers; a follower that still runs the idle
// timeouts only detects the leader's death later, it never starts an
// election early. A follower that speeds up first still gets heartbeats at
// the idle pace, whose longest gap (a fifth of the idle timeout) stays below
// the normal timeout.

// paceCache remembers RaftIdle's answer for one view and leader.
type paceCache struct {
	view   *quorum.State
	leader string
	idle   bool
}

// RaftIdle reports whether Raft may run at its idle pace: the quorum leader
// is known, owns no unit in this node's view, and every unit has an owner.
func (n *Node) RaftIdle() bool {
	leader, v := n.d.Quorum.Leader(), n.view()
	if leader == "" {
		return false
	}
	if n.pace.view == v && n.pace.leader == leader {
		return n.pace.idle
	}
	idle := true
	for _, g := range n.groups {
		if o := v.Group(g.Name).Owner; o == "" || o == leader {
			idle = false
			break
		}
	}
	n.pace = paceCache{view: v, leader: leader, idle: idle}
	return idle
}
