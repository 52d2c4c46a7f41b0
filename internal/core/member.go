package core

import (
	"time"

	"github.com/baton-ha/baton/internal/quorum"
)

// A member's own reasons to step down, and whether it may be chosen: its
// health, a committed handoff request, a failed takeover.

// HookCooldown is how long a node whose active hook failed stays ineligible
// for that group, so that the next candidate gets it.
const HookCooldown = 30 * time.Second

func (n *Node) healthy(group string) bool {
	if n.d.Healthy == nil {
		return true
	}
	return n.d.Healthy(group)
}

func (n *Node) eligible(now time.Duration, group string) bool {
	os := n.own[group]
	return !n.leaving && os != nil && now >= os.hookBlockUntil
}

// selfChecks runs the owner's own reasons to step down: a committed handoff
// request (switchover, failback) and failing health checks while a healthy
// member could take over. It also reports fault transitions of health.
func (n *Node) selfChecks(now time.Duration) {
	v := n.view()
	for _, g := range n.members {
		gs, os, healthy := v.Group(g.Name), n.own[g.Name], n.healthy(g.Name)
		if prev, seen := n.healthSeen[g.Name]; !seen || prev != healthy {
			n.healthSeen[g.Name] = healthy
			switch {
			case seen && !healthy:
				n.faulted[g.Name] = true
				n.log.Warn("fault: health checks fail", "group", g.Name)
				n.d.OnRole(Transition{Group: g.Name, Role: RoleFault, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: quorum.ReasonHealth})
			case healthy && n.faulted[g.Name]:
				// Back from a reported fault: say standby again (not at start,
				// where checks pass for the first time after the start hook).
				n.faulted[g.Name] = false
				if os.role != RoleActive {
					n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: quorum.ReasonHealth})
				}
			}
		}
		if gs.Owner != n.name || gs.Epoch != os.epoch || os.relinquished == gs.Epoch || n.leaving {
			continue
		}
		switch {
		case gs.HandoffTo != "":
			n.log.Info("handing off on request", "group", g.Name, "to", gs.HandoffTo, "reason", gs.HandoffReason)
			n.relinquish(now, g.Name, gs.Epoch, gs.HandoffReason)
		case !healthy && !n.maintenance(v, g) && n.otherUsable(now, g):
			n.log.Warn("health checks fail and a healthy standby exists: stepping down", "group", g.Name)
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonCheck)
		}
	}
}

// otherUsable reports whether another member could take the group now.
func (n *Node) otherUsable(now time.Duration, g *Group) bool {
	for _, c := range n.candidates(now, g) {
		if c.Node != n.name && c.Usable() {
			return true
		}
	}
	return false
}

// HookFailed is called when this node's active hook for (group, epoch)
// failed: the node gives the group up and stays ineligible for HookCooldown,
// so the leader tries the next candidate.
func (n *Node) HookFailed(now time.Duration, group string, epoch uint64) {
	n.GiveUp(now, group, epoch, quorum.ReasonHook, "active hook failed")
}

// GiveUp makes this node step down from (group, epoch) because it cannot
// serve it (failed active hook, service not healthy within start_timeout, no
// copy of the data); it stays ineligible for the group for HookCooldown so
// that the next candidate is tried, and the history records reason.
func (n *Node) GiveUp(now time.Duration, group string, epoch uint64, reason, why string) {
	os := n.own[group]
	gs := n.view().Group(group)
	if os == nil || gs.Owner != n.name || gs.Epoch != epoch {
		return
	}
	os.hookBlockUntil = now + HookCooldown
	n.log.Error("cannot serve the group: giving it up", "group", group, "epoch", epoch, "why", why, "ineligible_for", HookCooldown)
	n.relinquish(now, group, epoch, reason)
	n.updateRoles(now)
	n.sendHeartbeats(now)
}
