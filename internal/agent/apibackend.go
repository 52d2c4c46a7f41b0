package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/metrics"
	"github.com/baton-ha/baton/internal/quorum"
)

// Status answers the API's status request from the agent loop.
func (a *Agent) Status(r *http.Request) (core.Status, error) {
	var st core.Status
	// Publishing first means that once status shows an owner, the DNS
	// zone and the proxies on this node already point at it.
	err := a.call(r.Context(), func(now time.Duration) {
		a.publish()
		st = a.node.Status(now)
		// a.checks and a.data change with a reload, on the loop.
		for i := range st.Groups {
			if hg := a.checks[st.Groups[i].Name]; hg != nil {
				st.Groups[i].Checks = hg.States()
			}
			if dg := a.data[st.Groups[i].Name]; dg != nil && dg.lastErr.Load() != nil {
				st.Groups[i].DBError = *dg.lastErr.Load()
			}
		}
	})
	for i := range st.Nodes {
		st.Nodes[i].RejectedStale = a.udp.StaleFrom(st.Nodes[i].Name)
		st.Nodes[i].ProtocolMismatch = a.udp.VersionFrom(st.Nodes[i].Name)
	}
	st.RejectedPackets = a.udp.Stats.Rejected()
	st.RejectedQuorumConns = a.raft.RejectedConns()
	if voters, err := a.raft.Voters(); err == nil {
		for _, v := range voters {
			st.QuorumVoters = append(st.QuorumVoters, v.ID)
		}
	}
	return st, err
}

// Events returns the replicated ownership history.
func (a *Agent) Events(r *http.Request) ([]quorum.Event, error) {
	return a.raft.View().Events, nil
}

// AppliedIndex is the index of the last quorum entry this node applied.
func (a *Agent) AppliedIndex() uint64 { return a.raft.View().Index }

// WaitApplied returns once this node applied the quorum entry at index.
func (a *Agent) WaitApplied(ctx context.Context, index uint64) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for a.raft.View().Index < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("quorum entry %d not applied here (at %d): %w", index, a.raft.View().Index, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// ReadIndex returns, on the quorum leader, an applied index holding every
// change acknowledged before the call (see raftstore.Raft.ReadIndex).
func (a *Agent) ReadIndex(ctx context.Context) (uint64, error) {
	idx, err := a.raft.ReadIndex(ctx)
	if errors.Is(err, quorum.ErrNotLeader) {
		return 0, fmt.Errorf("%w: this node (%s) no longer leads the quorum", core.ErrNotLeader, a.self.Name)
	}
	return idx, err
}

// Ready reports whether the agent knows a quorum leader.
func (a *Agent) Ready() bool { return a.raft.Leader() != "" }

// TransferLeadership moves quorum leadership to another voter, if this node leads.
func (a *Agent) TransferLeadership(r *http.Request, to string) error {
	if !a.raft.IsLeader() {
		return fmt.Errorf("this node (%s) does not lead the quorum; ask the leader %q", a.opts.Node, a.raft.Leader())
	}
	if to == a.opts.Node {
		return nil
	}
	return a.raft.TransferLeadership(to)
}

// Token returns the configured API token.
func (a *Agent) Token() string { return a.shared.Load().APIToken }

// LeaderAPI returns the quorum leader's API address and whether it is this node.
func (a *Agent) LeaderAPI() (string, bool) {
	cfg := a.shared.Load()
	if a.raft.IsLeader() {
		if n, err := cfg.NodeByName(a.opts.Node); err == nil {
			return n.API, true
		}
	}
	l := a.raft.Leader()
	if n, err := cfg.NodeByName(l); err == nil && l != "" {
		return n.API, false
	}
	return "", false
}

// SwitchoverResult is the answer to a completed switchover.
type SwitchoverResult struct {
	Group string `json:"group"`
	From  string `json:"from"`
	To    string `json:"to"`
	Epoch uint64 `json:"epoch"`
}

// switchoverRepropose is how long Switchover waits for its handoff to show
// in the replicated state before it proposes it again: a commit takes a few
// milliseconds, a leadership transfer that dropped it well under a second.
const switchoverRepropose = 500 * time.Millisecond

// Switchover runs on the leader: validate and commit the handoff request,
// then wait for the new owner to be committed.
func (a *Agent) Switchover(r *http.Request, group, to string) (SwitchoverResult, error) {
	var from, target string
	var epoch uint64
	var rerr error
	if err := a.call(r.Context(), func(now time.Duration) {
		from, target, epoch, rerr = a.node.RequestHandoff(now, group, to, quorum.ReasonSwitchover)
	}); err != nil {
		return SwitchoverResult{}, err
	}
	if rerr != nil {
		return SwitchoverResult{}, rerr
	}
	a.log.Info("switchover requested", "group", group, "from", from, "to", target)
	deadline := time.Now().Add(10 * time.Second)
	proposed := time.Now()
	for time.Now().Before(deadline) {
		gs := a.raft.View().Group(group)
		if gs.Epoch > epoch {
			return SwitchoverResult{Group: group, From: from, To: gs.Owner, Epoch: gs.Epoch}, nil
		}
		// Raft drops a proposal made while leadership is being transferred
		// (e.g. off a node that just became an owner); an operator's request
		// is not proposed again from the state like the leader's own, so ask
		// again while this node still leads.
		if gs.Epoch == epoch && gs.HandoffTo == "" && time.Since(proposed) > switchoverRepropose {
			proposed = time.Now()
			var again uint64
			if err := a.call(r.Context(), func(now time.Duration) {
				_, _, again, rerr = a.node.RequestHandoff(now, group, target, quorum.ReasonSwitchover)
			}); err != nil {
				return SwitchoverResult{}, err
			}
			if rerr != nil {
				if gs := a.raft.View().Group(group); gs.Epoch > epoch { // done in the meantime
					return SwitchoverResult{Group: group, From: from, To: gs.Owner, Epoch: gs.Epoch}, nil
				}
				return SwitchoverResult{}, rerr
			}
			epoch = again
			a.log.Info("switchover proposed again (the first proposal was not committed)", "group", group, "to", target)
		}
		select {
		case <-r.Context().Done():
			return SwitchoverResult{}, r.Context().Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return SwitchoverResult{}, &core.RequestError{Kind: core.ErrTimeout,
		Msg: fmt.Sprintf("switchover of %q to %s requested but not completed within 10s; see baton status", group, target)}
}

// Failover runs on the leader: force the group onto `to` (the old owner's
// lease must be gone) and wait for the commit.
func (a *Agent) Failover(r *http.Request, group, to string) (SwitchoverResult, error) {
	var epoch uint64
	var rerr error
	var from string
	if err := a.call(r.Context(), func(now time.Duration) {
		from = a.raft.View().Group(group).Owner
		epoch, rerr = a.node.ForceFailover(now, group, to)
	}); err != nil {
		return SwitchoverResult{}, err
	}
	if rerr != nil {
		return SwitchoverResult{}, rerr
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if gs := a.raft.View().Group(group); gs.Epoch > epoch {
			return SwitchoverResult{Group: group, From: from, To: gs.Owner, Epoch: gs.Epoch}, nil
		}
	}
	return SwitchoverResult{}, &core.RequestError{Kind: core.ErrTimeout, Msg: "forced failover proposed but not committed within 10s; see baton status"}
}

// Maintenance runs on the leader: commit and wait until applied.
func (a *Agent) Maintenance(r *http.Request, group string, on bool) error {
	var rerr error
	if err := a.call(r.Context(), func(time.Duration) { rerr = a.node.SetMaintenance(group, on) }); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	a.log.Warn("maintenance changed", "group", group, "on", on)
	if err := a.raft.Barrier(5 * time.Second); err != nil {
		return &core.RequestError{Kind: core.ErrUnavailable, Msg: "maintenance change not confirmed: " + err.Error()}
	}
	return nil
}

// MetricsHandler serves /metrics: gauges are refreshed from the agent's
// state at scrape time, so an idle agent spends nothing on them.
func (a *Agent) MetricsHandler() http.Handler {
	h := a.metrics.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var st core.Status
		if err := a.call(r.Context(), func(now time.Duration) { st = a.node.Status(now) }); err == nil {
			a.refreshMetrics(st)
		}
		h.ServeHTTP(w, r)
	})
}

func (a *Agent) refreshMetrics(st core.Status) {
	m := a.metrics
	m.SetClusterMaintenance(st.Maintenance)
	m.SetRaftState(a.raft.Role(), a.raft.IsLeader(), st.Applied)
	for _, n := range st.Nodes {
		if !n.Self {
			m.SetPeerAlive(n.Name, n.Alive)
		}
	}
	for _, g := range st.Groups {
		var members []string
		for _, mb := range g.Members {
			members = append(members, mb.Node)
		}
		role := g.Role
		if role == "" {
			role = "none"
		}
		if g.SyncMode != "" {
			var dbs []metrics.DBMember
			for _, mb := range g.Members {
				dbs = append(dbs, metrics.DBMember{Member: mb.Node, Role: mb.DB, Pos: mb.Pos, Lag: mb.LagB, Sync: mb.SyncRec})
			}
			m.SetDB(g.Name, dbs)
		}
		if len(g.Units) == 0 {
			m.SetGroup(g.Name, g.Owner, g.Epoch, role, members, g.Maintenance, g.Healthy)
			m.SetLeaseRemaining(g.Name, time.Duration(max(g.LeaseMs, 0))*time.Millisecond)
			continue
		}
		// Active-active: one series per unit (VIP), named like web[1].
		for _, u := range g.Units {
			role := u.Role
			if role == "" {
				role = "none"
			}
			m.SetGroup(u.Name, u.Owner, u.Epoch, role, members, g.Maintenance, g.Healthy)
			m.SetLeaseRemaining(u.Name, time.Duration(max(u.LeaseMs, 0))*time.Millisecond)
		}
	}
	for _, e := range a.raft.View().Events {
		if e.Seq > a.seenEvent && !e.Ownership() {
			a.seenEvent = e.Seq
			continue
		}
		if e.Seq > a.seenEvent {
			a.seenEvent = e.Seq
			m.Failover(e.Group, e.Reason)
			if e.DetectMs > 0 {
				m.ObserveDetection(e.Group, time.Duration(e.DetectMs)*time.Millisecond)
			}
			if e.From != "" {
				m.ObserveDecision(e.Group, time.Duration(e.DecideMs)*time.Millisecond)
			}
		}
		if e.TakeoverRecorded && !a.seenTakeover[e.Seq] {
			a.seenTakeover[e.Seq] = true
			m.ObserveTakeover(e.Group, time.Duration(e.TakeoverMs)*time.Millisecond)
		}
	}
}

// Crash exits the process at once, without handing off: a failure drill.
// The VIP fence sees its pipe close and removes the VIPs; the cluster
// detects the failure through the lease, as for a real crash.
func (a *Agent) Crash() {
	a.log.Warn("failure drill: exiting now without handing off")
	time.Sleep(50 * time.Millisecond) // let the HTTP answer go out
	os.Exit(3)
}

// Endpoints answers GET /v1/groups/{g}/endpoints from this node's view.
func (a *Agent) Endpoints(r *http.Request, group string) (core.Endpoints, error) {
	var e core.Endpoints
	var ok bool
	if err := a.call(r.Context(), func(time.Duration) { a.publish(); e, ok = a.node.Endpoints(group) }); err != nil {
		return core.Endpoints{}, &core.RequestError{Kind: core.ErrUnavailable, Msg: err.Error()}
	}
	if !ok {
		return core.Endpoints{}, &core.RequestError{Kind: core.ErrUnknownGroup, Msg: fmt.Sprintf("unknown group %q", group)}
	}
	return e, nil
}
