package agent

// paceRaft runs Raft at the profile's idle pace (RaftIdleHeartbeatTimeout)
// while the core says the quorum leader owns no group and every group has an
// owner (core.Node.RaftIdle; docs/design.md explains why that costs no
// outage), and at the normal pace otherwise. It is called after every event of
// the loop; RaftIdle is cached per view and leader, so it costs a comparison
// when nothing changed.
func (a *Agent) paceRaft() {
	t := a.timing
	if t.RaftIdleHeartbeatTimeout <= t.RaftHeartbeatTimeout {
		return // no idle pace configured
	}
	idle := a.node.RaftIdle()
	if idle == a.raftIdle {
		return
	}
	hb, el := t.RaftHeartbeatTimeout, t.RaftElectionTimeout
	if idle {
		hb, el = t.RaftIdleHeartbeatTimeout, max(t.RaftIdleHeartbeatTimeout, t.RaftElectionTimeout)
	}
	// Recorded also when raft refuses (its checks are deterministic, so a
	// retry on every event would only repeat the log line).
	a.raftIdle = idle
	if err := a.raft.SetTimeouts(hb, el); err != nil {
		a.log.Warn("cannot change the raft pace; keeping the current one", "idle", idle, "err", err)
		return
	}
	if idle {
		a.log.Info("raft at its idle pace: the quorum leader owns no group", "leader", a.raft.Leader(), "heartbeat_timeout", hb)
	} else {
		a.log.Info("raft at its normal pace", "leader", a.raft.Leader(), "heartbeat_timeout", hb)
	}
}
