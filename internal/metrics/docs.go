package metrics

// Doc describes one baton_* metric family for generated documentation.
//
// Labels are the labels that vary per series. Every baton_* series also
// carries the constant labels cluster and node (see New); they are not
// repeated here.
type Doc struct {
	Name   string   // full metric name, e.g. "baton_group_epoch"
	Type   string   // "counter", "gauge" or "histogram"
	Labels []string // variable labels, in order
	Help   string   // the HELP text exposed to Prometheus
}

// The metric definitions. The collectors in New are built from these same
// values, so the exposed HELP text and the generated docs cannot drift apart.
var (
	docGroupEpoch = Doc{"baton_group_epoch", "gauge", []string{"group"},
		"Ownership epoch (fencing token) of the group in the replicated state as this node last saw it; it grows by one with every change of owner."}
	docGroupOwner = Doc{"baton_group_owner", "gauge", []string{"group", "owner"},
		"1 for the member that owns the group, 0 for every other member; no series is 1 while the group has no owner."}
	docGroupRole = Doc{"baton_group_role", "gauge", []string{"group", "role"},
		"1 for this node's current role in the group (active, standby or none), 0 for the other roles."}
	docGroupMaintenance = Doc{"baton_group_maintenance", "gauge", []string{"group"},
		"1 while automatic failover of the group is paused for maintenance, else 0."}
	docGroupHealthy = Doc{"baton_group_healthy", "gauge", []string{"group"},
		"1 while all of this node's health checks for the group pass, else 0."}
	docClusterMaintenance = Doc{"baton_cluster_maintenance", "gauge", nil,
		"1 while automatic failover is paused cluster-wide for maintenance, else 0."}

	docFailovers = Doc{"baton_failovers_total", "counter", []string{"group", "reason"},
		"Changes of owner of the group recorded by this node, by reason (initial, failure, shutdown, check, switchover, failback, hook, relinquish, manual)."}
	docDetection = Doc{"baton_failover_detection_seconds", "histogram", []string{"group"},
		"Seconds from the last heartbeat of a failed owner until a quorum of voters released its lease, per unplanned failover of the group."}
	docDecision = Doc{"baton_failover_decision_seconds", "histogram", []string{"group"},
		"Seconds from a quorum of lease releases until the new owner of the group was proposed, per failover."}
	docTakeover = Doc{"baton_failover_takeover_seconds", "histogram", []string{"group"},
		"Seconds the new owner of the group took from learning of its election to holding the lease and acting, per failover."}
	docLeaseRemaining = Doc{"baton_lease_remaining_seconds", "gauge", []string{"group"},
		"Seconds left on this node's lease for the group as measured on this node's clock; 0 when this node does not own the group."}

	docHeartbeatRTT = Doc{"baton_heartbeat_rtt_seconds", "histogram", []string{"peer"},
		"Round-trip time of heartbeats between this node and the peer, in seconds."}
	docPeerUp = Doc{"baton_peer_up", "gauge", []string{"peer"},
		"1 while this node considers the peer alive (its heartbeats arrive in time), else 0."}
	docPacketsSent = Doc{"baton_heartbeat_packets_sent_total", "counter", nil,
		"Heartbeat packets this node sent, over all peers."}
	docPacketsReceived = Doc{"baton_heartbeat_packets_received_total", "counter", nil,
		"Heartbeat packets this node received and accepted (authenticated, from a known peer, not a replay), over all peers."}
	docPacketsRejected = Doc{"baton_heartbeat_packets_rejected_total", "counter", []string{"reason"},
		"Heartbeat packets this node received and dropped, by reason (auth: bad key or signature; replay: old sequence number; malformed: cannot be decoded; unknown_peer: sender name does not match its address; misdirected: authentic but addressed to another node; version: another heartbeat protocol version)."}

	docSendErrors = Doc{"baton_heartbeat_send_errors_total", "counter", nil,
		"Heartbeat packets this node could not send: a heartbeat beyond the 64 packets one may be split into (check-config refuses such a config), or the socket refused them (each is also logged at ERROR, rate-limited)."}

	docQuorumLeader = Doc{"baton_quorum_leader", "gauge", nil,
		"1 while this node is the leader of the quorum store (Raft), else 0."}
	docQuorumApplied = Doc{"baton_quorum_applied_index", "gauge", nil,
		"Index of the last quorum store (Raft) log entry this node applied."}
	docQuorumRole = Doc{"baton_quorum_role", "gauge", []string{"role"},
		"1 for this node's current quorum store (Raft) role (leader, follower, candidate or shutdown), 0 for the other roles."}
	docQuorumRejected = Doc{"baton_quorum_connections_rejected_total", "counter", nil,
		"Inbound quorum store (Raft) connections this node refused: failed mutual-TLS handshake or too many handshakes pending."}

	docCheckResults = Doc{"baton_check_results_total", "counter", []string{"group", "check", "result"},
		"Health check runs on this node for the group, by check and result (pass or fail)."}
	docCheckDuration = Doc{"baton_check_duration_seconds", "histogram", []string{"group", "check"},
		"Seconds one run of the health check took on this node, whatever its result."}
	docHookRuns = Doc{"baton_hook_runs_total", "counter", []string{"group", "hook", "result"},
		"Hook runs on this node for the group, by hook and result (ok or error)."}
	docHookDuration = Doc{"baton_hook_duration_seconds", "histogram", []string{"group", "hook"},
		"Seconds one run of the hook took on this node, whatever its result."}

	docDNSQueries = Doc{"baton_dns_queries_total", "counter", []string{"rcode"},
		"Queries the built-in DNS server answered on this node, by response code (NOERROR, NXDOMAIN, REFUSED, ...)."}
	docDNSDuration = Doc{"baton_dns_query_duration_seconds", "histogram", nil,
		"Seconds from a parsed DNS query to its answer handed to the socket."}
	docProxyConns = Doc{"baton_proxy_connections_total", "counter", []string{"group", "target"},
		"Client connections the group's proxy on this node connected to the target node."}

	docDBPosition = Doc{"baton_db_position_bytes", "gauge", []string{"group", "member"},
		"Data-aware groups: the member's database write position (e.g. PostgreSQL LSN) as last reported."}
	docDBLag = Doc{"baton_db_lag_bytes", "gauge", []string{"group", "member"},
		"Data-aware groups: bytes the member's database trails the owner's position."}
	docDBSync = Doc{"baton_db_synchronous", "gauge", []string{"group", "member"},
		"Data-aware groups: 1 for the member recorded as the owner's synchronous standby."}
	docDBRole = Doc{"baton_db_role", "gauge", []string{"group", "member", "role"},
		"Data-aware groups: 1 for the role the member's database reports (primary, standby, stopped, unknown)."}

	docConfigReloads = Doc{"baton_config_reloads_total", "counter", []string{"result"},
		"Config reloads on this node (SIGHUP, baton reload), by result: applied, unchanged or refused (the running config stayed)."}

	docBuildInfo = Doc{"baton_build_info", "gauge", []string{"version"},
		"Always 1; the version label names the Baton build this node runs."}
)

var allDocs = []Doc{
	docGroupEpoch, docGroupOwner, docGroupRole, docGroupMaintenance, docGroupHealthy, docClusterMaintenance,
	docFailovers, docDetection, docDecision, docTakeover, docLeaseRemaining,
	docHeartbeatRTT, docPeerUp, docPacketsSent, docPacketsReceived, docPacketsRejected, docSendErrors,
	docQuorumLeader, docQuorumApplied, docQuorumRole, docQuorumRejected,
	docCheckResults, docCheckDuration, docHookRuns, docHookDuration,
	docDNSQueries, docDNSDuration, docProxyConns,
	docDBPosition, docDBLag, docDBSync, docDBRole,
	docConfigReloads, docBuildInfo,
}

// Describe returns the documentation of every baton_* metric, in a stable
// order. The result is a copy; callers may modify it.
func Describe() []Doc {
	out := make([]Doc, len(allDocs))
	for i, d := range allDocs {
		d.Labels = append([]string(nil), d.Labels...)
		out[i] = d
	}
	return out
}
