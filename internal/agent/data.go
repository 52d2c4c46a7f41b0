package agent

import (
	"fmt"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// Data-aware groups (groups[].driver) in the deterministic core.
//
// Every member reports its database's role and write position in its
// heartbeats; the leader promotes the most up-to-date eligible member.
// Eligibility depends on the group's sync policy:
//
//   - sync: on | strict — only a standby in the replicated synchronous set
//     (GroupState.Sync) may be promoted, or the owner itself (e.g. taking back
//     a group it relinquished). The owner changes the set in an order that
//     keeps "every acknowledged write is on every member of the set" true:
//     it names a standby in its database's synchronous setting and waits
//     until the database reports it synchronous before it asks the leader to
//     record it; it asks for a standby's removal first and changes the
//     database's setting only once the removal is committed. strict never
//     removes the last one (writes block instead); on does, and the history
//     records that replication became asynchronous.
//   - sync: off — a standby whose position trails the old primary's last
//     reported position by more than max_lag is not promoted automatically;
//     the history records the bytes that may have been lost.
//
// An operator can override with ForceFailover (--allow-data-loss), recorded
// in the history.

// DataReport is what the runtime last learned from a group's driver.
type DataReport struct {
	Known bool   // a State call succeeded
	Role  string // primary | standby | stopped | unknown
	Pos   uint64 // write position (higher is newer)
	// Sync / SyncSet: the owner's requested synchronous standby set.
	Sync    []string
	SyncSet bool
	// Diverged / DivEpoch: see cluster.GroupStatus.Div.
	Diverged, DivEpoch uint64
}

func (n *Node) dataReport(group string) DataReport {
	if n.d.Data == nil {
		return DataReport{}
	}
	return n.d.Data(group)
}

// addDataStatus puts the local database's report into a heartbeat.
func (n *Node) addDataStatus(g *config.Group, gst *cluster.GroupStatus, epoch uint64) {
	if g.Driver == nil {
		return
	}
	r := n.dataReport(g.Name)
	if !r.Known {
		return
	}
	gst.DB, gst.Pos = r.Role, r.Pos
	gst.Div, gst.DivEpoch = r.Diverged, r.DivEpoch
	if r.SyncSet && gst.Role == RoleActive {
		gst.Sync, gst.SyncSet, gst.Epoch = r.Sync, true, epoch
	}
}

// syncMode returns the group's sync policy ("" for a group without driver).
func syncMode(g *config.Group) string {
	if g.Driver == nil {
		return ""
	}
	return g.Driver.Sync
}

// memberData returns a member's last reported database status.
func (n *Node) memberData(group, node string) (cluster.GroupStatus, bool) {
	if node == n.name {
		r := n.dataReport(group)
		return cluster.GroupStatus{Group: group, DB: r.Role, Pos: r.Pos, Sync: r.Sync, SyncSet: r.SyncSet}, r.Known
	}
	p := n.peers[node]
	if p == nil {
		return cluster.GroupStatus{}, false
	}
	gs, ok := p.groups[group]
	return gs, ok && gs.DB != ""
}

// dataEligibility applies the sync policy to candidates and fills in their
// positions. It returns why members were excluded (for status and logs).
func (n *Node) dataEligibility(g *config.Group, gs quorum.GroupState, cands []decide.Candidate) string {
	if g.Driver == nil {
		return ""
	}
	var why []string
	primary, primaryKnown := n.memberData(g.Name, gs.Owner)
	maxLag, _ := config.ParseSize(g.Driver.MaxLag)
	for i := range cands {
		c := &cands[i]
		d, ok := n.memberData(g.Name, c.Node)
		if ok {
			c.Position = d.Pos
		}
		if gs.Owner == "" || c.Node == gs.Owner {
			continue // bootstrap (highest position wins), or the owner itself
		}
		if ok && d.Pos == 0 {
			// Never promote a member with no copy of the data (a standby
			// still taking its first base backup): it would start empty.
			c.Eligible = false
			why = append(why, c.Node+" has no copy of the data yet")
			continue
		}
		switch syncMode(g) {
		case "on", "strict":
			if !slices.Contains(gs.Sync, c.Node) {
				c.Eligible = false
				why = append(why, c.Node+" is not a synchronous standby")
			}
		default:
			if !ok && c.Eligible {
				c.Eligible = false
				why = append(why, c.Node+" has not reported its position")
			} else if maxLag > 0 && primaryKnown && primary.Pos > d.Pos && primary.Pos-d.Pos > uint64(maxLag) {
				c.Eligible = false
				why = append(why, fmt.Sprintf("%s trails the primary by %d bytes (max_lag %s)", c.Node, primary.Pos-d.Pos, g.Driver.MaxLag))
			}
		}
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprint(why)
}

// dataAssign adds positions (and, in async mode, the bytes that may be lost)
// to an assignment.
func (n *Node) dataAssign(g *config.Group, gs quorum.GroupState, cmd *quorum.Command) {
	if g.Driver == nil || gs.Owner == "" {
		return
	}
	primary, ok1 := n.memberData(g.Name, gs.Owner)
	promoted, ok2 := n.memberData(g.Name, cmd.Owner)
	if !ok1 || !ok2 {
		return
	}
	cmd.PrimaryPos, cmd.PromotedPos = primary.Pos, promoted.Pos
	if syncMode(g) == "off" && primary.Pos > promoted.Pos {
		cmd.LostBytes = primary.Pos - promoted.Pos
	}
}

// relaySync records the owner's requested synchronous standby set (leader).
func (n *Node) relaySync(now time.Duration, g *config.Group, gs quorum.GroupState) {
	if g.Driver == nil || gs.Owner == "" || syncMode(g) == "off" {
		return
	}
	var want []string
	if gs.Owner == n.name {
		r := n.dataReport(g.Name)
		if !r.SyncSet || n.Role(g.Name) != RoleActive {
			return
		}
		want = r.Sync
	} else {
		p := n.peers[gs.Owner]
		if p == nil {
			return
		}
		st, ok := p.groups[g.Name]
		if !ok || !st.SyncSet || st.Epoch != gs.Epoch {
			return
		}
		want = st.Sync
	}
	if slices.Equal(want, gs.Sync) {
		return
	}
	key := g.Name + "/sync"
	if p, ok := n.pending[key]; ok && p.epoch == gs.Epoch && now-p.at < n.proposalTimeout() {
		return
	}
	detail := fmt.Sprintf("synchronous standbys: %v", want)
	if len(want) == 0 {
		detail = "no synchronous standby: replication is asynchronous until one catches up (sync: on); only the owner may be promoted"
	}
	cmd := quorum.Command{Op: quorum.OpSync, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Sync: slices.Clone(want), TimeUnixMs: n.d.WallNow().UnixMilli(), Detail: detail}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		n.pending[key] = pending{epoch: gs.Epoch, at: now}
		n.log.Info("recording synchronous standbys", "group", g.Name, "sync", want)
	}
}

// recordDivergence writes into the history what an old primary that
// rejoined actually held beyond the new primary (leader).
func (n *Node) recordDivergence(now time.Duration, g *config.Group) {
	if g.Driver == nil {
		return
	}
	for _, m := range g.Members {
		var div, epoch uint64
		if m.Node == n.name {
			r := n.dataReport(g.Name)
			div, epoch = r.Diverged, r.DivEpoch
		} else if p := n.peers[m.Node]; p != nil {
			st := p.groups[g.Name]
			div, epoch = st.Div, st.DivEpoch
		}
		if epoch == 0 {
			continue
		}
		key := fmt.Sprintf("%s/diverged/%d", g.Name, epoch)
		if _, done := n.pending[key]; done {
			continue
		}
		v := n.view()
		for i := len(v.Events) - 1; i >= 0; i-- {
			e := v.Events[i]
			if e.Group != g.Name || e.Epoch != epoch || !e.Ownership() {
				continue
			}
			if !e.LostMeasured {
				detail := fmt.Sprintf("%s rejoined holding %d bytes of WAL the new primary lacked (discarded by the rewind)", m.Node, div)
				lost := div
				if syncMode(g) != "off" {
					// Synchronous replication: none of it was acknowledged.
					detail += ", none of it acknowledged to a client (sync " + syncMode(g) + ")"
					lost = 0
				}
				cmd := quorum.Command{Op: quorum.OpDiverged, Group: g.Name, Epoch: epoch, LostBytes: lost, Detail: detail}
				if err := n.d.Quorum.Propose(cmd); err == nil {
					n.pending[key] = pending{epoch: epoch, at: now}
				}
			}
			break
		}
	}
}

// ForceFailover assigns a group whose owner is gone to `to` although the
// sync policy or max_lag would not allow it (baton failover
// --allow-data-loss). Leader only. The owner's lease must have been released
// by a quorum (the owner is silent): this never creates two owners.
func (n *Node) ForceFailover(now time.Duration, group, to string) (epoch uint64, err error) {
	g := n.d.Config.UnitByName(group)
	if g == nil {
		return 0, reqErr(404, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return 0, reqErr(503, "this node does not lead the quorum; retry")
	}
	gs := n.d.Quorum.View().Group(group)
	if gs.Owner != "" && n.releasedCount(group, gs.Epoch) < n.major {
		return 0, reqErr(409, "group %q is owned by %s, whose lease a quorum still holds; use switchover (a live owner hands over without loss)", group, gs.Owner)
	}
	var tc *decide.Candidate
	cands := n.candidates(now, g)
	for i := range cands {
		if cands[i].Node == to {
			tc = &cands[i]
		}
	}
	switch {
	case tc == nil:
		return 0, reqErr(400, "node %q is not a member of group %q", to, group)
	case to == gs.Owner:
		return 0, reqErr(409, "node %q already owns group %q", to, group)
	case !tc.Alive:
		return 0, reqErr(409, "node %q is not alive", to)
	}
	cmd := quorum.Command{Op: quorum.OpAssign, Group: group, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner, Owner: to,
		Reason: quorum.ReasonManual, TimeUnixMs: n.d.WallNow().UnixMilli(),
		Detail: "forced by an operator with --allow-data-loss"}
	n.dataAssign(g, gs, &cmd)
	if g.Driver != nil && cmd.PrimaryPos > cmd.PromotedPos {
		cmd.LostBytes = cmd.PrimaryPos - cmd.PromotedPos
		cmd.Detail += fmt.Sprintf(": up to %d bytes written on %s may be lost", cmd.LostBytes, gs.Owner)
	}
	if err := n.d.Quorum.Propose(cmd); err != nil {
		return 0, reqErr(503, "propose failover: %v", err)
	}
	n.pending[group] = pending{epoch: gs.Epoch, at: now, to: to}
	n.log.Warn("forced failover", "group", group, "from", gs.Owner, "to", to, "epoch", gs.Epoch+1)
	return gs.Epoch, nil
}
