package core

import (
	"slices"
	"sort"
	"time"

	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// The leader's duty: once a majority of voters released the owner's lease
// (or the owner relinquished it), commit the best usable member as the new
// owner at epoch+1; hand a group back on failback; record the synchronous
// standbys and measured losses of data groups; spread active-active units;
// keep Raft leadership off owners.

// leadState is the leader's bookkeeping for one unit (or, for rebalancing
// and failback delays, one active-active group). It is not replicated: a new
// leader starts afresh, and every proposal is a compare-and-set, so a lost
// or repeated one is harmless.
type leadState struct {
	assign  proposal // an assignment of a new owner
	handoff proposal // a handoff request (switchover, failback, rebalance)
	sync    proposal // a change of the synchronous standby set
	// diverged: epochs whose measured loss was proposed for the history.
	diverged map[uint64]bool
	// quorumAt: when a quorum of releases of an epoch was first seen.
	quorumAt proposal
	// annotated: the epoch whose takeover time was recorded.
	annotated uint64
	// usableSince: since when each member has been usable (failback waits for
	// failback_delay of continuous health).
	usableSince map[string]time.Duration
	// why the leader is not acting (status, and a log line when it changes);
	// dataWhy: members the sync policy excludes, and why.
	why, dataWhy string
}

// proposal is something the leader proposed for a unit at an epoch.
type proposal struct {
	set   bool
	epoch uint64 // the epoch it expects
	at    time.Duration
	to    string // the proposed owner (assignments)
	seq   uint64 // the owner's request number (sync sets)
}

// inFlight reports whether p, proposed at epoch, may still commit: a proposal
// is retried only after proposalTimeout.
func (n *Node) inFlight(p proposal, epoch uint64, now time.Duration) bool {
	return p.set && p.epoch == epoch && now-p.at < n.proposalTimeout()
}

func (n *Node) proposalTimeout() time.Duration {
	return max(time.Second, 4*n.timing.RaftHeartbeatTimeout)
}

func (n *Node) leadOf(name string) *leadState {
	ls := n.lead[name]
	if ls == nil {
		ls = &leadState{diverged: map[uint64]bool{}, usableSince: map[string]time.Duration{}}
		n.lead[name] = ls
	}
	return ls
}

// leadAll runs the ownership policy on the quorum leader.
func (n *Node) leadAll(now time.Duration) {
	v := n.view()
	graceOver := now >= n.startAt+n.timing.StartupGrace || n.allMembersUp(now)
	for _, g := range n.groups {
		n.leadUnit(now, v, g, graceOver)
	}
	for _, g := range n.spread {
		if !v.Maintenance && !v.Group(g.Name).Maintenance {
			n.rebalance(now, v, g)
		}
	}
	n.keepLeadershipOffOwners(now, v)
}

func (n *Node) leadUnit(now time.Duration, v *quorum.State, g *Group, graceOver bool) {
	gs := v.Group(g.Name)
	ls := n.leadOf(g.Name)
	if n.inFlight(ls.assign, gs.Epoch, now) {
		return
	}
	relinquished, reason := false, quorum.ReasonFailure
	var lapsedMs int64 // an owner that gave up a lease it had lost: for how long it had not been acting
	if gs.Owner != "" {
		if os := n.own[g.Name]; gs.Owner == n.name && os != nil && os.relinquished == gs.Epoch {
			relinquished, reason, lapsedMs = true, os.relReason, os.relLapsed.Milliseconds()
		} else if gs.Owner == n.name && n.dropped[g.Name] == gs.Epoch {
			relinquished, reason = true, quorum.ReasonReload
		} else if p := n.peers[gs.Owner]; gs.Owner != n.name && p != nil && p.relinquished[g.Name] == gs.Epoch {
			relinquished, reason, lapsedMs = true, p.relReason, int64(min(p.relLapsed[g.Name], 1<<40))
		}
	}
	if relinquished && reason == "" {
		reason = quorum.ReasonRelinquish
	}
	cands := n.candidates(now, g)
	maint := n.maintenance(v, g)
	n.trackUsable(now, ls, cands)
	n.spreadInputs(now, v, g, cands)
	n.relaySync(now, g, gs)
	n.recordDivergence(now, g)
	grace := graceOver
	if gs.Owner == "" && now < n.startAt+n.timing.StartupGrace {
		// Within the startup grace, give a group its first owner early only
		// when every member is up and usable (its checks have passed), so the
		// choice is the one a settled cluster would make — and, for a data
		// group, every member has reported its position, so the newest data
		// wins.
		for _, c := range cands {
			grace = grace && c.Usable()
		}
		if g.Data != nil {
			grace = grace && n.allPositionsKnown(g)
		}
	}
	released := n.releasedCount(g.Name, gs.Epoch)
	if released >= n.major && !relinquished {
		n.distrustReleasedOwner(now, gs.Owner, cands)
	}
	in := decide.Inputs{
		Now: now, Owner: gs.Owner, Epoch: gs.Epoch, Majority: n.major,
		Released: released, Relinquish: relinquished,
		GraceOver: grace, Maintenance: maint, HandoffTo: gs.HandoffTo, Candidates: cands,
	}
	n.annotate(ls, g.Name, gs)
	if !maint && in.Released < n.major && g.Parent == "" {
		n.failback(now, ls, g, gs, cands)
	}
	if in.Released >= n.major && gs.Owner != "" && (!ls.quorumAt.set || ls.quorumAt.epoch != gs.Epoch) {
		ls.quorumAt = proposal{set: true, epoch: gs.Epoch, at: now}
	}
	if !relinquished && gs.Owner != "" && gs.Owner != n.name && in.Released >= n.major && ls.quorumAt.epoch == gs.Epoch {
		if p := n.peers[gs.Owner]; p != nil && n.alive(now, p) && now-ls.quorumAt.at < n.timing.HeartbeatInterval {
			// The owner is still heard, yet a quorum released it: most
			// likely its relinquish (a handoff, a shutdown, a reload)
			// reached the voters before it reached this leader. Wait up to
			// a heartbeat for it, so the history says why the group moved.
			// A silent owner is not alive by the time voters release it, so
			// a real failure never waits here; an owner cut off from a
			// majority but not from this leader waits one heartbeat more.
			// (If the relinquish itself is lost, the entry says failure.)
			return
		}
	}
	act := decide.Decide(in)
	if ls.dataWhy != "" && !act.Assign {
		act.Why += " (sync policy: " + ls.dataWhy + ")"
	}
	if !act.Assign {
		if gs.Owner != "" && in.Released >= n.major && ls.why != act.Why {
			n.log.Warn("cannot fail over", "group", g.Name, "why", act.Why)
		}
		ls.why = act.Why
		return
	}
	ls.why = act.Why
	if gs.Owner == "" {
		reason = quorum.ReasonInitial
	}
	cmd := quorum.Command{
		Op: quorum.OpAssign, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner, Owner: act.Owner,
		Reason: reason, TimeUnixMs: n.d.WallNow().UnixMilli(), Detail: act.Why,
	}
	n.dataAssign(g, gs, &cmd)
	if q := ls.quorumAt; q.set && q.epoch == gs.Epoch {
		cmd.DecideMs = (now - q.at).Milliseconds()
		if gs.Owner != n.name && !relinquished {
			if p := n.peers[gs.Owner]; p != nil && p.heard {
				// A claim heard after the quorum released (the owner came
				// back, e.g. restarted, too late) tells nothing about when
				// it went silent: no negative detect time.
				cmd.DetectMs = max(q.at-p.lastClaim[g.Name], 0).Milliseconds()
			}
		}
	}
	if relinquished && reason == quorum.ReasonFailure && lapsedMs > 0 {
		// The owner found out itself (deaf, or released by too many
		// voters): the outage began when it stopped acting, a whole
		// LapsedMs before it gave the group up.
		cmd.DetectMs = lapsedMs
	}
	if err := n.d.Quorum.Propose(cmd); err != nil {
		n.log.Debug("propose failed", "group", g.Name, "err", err)
		return
	}
	ls.assign = proposal{set: true, epoch: gs.Epoch, at: now, to: act.Owner}
	n.log.Info("assigning group", "group", g.Name, "from", gs.Owner, "to", act.Owner, "epoch", gs.Epoch+1, "reason", reason)
}

// distrustReleasedOwner: a quorum of voters released the owner's lease
// because it fell silent, but this leader may have heard its last heartbeat
// later than those voters did, so it still looks alive here (heard within
// failure_timeout) when it is dead — and chosen again, it would cost a
// second lease hold. It counts as alive only if it is heartbeating now
// (heard within three intervals: one lost heartbeat is not silence), as an
// owner that came back after a freeze does.
func (n *Node) distrustReleasedOwner(now time.Duration, owner string, cands []decide.Candidate) {
	p := n.peers[owner]
	if p == nil || now-p.lastHeard <= 3*n.timing.HeartbeatInterval {
		return
	}
	for i := range cands {
		if cands[i].Node == owner {
			cands[i].Alive = false
		}
	}
}

// trackUsable remembers since when each member has been usable.
func (n *Node) trackUsable(now time.Duration, ls *leadState, cands []decide.Candidate) {
	for _, c := range cands {
		if !c.Usable() {
			delete(ls.usableSince, c.Node)
		} else if _, ok := ls.usableSince[c.Node]; !ok {
			ls.usableSince[c.Node] = now
		}
	}
}

// failback asks the owner to hand the group back to a higher-priority member
// that has been usable for failback_delay (failback: true only).
func (n *Node) failback(now time.Duration, ls *leadState, g *Group, gs quorum.GroupState, cands []decide.Candidate) {
	if !g.Failback || gs.Owner == "" || gs.HandoffTo != "" {
		return
	}
	owner, _ := g.Member(gs.Owner)
	var best *decide.Candidate
	for i, c := range cands {
		if c.Usable() && c.Priority > owner.Priority && (best == nil || c.Priority > best.Priority) {
			best = &cands[i]
		}
	}
	if best == nil {
		return
	}
	if since, ok := ls.usableSince[best.Node]; !ok || now-since < g.FailbackDelay {
		return
	}
	if n.inFlight(ls.handoff, gs.Epoch, now) {
		return
	}
	cmd := quorum.Command{Op: quorum.OpHandoff, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Owner: best.Node, Reason: quorum.ReasonFailback, TimeUnixMs: n.d.WallNow().UnixMilli()}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		ls.handoff = proposal{set: true, epoch: gs.Epoch, at: now}
		n.log.Info("failback: asking the owner to hand back", "group", g.Name, "owner", gs.Owner, "to", best.Node)
	}
}

// annotate records the new owner's measured takeover time in the history.
func (n *Node) annotate(ls *leadState, group string, gs quorum.GroupState) {
	if gs.Owner == "" || ls.annotated == gs.Epoch {
		return
	}
	var ms int64
	known := false
	if gs.Owner == n.name {
		if os := n.own[group]; os != nil && os.takeoverEpoch == gs.Epoch {
			ms, known = os.takeoverMs, true
		}
	} else if p := n.peers[gs.Owner]; p != nil {
		if st := p.groups[group]; st.Epoch == gs.Epoch {
			ms, known = st.TakeoverMs, true
		}
	}
	if !known {
		return
	}
	cmd := quorum.Command{Op: quorum.OpAnnotate, Group: group, Epoch: gs.Epoch, TakeoverMs: ms}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		ls.annotated = gs.Epoch
	}
}

// candidates lists the unit's members as the leader sees them now, with the
// sync policy applied for data groups.
func (n *Node) candidates(now time.Duration, g *Group) []decide.Candidate {
	out := make([]decide.Candidate, 0, len(g.Members))
	for _, m := range g.Members {
		c := decide.Candidate{Node: m.Node, Priority: m.Priority}
		if m.Node == n.name {
			c.Alive, c.Healthy, c.Eligible = true, n.healthy(g.Name), n.eligible(now, g.Name)
		} else if p := n.peers[m.Node]; p != nil {
			gs, ok := p.groups[g.Name]
			c.Alive = n.alive(now, p)
			c.Healthy = ok && gs.Healthy
			c.Eligible = ok && gs.Eligible && !p.leaving
		}
		out = append(out, c)
	}
	n.leadOf(g.Name).dataWhy = n.dataEligibility(g, n.view().Group(g.Name), out)
	return out
}

func (n *Node) allPositionsKnown(g *Group) bool {
	for _, m := range g.Members {
		if _, ok := n.memberData(g.Name, m.Node); !ok {
			return false
		}
	}
	return true
}

func (n *Node) allMembersUp(now time.Duration) bool {
	for _, p := range n.peers {
		if !n.alive(now, p) {
			return false
		}
	}
	return true
}

// keepLeadershipOffOwners moves quorum leadership to a voter that owns no
// group, so that the death of an owner never also costs a leader election.
func (n *Node) keepLeadershipOffOwners(now time.Duration, v *quorum.State) {
	if n.d.TransferLeadership == nil || !n.spec.KeepLeaderOffOwners || now-n.lastXfer < 5*time.Second || now-n.startAt < n.timing.StartupGrace {
		return
	}
	owners := map[string]bool{}
	for _, g := range n.groups {
		owners[v.Group(g.Name).Owner] = true
	}
	if !owners[n.name] && !n.leaving {
		return
	}
	var best string
	names := make([]string, 0, len(n.peers))
	for name := range n.peers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := n.peers[name]
		if slices.Contains(n.voters, name) && !owners[name] && n.alive(now, p) && !p.leaving {
			best = name
			break
		}
	}
	if best == "" {
		return
	}
	n.lastXfer = now
	n.log.Info("moving quorum leadership off an owner", "to", best)
	n.d.TransferLeadership(best)
}
