package core

import (
	"github.com/baton-ha/baton/internal/cluster"
)

// WorstHeartbeat is the largest heartbeat node may ever send under spec: it
// claims, relinquishes and reports on every unit it is a member of, gossips
// an owner with a pending handoff for every unit and a release of each, and
// every number is as long as years of failovers and writes can make it (and
// the config hash is as long as it can be). A unit a reload removed is still
// relinquished in heartbeats for a while, but the removal took more from the
// heartbeat (its owner, release, claim and status) than that adds. The
// config check uses it to refuse a cluster whose heartbeats would not fit in
// a datagram, which would otherwise leave every group unserved.
func WorstHeartbeat(spec *Spec, node string) *cluster.Message {
	const (
		epoch = 1_000_000_000             // a failover a second for 30 years
		pos   = 1_000_000_000_000_000     // a PB of write-ahead log
		ms    = 1_000_000                 // a takeover of a quarter hour
		sent  = 1_000_000_000_000_000_000 // 30 years of monotonic nanoseconds
	)
	longest := ""
	for _, n := range spec.Nodes {
		if len(n.Name) > len(longest) {
			longest = n.Name
		}
	}
	m := &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: sent, Leaving: true, Fresh: true, RaftRole: "candidate",
		Applied: pos, RelinquishReason: "switchover", ConfigHash: ^uint64(0)}
	for _, u := range spec.Units {
		m.Owners = append(m.Owners, cluster.Owner{Group: u.Name, Node: longest, Epoch: epoch, Prev: longest,
			HandoffTo: longest, HandoffReason: "switchover"})
		m.Released = append(m.Released, cluster.Claim{Group: u.Name, Epoch: epoch})
		if _, member := u.Member(node); !member {
			continue
		}
		m.Claims = append(m.Claims, cluster.Claim{Group: u.Name, Epoch: epoch})
		m.Relinquished = append(m.Relinquished, cluster.Claim{Group: u.Name, Epoch: epoch, LapsedMs: ms})
		gs := cluster.GroupStatus{Group: u.Name, Healthy: true, Eligible: true, Role: RoleStandby, Epoch: epoch, TakeoverMs: ms}
		if u.Data != nil {
			gs.DB, gs.Pos, gs.Sync, gs.SyncSet, gs.SyncSeq, gs.Div, gs.DivEpoch, gs.Unrelated = "standby", pos, []string{longest}, true, epoch, pos, epoch, true
		}
		m.Groups = append(m.Groups, gs)
	}
	return m
}
