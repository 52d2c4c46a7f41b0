package core

import "time"

// Timing is the effective set of timing values of a cluster: a profile with the config's overrides applied
// (package config holds the profiles and the reason for every value).
type Timing struct {
	// HeartbeatInterval is how often an owner renews its lease with every voter.
	HeartbeatInterval time.Duration
	// QuietHeartbeatInterval is how often a node with nothing in flux heartbeats (it claims no lease, released
	// none recently, every unit has an owner, it is in no data group): its heartbeats then only keep it alive in
	// its peers' eyes and refresh its health. Zero means HeartbeatInterval.
	QuietHeartbeatInterval time.Duration
	// FailureTimeout is the lease length L: a voter promises not to release an owner's lease before
	// L·(1+ClockDrift) has passed since the owner's last heartbeat it acked.
	FailureTimeout time.Duration
	// LeaseGuard is how long before its lease ends an owner that could not renew stops acting (drops its VIPs).
	LeaseGuard time.Duration
	// ClockDrift bounds the rate difference between any two nodes' monotonic clocks (0.01 = 1 %).
	ClockDrift float64

	// Raft settings of the quorum store (hashicorp/raft Config fields of the same names).
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	RaftLeaderLease      time.Duration
	RaftCommitTimeout    time.Duration
	// RaftIdleHeartbeatTimeout replaces RaftHeartbeatTimeout and RaftElectionTimeout while the quorum leader owns
	// no group (Node.RaftIdle): its death then costs no failover, so a slower election costs no outage, and the
	// leader's heartbeats (one per follower every tenth of this) come less often. At most 2.5 × RaftLeaderLease,
	// so that the longest gap between two heartbeats (a fifth of it) stays within half the leader lease.
	RaftIdleHeartbeatTimeout time.Duration

	// StartupGrace is how long after start a node waits for the other members before taking a group, so that the
	// highest-priority member, not the first one up, gets it.
	StartupGrace time.Duration
}
