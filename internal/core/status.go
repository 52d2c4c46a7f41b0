package core

import (
	"fmt"
	"slices"
	"time"
)

// Status is the agent's view of the cluster, served as GET /v1/status and
// printed by `baton status`. Field names are part of the stable --json output.
type Status struct {
	Cluster  string `json:"cluster"`
	Node     string `json:"node"`
	Leader   string `json:"leader"`
	RaftRole string `json:"raft_role"`
	Applied  uint64 `json:"applied_index"`
	Leaving  bool   `json:"leaving"`
	// Maintenance: automatic failover is paused cluster-wide.
	Maintenance bool          `json:"maintenance"`
	Nodes       []NodeStatus  `json:"nodes"`
	Groups      []GroupStatus `json:"groups"`
	Profile     string        `json:"profile"`
	HoldMs      int64         `json:"voter_hold_ms"`
	LeaseMs     int64         `json:"lease_ms"`
	HBMs        int64         `json:"heartbeat_interval_ms"`
	Generated   time.Time     `json:"generated"`
	// RejectedPackets counts heartbeats dropped as unauthenticated, replayed
	// or malformed; RejectedQuorumConns counts quorum connections that failed
	// the pinned-key TLS handshake.
	RejectedPackets     uint64 `json:"rejected_packets"`
	RejectedQuorumConns uint64 `json:"rejected_quorum_conns"`
	// QuorumVoters are the voters of the Raft configuration as this node
	// knows it (set by the shell); they follow the config's nodes, one
	// change at a time, after a reload added or removed one.
	QuorumVoters []string `json:"quorum_voters,omitempty"`
}

// NodeStatus is one node as this agent sees it.
type NodeStatus struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	API        string `json:"api"`
	Witness    bool   `json:"witness"`
	Self       bool   `json:"self"`
	Alive      bool   `json:"alive"`
	RaftRole   string `json:"raft_role"`
	LastSeenMs int64  `json:"last_seen_ms"` // -1: never heard
	Leaving    bool   `json:"leaving"`
	// RejectedStale counts this node's refusals of the peer's heartbeats
	// as stale (it restarted with a lower incarnation: see the log); set by
	// the shell.
	RejectedStale uint64 `json:"rejected_stale,omitempty"`
	// ProtocolMismatch is the heartbeat protocol version of the packets
	// this node refused from the peer because it does not speak it (set by
	// the shell; 0: none).
	ProtocolMismatch int `json:"protocol_mismatch,omitempty"`
	// ConfigHash is the hash of the config the node announced (hex, "" until
	// heard); ConfigDiffers marks a node whose config is not this node's
	// (a reload that has not reached every node yet).
	ConfigHash    string `json:"config_hash,omitempty"`
	ConfigDiffers bool   `json:"config_differs,omitempty"`
}

// GroupStatus is one group's replicated ownership plus this node's role.
type GroupStatus struct {
	Name    string         `json:"name"`
	Mode    string         `json:"mode"`
	Standby string         `json:"standby"`
	Owner   string         `json:"owner"`
	Epoch   uint64         `json:"epoch"`
	Role    string         `json:"role,omitempty"` // this node's role ("" if not a member)
	LeaseMs int64          `json:"lease_remaining_ms,omitempty"`
	Members []MemberStatus `json:"members"`
	Note    string         `json:"note,omitempty"` // why the leader is not acting, if it is the leader
	// Maintenance: automatic failover of this group is paused (here or cluster-wide).
	Maintenance bool   `json:"maintenance"`
	HandoffTo   string `json:"handoff_to,omitempty"`
	Failback    bool   `json:"failback"`
	// Healthy: this node's checks for the group pass (members only).
	Healthy bool `json:"healthy"`
	// Checks are this node's check states for the group (set by the runtime).
	Checks any `json:"checks,omitempty"`
	// SyncMode and Sync: a data-aware group's policy and its recorded
	// synchronous standbys.
	SyncMode string   `json:"sync_mode,omitempty"`
	Sync     []string `json:"sync,omitempty"`
	// DBError is this node's last driver error (e.g. wrong credentials, a
	// data dir another user owns), "" when its database answers.
	DBError string `json:"db_error,omitempty"`
	// Units is the per-VIP (or per-slot) ownership of an active-active group,
	// whose Epoch is then the sum of its units' epochs (it grows with every
	// change) and whose Owners lists every node owning a unit.
	Units  []UnitStatus `json:"units,omitempty"`
	Owners []string     `json:"owners,omitempty"`
	// VIPs are the group's virtual addresses (active-passive: they sit on
	// the owner; active-active: see Units).
	VIPs []string `json:"vips,omitempty"`
}

// UnitStatus is one unit of an active-active group: a VIP (or a slot when the
// group has no VIPs) with its own owner, lease and epoch.
type UnitStatus struct {
	Name      string `json:"name"` // e.g. web[1]
	VIP       string `json:"vip,omitempty"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	Role      string `json:"role,omitempty"` // this node's role
	LeaseMs   int64  `json:"lease_remaining_ms,omitempty"`
	HandoffTo string `json:"handoff_to,omitempty"`
}

// MemberStatus is one member of a group.
type MemberStatus struct {
	Node     string `json:"node"`
	Priority int    `json:"priority"`
	Alive    bool   `json:"alive"`
	Healthy  bool   `json:"healthy"`
	Role     string `json:"role"`
	// Data-aware groups: the member's database role and write position as
	// last reported, its lag behind the owner's position in bytes, and
	// whether it is a recorded synchronous standby.
	DB      string `json:"db,omitempty"`
	Pos     uint64 `json:"position,omitempty"`
	LagB    uint64 `json:"lag_bytes,omitempty"`
	SyncRec bool   `json:"synchronous,omitempty"`
}

// Status builds the status at time now.
func (n *Node) Status(now time.Duration) Status {
	v := n.view()
	st := Status{
		Cluster: n.spec.Cluster, Node: n.name, Leader: n.d.Quorum.Leader(), Applied: v.Index,
		Leaving: n.leaving, Profile: n.spec.Profile, HoldMs: n.hold.Milliseconds(),
		LeaseMs: n.timing.FailureTimeout.Milliseconds(), HBMs: n.timing.HeartbeatInterval.Milliseconds(),
		Generated: n.d.WallNow(), Maintenance: v.Maintenance,
	}
	if n.d.RaftRole != nil {
		st.RaftRole = n.d.RaftRole()
	}
	for _, nd := range n.spec.Nodes {
		ns := NodeStatus{Name: nd.Name, Address: nd.Address, API: nd.API, Witness: nd.Witness, LastSeenMs: -1}
		if nd.Name == n.name {
			ns.Self, ns.Alive, ns.RaftRole, ns.LastSeenMs, ns.Leaving = true, true, st.RaftRole, 0, n.leaving
			ns.ConfigHash = hashString(n.spec.ConfigHash)
		} else if p := n.peers[nd.Name]; p != nil && p.heard {
			ns.Alive, ns.RaftRole, ns.LastSeenMs, ns.Leaving = n.alive(now, p), p.raftRole, (now - p.lastHeard).Milliseconds(), p.leaving
			ns.ConfigHash = hashString(p.configHash)
			ns.ConfigDiffers = p.configHash != 0 && p.configHash != n.spec.ConfigHash
		}
		st.Nodes = append(st.Nodes, ns)
	}
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		out := GroupStatus{Name: g.Name, Mode: g.Mode, Standby: g.Standby, Owner: gs.Owner, Epoch: gs.Epoch,
			Role: n.Role(g.Name), Maintenance: v.Maintenance || gs.Maintenance, HandoffTo: gs.HandoffTo,
			Failback: g.Failback, Healthy: n.own[g.Name] != nil && n.healthy(g.Name)}
		if g.Parent == "" {
			out.VIPs = g.VIPs
		}
		if os := n.own[g.Name]; os != nil && os.role == RoleActive {
			out.LeaseMs = (os.expiry - now).Milliseconds()
		}
		ls := n.leadOf(g.Name)
		if n.d.Quorum.IsLeader() {
			out.Note = ls.why
		}
		anyHealthy := false
		for _, m := range g.Members {
			ms := MemberStatus{Node: m.Node, Priority: m.Priority, Role: RoleStandby}
			if m.Node == gs.Owner {
				ms.Role = RoleActive
			}
			if m.Node == n.name {
				ms.Alive, ms.Healthy = true, n.healthy(g.Name)
			} else if p := n.peers[m.Node]; p != nil {
				ms.Alive = n.alive(now, p)
				ms.Healthy = p.groups[g.Name].Healthy
			}
			if g.Data != nil {
				if d, ok := n.memberData(g.Name, m.Node); ok {
					ms.DB, ms.Pos = d.DB, d.Pos
				}
				ms.SyncRec = slices.Contains(gs.Sync, m.Node)
			}
			out.Members = append(out.Members, ms)
			anyHealthy = anyHealthy || (ms.Alive && ms.Healthy)
		}
		if g.Data != nil {
			out.SyncMode, out.Sync = g.Data.Sync, gs.Sync
			var ownerPos uint64
			for _, ms := range out.Members {
				if ms.Node == gs.Owner {
					ownerPos = ms.Pos
				}
			}
			for i := range out.Members {
				if ms := &out.Members[i]; ms.Node != gs.Owner && ownerPos > ms.Pos && ms.DB != "" {
					ms.LagB = ownerPos - ms.Pos
				}
			}
			if ls.dataWhy != "" && out.Note == "" {
				out.Note = "sync policy: " + ls.dataWhy
			}
		}
		if !anyHealthy && gs.Owner != "" {
			out.Note = "no member is healthy: the owner keeps the group (never fail over to something worse)"
		}
		st.Groups = append(st.Groups, out)
	}
	st.Groups = foldUnits(n.spec, st.Groups)
	return st
}

// hashString shows a config hash as 16 hex digits ("" for none).
func hashString(h uint64) string {
	if h == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", h)
}

// foldUnits replaces the units of each active-active group by one entry for
// the group that lists them.
func foldUnits(spec *Spec, units []GroupStatus) []GroupStatus {
	var out []GroupStatus
	folded := map[string]int{} // group → index in out
	for _, u := range units {
		uc := spec.Unit(u.Name)
		if uc == nil || uc.Parent == "" {
			out = append(out, u)
			continue
		}
		i, ok := folded[uc.Parent]
		if !ok {
			g := u
			g.Name, g.Owner, g.Epoch, g.Role, g.LeaseMs, g.HandoffTo, g.Note = uc.Parent, "", 0, "", 0, "", ""
			g.Members = slices.Clone(u.Members)
			for j := range g.Members {
				g.Members[j].Role = RoleStandby
			}
			out = append(out, g)
			i = len(out) - 1
			folded[uc.Parent] = i
		}
		g := &out[i]
		us := UnitStatus{Name: u.Name, Owner: u.Owner, Epoch: u.Epoch, Role: u.Role, LeaseMs: u.LeaseMs, HandoffTo: u.HandoffTo}
		if len(uc.VIPs) > 0 {
			us.VIP = uc.VIPs[0]
		}
		g.Units = append(g.Units, us)
		g.Epoch += u.Epoch
		if u.Role == RoleActive || g.Role == "" {
			g.Role = u.Role
		}
		if u.Note != "" && g.Note == "" {
			g.Note = u.Name + ": " + u.Note
		}
		if u.Owner != "" && !slices.Contains(g.Owners, u.Owner) {
			g.Owners = append(g.Owners, u.Owner)
		}
		for j := range g.Members {
			if g.Members[j].Node == u.Owner {
				g.Members[j].Role = RoleActive
			}
		}
	}
	return out
}
