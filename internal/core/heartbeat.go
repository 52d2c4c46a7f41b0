package core

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/quorum"
)

// A heartbeat carries everything a node has to say, to every peer, each
// heartbeat_interval (and at once when its claims or its view of the owners
// change): the leases it claims, the leases it released or relinquished, its
// health and eligibility per member group (with its database's role and
// position for data groups), and the ownership it knows (gossip).

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
	var b strings.Builder
	for _, c := range n.claims() {
		fmt.Fprintf(&b, "%s/%d,", c.Group, c.Epoch)
	}
	return b.String()
}

func (n *Node) sendHeartbeats(now time.Duration) {
	n.nextHB = now + n.timing.HeartbeatInterval
	n.lastClaims, n.lastOwners = n.claimKey(), n.ownersKey()
	v := n.view()
	m := &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: int64(now), Claims: n.claims(), Leaving: n.leaving,
		Applied: v.Index, ConfigHash: n.spec.ConfigHash}
	if n.d.RaftRole != nil {
		m.RaftRole = n.d.RaftRole()
	}
	for _, g := range n.groups {
		if gs := v.Group(g.Name); gs.Epoch > 0 {
			reason, _ := n.knownEpochReason(v, g.Name, gs.Epoch)
			m.Owners = append(m.Owners, cluster.Owner{Group: g.Name, Node: gs.Owner, Epoch: gs.Epoch,
				Prev: n.previousOwner(v, g.Name, gs.Epoch), HandoffTo: gs.HandoffTo, HandoffReason: gs.HandoffReason, Reason: reason})
		}
		if vs := n.vote[g.Name]; vs.releasedMax > 0 {
			m.Released = append(m.Released, cluster.Claim{Group: g.Name, Epoch: vs.releasedMax})
		}
	}
	for _, g := range n.members {
		os := n.own[g.Name]
		gst := cluster.GroupStatus{Group: g.Name, Healthy: n.healthy(g.Name), Eligible: n.eligible(now, g.Name), Role: os.role}
		if os.takeoverEpoch > 0 && os.takeoverEpoch == v.Group(g.Name).Epoch {
			gst.Epoch, gst.TakeoverMs = os.takeoverEpoch, os.takeoverMs
		}
		n.addDataStatus(g, &gst, v.Group(g.Name).Epoch)
		m.Groups = append(m.Groups, gst)
		if os.relinquished > 0 {
			m.Relinquished = append(m.Relinquished, cluster.Claim{Group: g.Name, Epoch: os.relinquished})
			m.RelinquishReason = os.relReason
		}
	}
	if dropped := n.droppedClaims(); len(dropped) > 0 {
		m.Relinquished = append(m.Relinquished, dropped...)
		if m.RelinquishReason == "" {
			m.RelinquishReason = quorum.ReasonReload
		}
	}
	// The node is a voter for its own claims too.
	if n.isVoter && len(m.Claims) > 0 {
		for _, c := range n.grant(now, n.name, m.Claims) {
			n.ackFrom(now, n.name, c, now)
		}
	}
	for _, p := range n.voters {
		if p != n.name {
			n.d.Send(p, m)
		}
	}
	for name := range n.peers {
		if !slices.Contains(n.voters, name) {
			n.d.Send(name, m)
		}
	}
}
