package config

import (
	"time"

	"github.com/baton-ha/baton/internal/core"
)

// profiles are the named timing presets. Every value says why it is what it is; change one only together with
// its reason.
var profiles = map[string]core.Timing{
	// default: one LAN (or a cloud subnet), robust to 10 % packet loss and a loaded CPU; target client-visible
	// outage p99 ≤ 0.6 s ≈ FailureTimeout·(1+ClockDrift)² + one commit + the takeover itself.
	"default": {
		// 8 heartbeats per lease: a lease lapses only if ~7 heartbeats in a row are lost, about 1e-7 at 10 % loss.
		HeartbeatInterval: 50 * time.Millisecond,
		// A standby or witness with nothing in flux only needs its peers to see it alive (heard within the failure
		// timeout) and healthy: 4 heartbeats per failure timeout, so it looks dead only if 4 in a row are lost
		// (1e-4 at 10 % loss), which would merely skip it as a candidate for that moment. Owners, and every node
		// while a group changes hands, keep the heartbeat interval.
		QuietHeartbeatInterval: 100 * time.Millisecond,
		// The bulk of the outage budget: 0.4 s of lease plus ~0.2 s for commit and takeover stays under 0.6 s.
		FailureTimeout: 400 * time.Millisecond,
		// Covers a scheduling hiccup of the agent plus removing the VIP, so the VIP is gone before the lease ends.
		LeaseGuard: 60 * time.Millisecond,
		// Far above real monotonic-clock drift (~1e-4) yet it costs only 1 % of the lease (4 ms).
		ClockDrift: 0.01,
		// Raft timeouts well below the lease, so a Raft leader election completes while the lease is still
		// running and does not add to the outage.
		RaftHeartbeatTimeout: 150 * time.Millisecond,
		RaftElectionTimeout:  150 * time.Millisecond,
		// As long as the heartbeat timeout (Raft allows no more): a leader cut off from its followers steps down
		// by the time they could elect another one. It also bounds RaftIdleHeartbeatTimeout (below).
		RaftLeaderLease: 150 * time.Millisecond,
		// While the quorum leader owns no group, its death needs no failover, so its followers may wait longer
		// before an election: raft heartbeats come every 37.5–75 ms instead of 15–30 ms (2.5× fewer RPCs over
		// TLS, the largest idle cost). 2.5 × the leader lease: the longest gap between heartbeats (75 ms) is half
		// the lease the leader checks them against, so a delayed heartbeat does not make it step down.
		RaftIdleHeartbeatTimeout: 375 * time.Millisecond,
		// hashicorp/raft's leader sends every follower an AppendEntries each CommitTimeout (randomized up to twice
		// that), over TLS: at 50 ms the largest part of the leader's idle CPU. It used to be how followers learned
		// the commit index; now the leader announces every commit at once (raftstore: announceCommits), so this
		// is only the fallback for an announcement that did not get through. Nothing waits for it on a failover:
		// the new owner learns of its election through heartbeat gossip.
		RaftCommitTimeout: 500 * time.Millisecond,
		// Enough for all members of a cluster started together to come up and be heard.
		StartupGrace: 2 * time.Second,
	},
	// fast: a quiet LAN with little loss and idle CPUs; target outage p99 ≤ 0.2 s. Same ratios as default, scaled
	// down; it trades robustness to loss and load for speed.
	"fast": {
		// 7.5 heartbeats per lease: still ~7 losses in a row before a false failover.
		HeartbeatInterval: 20 * time.Millisecond,
		// As in default: 4 per failure timeout (rounded down) for a node with nothing in flux.
		QuietHeartbeatInterval: 35 * time.Millisecond,
		// 0.15 s of lease leaves ~50 ms for commit and takeover within 0.2 s.
		FailureTimeout: 150 * time.Millisecond,
		// A 30 ms scheduling stall is rare on a quiet host; removing a VIP takes well under 1 ms.
		LeaseGuard: 30 * time.Millisecond,
		// As in default: far above real drift, 1.5 ms of the lease.
		ClockDrift: 0.01,
		// Below the lease so a Raft election completes while the lease still runs.
		RaftHeartbeatTimeout: 60 * time.Millisecond,
		RaftElectionTimeout:  60 * time.Millisecond,
		// As in default: as long as the heartbeat timeout, and 2.5 × that while the leader owns no group.
		RaftLeaderLease:          60 * time.Millisecond,
		RaftIdleHeartbeatTimeout: 150 * time.Millisecond,
		// As in default: only the fallback for a lost commit announcement, half the default's.
		RaftCommitTimeout: 250 * time.Millisecond,
		// Nodes on a quiet LAN come up quickly.
		StartupGrace: time.Second,
	},
	// wan: nodes in different zones or sites, with round trips of tens of milliseconds and bursts of loss;
	// outages of a few seconds.
	"wan": {
		// Several cross-zone round trips between heartbeats; 12 heartbeats per lease ride out bursts of loss.
		HeartbeatInterval: 250 * time.Millisecond,
		// As in default: still 6 per failure timeout for a node with nothing in flux.
		QuietHeartbeatInterval: 500 * time.Millisecond,
		// Long enough that a routing blip between zones does not move a group.
		FailureTimeout: 3 * time.Second,
		// Covers slower VIP or route changes (e.g. cloud APIs) and scheduling on busy hosts.
		LeaseGuard: 500 * time.Millisecond,
		// As in default: far above real drift, 30 ms of the lease.
		ClockDrift: 0.01,
		// A few WAN round trips, still a third of the lease.
		RaftHeartbeatTimeout: time.Second,
		RaftElectionTimeout:  time.Second,
		// As in default: as long as the heartbeat timeout, and 2.5 × that while the leader owns no group.
		RaftLeaderLease:          time.Second,
		RaftIdleHeartbeatTimeout: 2500 * time.Millisecond,
		// As in default: only the fallback for a lost commit announcement; one raft heartbeat timeout.
		RaftCommitTimeout: time.Second,
		// Sites may come up at different speeds.
		StartupGrace: 5 * time.Second,
	},
}

// profileNames in the order they are documented.
var profileNames = []string{"default", "fast", "wan"}

// Profile returns the timing preset called name: "default", "fast" or "wan".
func Profile(name string) (core.Timing, bool) {
	t, ok := profiles[name]
	return t, ok
}

// Timing returns the cluster's effective timing: its profile (default when unknown) with the explicit overrides
// of the cluster section applied. heartbeat_interval sets the quiet heartbeat interval to twice itself
// (at most a quarter of the failure timeout);
// raft_timeout sets the Raft heartbeat and election timeouts, the leader lease
// to two thirds of it (Raft needs the lease below the heartbeat timeout), and the idle heartbeat timeout to 2.5 ×
// the lease (see the default profile).
func (c *Config) Timing() core.Timing {
	t, ok := Profile(c.Cluster.Profile)
	if !ok {
		t = profiles["default"]
	}
	cl := c.Cluster
	if cl.HeartbeatInterval != nil {
		t.HeartbeatInterval = cl.HeartbeatInterval.D()
		t.QuietHeartbeatInterval = 2 * t.HeartbeatInterval
	}
	if cl.FailureTimeout != nil {
		t.FailureTimeout = cl.FailureTimeout.D()
	}
	if cl.LeaseGuard != nil {
		t.LeaseGuard = cl.LeaseGuard.D()
	}
	if cl.ClockDrift != nil {
		t.ClockDrift = *cl.ClockDrift
	}
	if cl.RaftTimeout != nil {
		t.RaftHeartbeatTimeout = cl.RaftTimeout.D()
		t.RaftElectionTimeout = cl.RaftTimeout.D()
		t.RaftLeaderLease = cl.RaftTimeout.D() * 2 / 3
		t.RaftIdleHeartbeatTimeout = t.RaftLeaderLease * 5 / 2
	}
	if cl.StartupGrace != nil {
		t.StartupGrace = cl.StartupGrace.D()
	}
	// Whatever was overridden: at least 4 quiet heartbeats per failure timeout (see the default profile), and
	// never more often than the heartbeat interval.
	t.QuietHeartbeatInterval = max(min(t.QuietHeartbeatInterval, t.FailureTimeout/4), t.HeartbeatInterval)
	return t
}
