// Package core is Baton's deterministic state machine: one agent's decisions
// about leases, ownership and data, with no clock, no sockets, no processes
// and no goroutines. The runtime shell (package agent) or the in-process
// harness (package sim) calls Start, Tick, Receive, StateChanged and the
// report methods with the node's monotonic time, and carries out what the
// core asks through Deps: messages to send, role transitions, acting
// deadlines, quorum proposals and driver operations. A test in this package
// checks that it imports nothing that does I/O.
//
// A Node plays three parts at once:
//   - voter (voter.go): acks the lease claims of owners, and releases a lease
//     (durably, never to ack it again) once the owner has been silent for a
//     full hold;
//   - member (lease.go, member.go, syncstandby.go): claims the groups the
//     replicated state says it owns, counts the voters' acks into a lease,
//     acts (hooks, front doors) only while the lease is valid, demotes itself
//     a guard interval before it ends, and runs the member's half of the
//     data protocol;
//   - leader (leader.go, data.go, spread.go) when it leads the quorum: assigns
//     a group to the best member once a majority of voters released the
//     previous owner's lease, and answers operator requests (requests.go).
//
// What a node knows of the replicated state is its view (view.go): its
// replica, overlaid with newer committed ownership gossiped in heartbeats.
package core

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum"
)

// Roles of a node for a group.
const (
	RoleStandby = "standby"
	RoleActive  = "active"
	// RoleFault is reported (to hooks) when a member's health checks start
	// failing; it is not a lease state.
	RoleFault = "fault"
)

// Transition is handed to the shell whenever this node's role for a group
// changes. The shell runs hooks and effects asynchronously; the node never
// waits for them.
type Transition struct {
	Group         string
	Role          string // active | standby | fault
	Epoch         uint64
	PreviousOwner string
	// Reason is one of the history's reasons (quorum.Reason*): why this node
	// got the group (active: the reason of its epoch's history entry) or
	// lost it (standby: its relinquish reason, or failure when its lease
	// lapsed or another node was made owner), plus quorum.ReasonStartup and
	// quorum.ReasonHealth. Hooks get it as BATON_REASON.
	Reason string
	// Sync (data-aware groups, Role active): the synchronous standbys the
	// database must name before it is promoted — the set recorded for this
	// epoch. Usually empty (a new epoch records none yet), but an owner that
	// re-acquires its own epoch (after an agent restart) must keep waiting
	// for the recorded standby, or it would acknowledge writes that standby
	// lacks while a failover may still promote it.
	Sync []string
}

// Deps are the node's seams to the outside world. Every function is called on
// the caller's goroutine, from inside a Node method, and must not block.
type Deps struct {
	Name   string
	Spec   *Spec
	Quorum quorum.Quorum
	// Send delivers a message to one peer (best effort: it may be lost).
	Send func(to string, m *cluster.Message)
	// SendMany delivers one message to several peers (optional: nil sends
	// to each with Send). The transport encodes and hashes it once.
	SendMany func(to []string, m *cluster.Message)
	// OnRole reports a role transition.
	OnRole func(t Transition)
	// OnRTT reports a heartbeat round trip (optional).
	OnRTT func(peer string, rtt time.Duration)
	// OnActing reports, for a group this node acts for, the time (on the
	// node's clock) until which it may act; called whenever that moves. The
	// shell hands it to the fence that removes the VIPs at that moment if
	// the agent itself cannot (killed, frozen).
	OnActing func(group string, until time.Duration)
	// Healthy reports whether this node's checks for a group pass (nil:
	// always healthy).
	Healthy  func(group string) bool
	Releases ReleaseStore
	// SaveReleases, if set, makes lease releases durable off the core's
	// loop: the shell calls Releases.Save(released) elsewhere and then
	// ReleasesSaved on the loop. nil: Releases.Save runs in place, and a slow
	// disk stalls the node (no heartbeats, no acks) for as long as it takes.
	SaveReleases func(released map[string]uint64)
	// WallNow dates history entries (informational only; decisions use the
	// monotonic time passed to every method).
	WallNow  func() time.Time
	RaftRole func() string
	// TransferLeadership moves quorum leadership to another voter (nil: never).
	TransferLeadership func(to string)
	// DataOp asks the shell to run a driver operation for a data-aware group
	// (see syncstandby.go); the shell reports the outcome with DataOpDone.
	DataOp func(group string, op DataOp)
	// Fresh: this node's durable state is new (a first start, or a member
	// whose data_dir was lost). Its voter has forgotten every release it
	// made, so it acks nothing until its view has caught up with the
	// cluster's (see caughtUp).
	Fresh bool
	Log   *slog.Logger
}

// Node is one agent's deterministic core. Not safe for concurrent use: the
// shell serialises every call on one goroutine.
type Node struct {
	d       Deps
	spec    *Spec
	name    string
	timing  Timing
	voters  []string
	isVoter bool
	major   int
	hold    time.Duration
	members []*Group // units this node is a member of
	groups  []*Group // every unit (voter duty)
	spread  []*Group // active-active groups, whose units the leader spreads

	started    bool
	startAt    time.Duration
	floor      time.Duration // no release before this (start or last stall + hold)
	lastTick   time.Duration
	nextHB     time.Duration
	hbEvery    time.Duration // the current regular heartbeat interval (heartbeatEvery)
	leaving    bool
	announced  bool // initial standby roles reported
	healthSeen map[string]bool
	faulted    map[string]bool // a fault transition was reported and no recovery since
	lastXfer   time.Duration
	pace       paceCache
	wake       wakeCache
	ackRTT     time.Duration // the round trip of the newest ack received (leaseAtRisk)
	// dropped: units a reload took from this node while it owned them,
	// with the epoch it relinquished (see Reconfigure).
	dropped map[string]uint64
	// fresh: acks wait for caughtUp; catchUpTo is the applied index a
	// majority of voters reported when first heard (0: not yet).
	fresh     bool
	catchUpTo uint64

	viewState
	// lastOwners is the ownership gossiped in the last heartbeat, lastClaims
	// its claim set; a change is announced at once rather than at the next
	// interval.
	lastOwners string
	lastClaims string
	keyBuf     []byte // scratch for claimKey and ownersKey
	// gossip is what the heartbeats last said about each unit (see
	// heartbeat.go); hbCount numbers heartbeats for the refresh rotation;
	// until fullUntil every heartbeat carries everything.
	gossip    map[string]*unitGossip
	hbCount   uint64
	fullUntil time.Duration

	own   map[string]*ownState   // member duty, per unit
	vote  map[string]*voteState  // voter duty, per unit
	lead  map[string]*leadState  // leader duty, per unit or group
	data  map[string]*dataMember // member duty, per data-aware group
	peers map[string]*peerState  // what each peer last said
	log   *slog.Logger
}

// peerState is what this node last heard from a peer.
type peerState struct {
	heard        bool
	lastHeard    time.Duration
	groups       map[string]cluster.GroupStatus
	groupAt      map[string]time.Duration // group → when its status last arrived here
	released     map[string]uint64
	relinquished map[string]uint64
	relReason    string
	relLapsed    map[string]uint64 // group → the LapsedMs of its newest relinquishment
	leaving      bool
	raftRole     string
	applied      uint64
	configHash   uint64                   // the hash of the config it runs (0: not announced)
	lastClaim    map[string]time.Duration // group → when its claim last arrived here
}

// NewNode builds a node; call Start before anything else.
func NewNode(d Deps) (*Node, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.WallNow == nil {
		return nil, fmt.Errorf("core: Deps.WallNow is required")
	}
	if d.OnRole == nil {
		d.OnRole = func(Transition) {}
	}
	if d.DataOp == nil {
		d.DataOp = func(string, DataOp) {}
	}
	self, ok := d.Spec.Node(d.Name)
	if !ok {
		return nil, fmt.Errorf("unknown node %q", d.Name)
	}
	n := &Node{
		d: d, spec: d.Spec, name: d.Name, timing: d.Spec.Timing, voters: d.Spec.Voters(),
		own: map[string]*ownState{}, vote: map[string]*voteState{}, peers: map[string]*peerState{},
		lead: map[string]*leadState{}, data: map[string]*dataMember{}, healthSeen: map[string]bool{}, faulted: map[string]bool{},
		dropped:   map[string]uint64{},
		viewState: viewState{hints: map[string]cluster.Owner{}}, gossip: map[string]*unitGossip{},
		log: d.Log,
	}
	n.isVoter = slices.Contains(n.voters, self.Name)
	n.major = decide.Majority(len(n.voters))
	n.hold = decide.VoterHold(n.timing.FailureTimeout, n.timing.ClockDrift)
	for _, g := range d.Spec.Groups {
		if g.Mode == ModeActiveActive {
			n.spread = append(n.spread, g)
		}
	}
	for _, g := range d.Spec.Units {
		n.groups = append(n.groups, g)
		if _, ok := g.Member(n.name); ok {
			n.members = append(n.members, g)
			n.own[g.Name] = &ownState{role: RoleStandby}
			if g.Data != nil {
				n.data[g.Name] = &dataMember{}
			}
		}
		n.vote[g.Name] = &voteState{}
	}
	for _, nd := range d.Spec.Nodes {
		if nd.Name != n.name {
			n.peers[nd.Name] = newPeerState()
		}
	}
	n.fresh = d.Fresh
	return n, nil
}

func newPeerState() *peerState {
	return &peerState{groups: map[string]cluster.GroupStatus{}, groupAt: map[string]time.Duration{}, released: map[string]uint64{},
		relinquished: map[string]uint64{}, relLapsed: map[string]uint64{}, lastClaim: map[string]time.Duration{}}
}

// Start initialises the node at time now: loads durable releases and starts
// the voter's quiet period (a restarted voter has forgotten its promises).
// The initial standby roles are reported once the node knows the state (see
// announceStart).
func (n *Node) Start(now time.Duration) error {
	rel, err := n.d.Releases.Load()
	if err != nil {
		return fmt.Errorf("load released leases: %w", err)
	}
	for g, e := range rel {
		if v := n.vote[g]; v != nil {
			v.releasedMax = e
		}
	}
	n.started, n.startAt, n.lastTick = true, now, now
	n.floor = now
	n.refreshView(now)
	n.sendHeartbeats(now)
	return nil
}

// Tick advances timers: heartbeats, lease expiry, releases, leader decisions.
// Call it when NextTick says (wake.go).
func (n *Node) Tick(now time.Duration) {
	// A gap far longer than the tick period means this process was stopped or
	// starved: packets may be waiting unread, so silence observed across the gap
	// proves nothing. Distrust it: no release until a full hold from now.
	if gap := now - n.lastTick; gap > n.stallThreshold() {
		n.floor = now
		n.log.Warn("agent was stalled; distrusting timeouts for one lease hold", "stall", gap.Round(time.Millisecond))
	}
	n.lastTick = now
	if n.fresh {
		n.caughtUp() // say so as soon as it is, not at the next claim
	}
	n.refreshView(now)
	n.checkReleases(now)
	n.selfChecks(now)
	n.updateRoles(now)
	n.abandonReleased(now)
	n.giveUpUnacked(now)
	if now >= n.nextHB {
		n.sendHeartbeats(now)
	}
	if n.d.Quorum.IsLeader() {
		n.leadAll(now)
	}
}

func (n *Node) stallThreshold() time.Duration {
	return min(4*n.timing.HeartbeatInterval, n.timing.FailureTimeout/2)
}

// StateChanged is called when the replicated state was applied or leadership
// changed: owners claim at once instead of waiting for the next tick.
func (n *Node) StateChanged(now time.Duration) {
	n.refreshView(now)
	n.updateRoles(now)
	if n.claimKey() != n.lastClaims || n.ownersKey() != n.lastOwners {
		n.sendHeartbeats(now)
	}
	if n.d.Quorum.IsLeader() {
		n.leadAll(now)
	}
}

// Receive handles one authenticated message from a peer.
func (n *Node) Receive(now time.Duration, from string, m *cluster.Message) {
	p := n.peers[from]
	if p == nil {
		return
	}
	if !n.alive(now, p) || m.Fresh {
		// A peer heard for the first time, again after a silence, or that
		// just started may have missed what the heartbeats send only on
		// change: send it everything for a while.
		n.fullUntil = max(n.fullUntil, now+n.gossipFor())
	}
	p.heard, p.lastHeard = true, now
	switch m.Kind {
	case cluster.KindHeartbeat:
		n.receiveHeartbeat(now, from, p, m)
	case cluster.KindAck:
		if !slices.Contains(n.voters, from) {
			return
		}
		if len(m.Acked) > 0 && time.Duration(m.Echo) <= now {
			n.ackRTT = now - time.Duration(m.Echo)
			if n.d.OnRTT != nil {
				n.d.OnRTT(from, n.ackRTT)
			}
		}
		for _, c := range m.Acked {
			n.ackFrom(now, from, c, time.Duration(m.Echo))
		}
		n.updateRoles(now)
	}
}

func (n *Node) receiveHeartbeat(now time.Duration, from string, p *peerState, m *cluster.Message) {
	p.leaving, p.raftRole, p.applied, p.configHash = m.Leaving, m.RaftRole, m.Applied, m.ConfigHash
	if n.learn(m.Owners) {
		n.StateChanged(now)
	}
	// Heartbeats carry a group's status when it changed and on a rotating
	// refresh (every refreshEvery), so a group the sender has not mentioned
	// for longer than that is one it no longer has (it reloaded a config
	// without it, or runs one that never had it): it cannot take it, whatever
	// it said before.
	for _, gs := range m.Groups {
		p.groups[gs.Group] = gs
		p.groupAt[gs.Group] = now
	}
	for g, at := range p.groupAt {
		if now-at > n.groupForget() {
			delete(p.groups, g)
			delete(p.groupAt, g)
		}
	}
	newRelease := false
	for _, r := range m.Released {
		if r.Epoch > p.released[r.Group] {
			p.released[r.Group], newRelease = r.Epoch, true
		}
	}
	var rel []releaseReq
	for _, r := range m.Relinquished {
		if r.Epoch > p.relinquished[r.Group] {
			p.relinquished[r.Group] = r.Epoch
			p.relReason = m.RelinquishReason
			p.relLapsed[r.Group] = r.LapsedMs
		}
		if req, ok := n.onRelinquish(from, r); ok {
			rel = append(rel, req)
		}
	}
	n.releaseAll(now, rel)
	for _, c := range m.Claims {
		p.lastClaim[c.Group] = now
	}
	if n.isVoter && len(m.Claims) > 0 {
		if acked := n.grant(now, from, m.Claims); len(acked) > 0 {
			n.d.Send(from, &cluster.Message{Kind: cluster.KindAck, Echo: m.SentAt, Acked: acked})
		}
	}
	// A voter's heartbeat repeats every release it ever made; only a new one
	// can change a decision before the next tick.
	if n.d.Quorum.IsLeader() && newRelease {
		n.leadAll(now)
	}
}

func (n *Node) alive(now time.Duration, p *peerState) bool {
	return p.heard && now-p.lastHeard < n.timing.FailureTimeout
}

func (n *Node) heardAnyPeer() bool {
	for _, p := range n.peers {
		if p.heard {
			return true
		}
	}
	return false
}

// PeerLeaving reports whether a peer announced a planned shutdown.
func (n *Node) PeerLeaving(name string) bool {
	p := n.peers[name]
	return p != nil && p.leaving
}

// Spec returns the configuration the node runs with.
func (n *Node) Spec() *Spec { return n.spec }

// Hold is the voter hold H = L·(1+ρ)²: how long a voter waits after its last
// ack before it releases a silent owner's lease.
func (n *Node) Hold() time.Duration { return n.hold }

// TickPeriod is how often the shell calls Tick while anything is in flux
// (NextTick): often enough that whatever Tick does on a timer happens well
// within the guard interval.
func TickPeriod(t Timing) time.Duration {
	p := min(t.HeartbeatInterval/2, t.LeaseGuard/2)
	return max(p, time.Millisecond)
}
