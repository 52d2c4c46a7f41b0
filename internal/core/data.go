package core

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// Data-aware groups (groups[].driver), the leader's side.
//
// Every member reports its database's role and write position in its
// heartbeats; the leader promotes the most up-to-date eligible member.
// Eligibility depends on the group's sync policy:
//
//   - sync: on | strict — only a standby in the replicated synchronous set
//     (GroupState.Sync) may be promoted, or the owner itself (e.g. taking back
//     a group it relinquished). The owner changes the set in an order that
//     keeps "every acknowledged write is on every member of the set" true
//     (syncstandby.go); the leader records what the owner asks for.
//   - sync: off — a standby whose position trails the old primary's last
//     reported position by more than max_lag is not promoted automatically;
//     the history records the bytes that may have been lost.
//
// An operator can override with ForceFailover (--allow-data-loss), recorded
// in the history.

// memberData returns a member's last reported database status.
func (n *Node) memberData(group, node string) (cluster.GroupStatus, bool) {
	if node == n.name {
		dm := n.data[group]
		if dm == nil {
			return cluster.GroupStatus{}, false
		}
		return cluster.GroupStatus{Group: group, DB: dm.rep.Role, Pos: dm.rep.Pos, Sync: dm.want, SyncSet: dm.wantSet, Unrelated: dm.rep.Unrelated}, dm.rep.Known
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
func (n *Node) dataEligibility(g *Group, gs quorum.GroupState, cands []decide.Candidate) string {
	if g.Data == nil {
		return ""
	}
	var why []string
	primary, primaryKnown := n.memberData(g.Name, gs.Owner)
	maxLag := g.Data.MaxLag
	for i := range cands {
		c := &cands[i]
		d, ok := n.memberData(g.Name, c.Node)
		if ok {
			c.Position = d.Pos
		}
		if gs.Owner == "" || c.Node == gs.Owner {
			continue // bootstrap (highest position wins), or the owner itself
		}
		if ok && d.Unrelated {
			// Its data is another dataset (different replication
			// history): its position says nothing about the group's writes.
			c.Eligible = false
			why = append(why, c.Node+"'s data is not on the group's replication history (an unrelated dataset; --allow-data-loss overrides)")
			continue
		}
		if ok && d.Pos == 0 {
			// Never promote a member with no copy of the data (a standby
			// still taking its first base backup): it would start empty.
			c.Eligible = false
			why = append(why, c.Node+" has no copy of the data yet")
			continue
		}
		switch g.syncMode() {
		case "on", "strict":
			if !slices.Contains(gs.Sync, c.Node) {
				c.Eligible = false
				why = append(why, c.Node+" is not a synchronous standby")
			}
		default:
			if !ok && c.Eligible {
				c.Eligible = false
				why = append(why, c.Node+" has not reported its position")
			} else if maxLag > 0 && primaryKnown && primary.Pos > d.Pos && primary.Pos-d.Pos > maxLag {
				c.Eligible = false
				why = append(why, fmt.Sprintf("%s trails the primary by %d bytes (max_lag %d bytes)", c.Node, primary.Pos-d.Pos, maxLag))
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
func (n *Node) dataAssign(g *Group, gs quorum.GroupState, cmd *quorum.Command) {
	if g.Data == nil || gs.Owner == "" {
		return
	}
	primary, ok1 := n.memberData(g.Name, gs.Owner)
	promoted, ok2 := n.memberData(g.Name, cmd.Owner)
	if !ok1 || !ok2 {
		return
	}
	cmd.PrimaryPos, cmd.PromotedPos = primary.Pos, promoted.Pos
	if g.syncMode() == "off" && primary.Pos > promoted.Pos {
		cmd.LostBytes = primary.Pos - promoted.Pos
	}
}

// relaySync records the owner's requested synchronous standby set.
func (n *Node) relaySync(now time.Duration, g *Group, gs quorum.GroupState) {
	if g.Data == nil || gs.Owner == "" || g.syncMode() == "off" {
		return
	}
	var want []string
	var seq uint64
	if gs.Owner == n.name {
		dm := n.data[g.Name]
		if dm == nil || !dm.wantSet || n.Role(g.Name) != RoleActive {
			return
		}
		want, seq = dm.want, dm.wantSeq
	} else {
		p := n.peers[gs.Owner]
		if p == nil {
			return
		}
		st, ok := p.groups[g.Name]
		if !ok || !st.SyncSet || st.Epoch != gs.Epoch {
			return
		}
		want, seq = st.Sync, st.SyncSeq
	}
	ls := n.leadOf(g.Name)
	// A numbered request is recorded once (even when the set is unchanged:
	// the owner waits for its number to be confirmed); an unnumbered one
	// (an older agent) when the set differs.
	if seq != 0 && seq <= gs.SyncSeq || seq == 0 && slices.Equal(want, gs.Sync) {
		return
	}
	if n.inFlight(ls.sync, gs.Epoch, now) && ls.sync.seq == seq {
		return
	}
	detail := fmt.Sprintf("synchronous standbys: %v", want)
	if len(want) == 0 {
		detail = "no synchronous standby: replication is asynchronous until one catches up (sync: on); only the owner may be promoted"
	}
	cmd := quorum.Command{Op: quorum.OpSync, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Sync: slices.Clone(want), SyncSeq: seq, TimeUnixMs: n.d.WallNow().UnixMilli(), Detail: detail}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		ls.sync = proposal{set: true, epoch: gs.Epoch, at: now, seq: seq}
		if !slices.Equal(want, gs.Sync) {
			n.log.Info("recording synchronous standbys", "group", g.Name, "sync", want)
		}
	}
}

// recordDivergence writes into the history what an old primary that
// rejoined actually held beyond the new primary.
func (n *Node) recordDivergence(now time.Duration, g *Group) {
	if g.Data == nil {
		return
	}
	ls := n.leadOf(g.Name)
	for _, m := range g.Members {
		var div, epoch uint64
		if m.Node == n.name {
			if dm := n.data[g.Name]; dm != nil {
				div, epoch = dm.diverged, dm.divEpoch
			}
		} else if p := n.peers[m.Node]; p != nil {
			st := p.groups[g.Name]
			div, epoch = st.Div, st.DivEpoch
		}
		if epoch == 0 || ls.diverged[epoch] {
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
				if g.Data.Type == "redis" {
					detail = fmt.Sprintf("%s rejoined holding %d bytes of replication stream the new primary lacked (discarded by its full resync)", m.Node, div)
				}
				lost := div
				if g.syncMode() != "off" {
					// Synchronous replication: none of it was acknowledged.
					detail += ", none of it acknowledged to a client (sync " + g.syncMode() + ")"
					if g.Data.Type == "redis" {
						// Redis cannot make a write wait for a replica; only WAIT tells the client.
						detail = strings.TrimSuffix(detail, ")") + ": none confirmed by WAIT)"
					}
					lost = 0
				}
				cmd := quorum.Command{Op: quorum.OpDiverged, Group: g.Name, Epoch: epoch, LostBytes: lost, Detail: detail}
				if err := n.d.Quorum.Propose(cmd); err == nil {
					ls.diverged[epoch] = true
				}
			}
			break
		}
	}
}
