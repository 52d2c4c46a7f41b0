// Package agent wires Baton together. Node is the deterministic core of one
// agent: it owns no goroutines and reads no clock; the runtime (runtime.go)
// or the in-process harness (package sim) calls Tick, Receive and
// StateChanged with the node's monotonic time and delivers what it sends.
//
// A Node plays three parts at once:
//   - voter: acks the lease claims of owners, and releases a lease (durably,
//     never to ack it again) once the owner has been silent for a full hold;
//   - member: claims the groups the replicated state says it owns, counts the
//     voters' acks into a lease, acts (hooks, front doors) only while the lease
//     is valid, and demotes itself a guard interval before it ends;
//   - leader (when it leads the quorum): assigns a group to the best member
//     once a majority of voters released the previous owner's lease.
package agent

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/config"
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

// Transition is handed to the hook runner whenever this node's role for a
// group changes. Hooks run asynchronously; the node never waits for them.
type Transition struct {
	Group         string
	Role          string // active | standby
	Epoch         uint64
	PreviousOwner string
	Reason        string
}

// ReleaseStore persists the highest lease epoch this voter released per
// group. Save must be durable (fsync) before it returns: a voter that forgot a
// release after a restart could ack a lease the cluster already gave away.
type ReleaseStore interface {
	Load() (map[string]uint64, error)
	Save(group string, epoch uint64) error
}

// MemReleases is the in-memory twin of ReleaseStore (it survives a simulated
// restart because the harness keeps it).
type MemReleases struct{ M map[string]uint64 }

// Load implements ReleaseStore.
func (m *MemReleases) Load() (map[string]uint64, error) {
	out := map[string]uint64{}
	for k, v := range m.M {
		out[k] = v
	}
	return out, nil
}

// Save implements ReleaseStore.
func (m *MemReleases) Save(g string, e uint64) error {
	if m.M == nil {
		m.M = map[string]uint64{}
	}
	m.M[g] = e
	return nil
}

// Deps are the node's seams to the outside world.
type Deps struct {
	Name   string
	Config *config.Config
	Timing config.Timing
	Quorum quorum.Quorum
	Send   func(to string, m *cluster.Message)  // must not block
	OnRole func(t Transition)                   // must not block
	OnRTT  func(peer string, rtt time.Duration) // heartbeat round trips (optional)
	// OnActing reports, for a group this node acts for, the time (on the
	// node's clock) until which it may act; called whenever that moves. The
	// runtime hands it to the fence that removes the VIPs at that moment if
	// the agent itself cannot (killed, frozen).
	OnActing func(group string, until time.Duration)
	Healthy  func(group string) bool // nil: always healthy
	Releases ReleaseStore
	WallNow  func() time.Time
	RaftRole func() string
	// TransferLeadership moves quorum leadership to another voter (nil: never).
	TransferLeadership func(to string)
	// Data returns the latest driver report of a data-aware group (nil: none).
	Data func(group string) DataReport
	Log  *slog.Logger
}

type ownState struct {
	epoch        uint64                   // epoch this node claims (0: none)
	acks         map[string]time.Duration // voter → send time of newest acked heartbeat
	expiry       time.Duration            // lease end on this node's clock
	role         string
	activeSince  time.Duration
	relinquished uint64 // epoch given up on purpose (0: none)
	relReason    string
	// hookBlockUntil: after a failed active hook the node is not eligible
	// for the group until then, so the next candidate is tried.
	hookBlockUntil time.Duration
	learnedAt      time.Duration // when this node learned it owns epoch
	takeoverEpoch  uint64
	takeoverMs     int64
}

type voteState struct {
	viewEpoch   uint64
	viewOwner   string
	viewSince   time.Duration
	grantEpoch  uint64
	grantOwner  string
	lastGrant   time.Duration
	releasedMax uint64
	releasedAt  time.Duration
}

type peerState struct {
	heard        bool
	lastHeard    time.Duration
	groups       map[string]cluster.GroupStatus
	released     map[string]uint64
	relinquished map[string]uint64
	relReason    string
	leaving      bool
	raftRole     string
	applied      uint64
	lastClaim    map[string]time.Duration // group → when its claim last arrived here
}

type pending struct {
	epoch uint64
	at    time.Duration
	to    string // the proposed owner (assignments)
}

// Node is one agent's deterministic core. Not safe for concurrent use: the
// runtime serialises every call on one goroutine.
type Node struct {
	d       Deps
	name    string
	timing  config.Timing
	voters  []string
	isVoter bool
	major   int
	hold    time.Duration
	members []*config.Group // units this node is a member of (see config.Units)
	groups  []*config.Group // every unit (voter duty)
	spread  []*config.Group // active-active groups, whose units the leader spreads

	started    bool
	startAt    time.Duration
	floor      time.Duration // no release before this (start or last stall + hold)
	lastTick   time.Duration
	nextHB     time.Duration
	leaving    bool
	announced  bool // initial standby roles reported
	healthSeen map[string]bool
	// leader-only bookkeeping
	usableSince map[string]map[string]time.Duration // group → member → usable since
	annotated   map[string]uint64                   // group → epoch whose takeover time was recorded
	quorumAt    map[string]pending                  // group → when a quorum of releases was first seen
	lastXfer    time.Duration
	lastView    *quorum.State
	hints       map[string]cluster.Owner
	merged      *quorum.State
	mergedFrom  *quorum.State
	hintsDirty  bool
	lastOwners  string // ownership gossiped in the last heartbeat
	// lastClaims is the claim set of the last heartbeat sent; a change is
	// announced at once rather than at the next interval.
	lastClaims string

	own     map[string]*ownState
	vote    map[string]*voteState
	peers   map[string]*peerState
	pending map[string]pending
	whyLog  map[string]string
	dataWhy map[string]string // group → members the sync policy excludes, and why
	log     *slog.Logger
}

// NewNode builds a node; call Start before anything else.
func NewNode(d Deps) (*Node, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.WallNow == nil {
		d.WallNow = time.Now
	}
	if d.OnRole == nil {
		d.OnRole = func(Transition) {}
	}
	self, err := d.Config.NodeByName(d.Name)
	if err != nil {
		return nil, err
	}
	n := &Node{
		d: d, name: d.Name, timing: d.Timing, voters: d.Config.Voters(),
		own: map[string]*ownState{}, vote: map[string]*voteState{}, peers: map[string]*peerState{},
		pending: map[string]pending{}, whyLog: map[string]string{}, dataWhy: map[string]string{}, hints: map[string]cluster.Owner{},
		healthSeen: map[string]bool{}, usableSince: map[string]map[string]time.Duration{}, annotated: map[string]uint64{}, quorumAt: map[string]pending{},
		log: d.Log,
	}
	n.isVoter = slices.Contains(n.voters, self.Name)
	n.major = decide.Majority(len(n.voters))
	n.hold = decide.VoterHold(n.timing.FailureTimeout, n.timing.ClockDrift)
	for i := range d.Config.Groups {
		if g := &d.Config.Groups[i]; g.Mode == config.ModeActiveActive {
			n.spread = append(n.spread, g)
		}
	}
	for _, g := range d.Config.Units() {
		n.groups = append(n.groups, g)
		if _, ok := g.Member(n.name); ok {
			n.members = append(n.members, g)
			n.own[g.Name] = &ownState{role: RoleStandby}
		}
		n.vote[g.Name] = &voteState{}
	}
	for _, nd := range d.Config.Nodes {
		if nd.Name != n.name {
			n.peers[nd.Name] = &peerState{groups: map[string]cluster.GroupStatus{}, released: map[string]uint64{},
				relinquished: map[string]uint64{}, lastClaim: map[string]time.Duration{}}
		}
	}
	return n, nil
}

// Start initialises the node at time now: loads durable releases, starts the
// voter's quiet period (a restarted voter has forgotten its promises) and
// reports every member group as standby.
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

// View is the replicated state as this node knows it (see view); the result
// is shared and must not be modified.
func (n *Node) View() *quorum.State { return n.view() }

// PeerLeaving reports whether a peer announced a planned shutdown.
func (n *Node) PeerLeaving(name string) bool {
	p := n.peers[name]
	return p != nil && p.leaving
}

// view is the replicated state as far as this node knows it: its replica's
// applied state, overlaid with newer ownership records gossiped by peers.
// Both parts are committed data (peers only gossip what their replica
// applied), so the overlay is as trustworthy as the replica and fresher.
func (n *Node) view() *quorum.State {
	rv := n.d.Quorum.View()
	if rv == n.mergedFrom && !n.hintsDirty {
		return n.merged
	}
	merged := rv
	for g, h := range n.hints {
		cur := rv.Group(g)
		if h.Epoch < cur.Epoch || (h.Epoch == cur.Epoch && (h.HandoffTo == "" || cur.HandoffTo != "")) {
			delete(n.hints, g) // the replica caught up
			continue
		}
		if merged == rv {
			merged = &quorum.State{Index: rv.Index, Groups: make(map[string]quorum.GroupState, len(rv.Groups)+1),
				Events: rv.Events, NextEv: rv.NextEv}
			for k, v := range rv.Groups {
				merged.Groups[k] = v
			}
		}
		merged.Groups[g] = quorum.GroupState{Owner: h.Node, Epoch: h.Epoch, Maintenance: cur.Maintenance,
			HandoffTo: h.HandoffTo, HandoffReason: h.HandoffReason}
	}
	n.merged, n.mergedFrom, n.hintsDirty = merged, rv, false
	return merged
}

// learn merges gossiped ownership records; it reports whether any was news.
func (n *Node) learn(owners []cluster.Owner) bool {
	news := false
	v := n.view()
	for _, o := range owners {
		if n.vote[o.Group] == nil {
			continue
		}
		cur, h := v.Group(o.Group), n.hints[o.Group]
		newer := o.Epoch > cur.Epoch && o.Epoch > h.Epoch
		handoff := o.Epoch == cur.Epoch && o.Node == cur.Owner && o.HandoffTo != "" && cur.HandoffTo == ""
		if newer || handoff {
			n.hints[o.Group] = o
			n.hintsDirty, news = true, true
		}
	}
	return news
}

func (n *Node) ownersKey() string {
	s := ""
	v := n.view()
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		s += fmt.Sprintf("%s/%d/%s,", gs.Owner, gs.Epoch, gs.HandoffTo)
	}
	return s
}

func (n *Node) healthy(group string) bool {
	if n.d.Healthy == nil {
		return true
	}
	return n.d.Healthy(group)
}

// Tick advances timers: heartbeats, lease expiry, releases, leader decisions.
// Call it at least every heartbeat_interval/2.
func (n *Node) Tick(now time.Duration) {
	// A gap far longer than the tick period means this process was stopped or
	// starved: packets may be waiting unread, so silence observed across the gap
	// proves nothing. Distrust it: no release until a full hold from now.
	if gap := now - n.lastTick; gap > n.stallThreshold() {
		n.floor = now
		n.log.Warn("agent was stalled; distrusting timeouts for one lease hold", "stall", gap.Round(time.Millisecond))
	}
	n.lastTick = now
	n.refreshView(now)
	n.checkReleases(now)
	n.selfChecks(now)
	n.updateRoles(now)
	if now >= n.nextHB {
		n.sendHeartbeats(now)
	}
	if n.d.Quorum.IsLeader() {
		n.lead(now)
	}
}

func (n *Node) stallThreshold() time.Duration {
	t := 4 * n.timing.HeartbeatInterval
	if t > n.timing.FailureTimeout/2 {
		t = n.timing.FailureTimeout / 2
	}
	return t
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
		n.lead(now)
	}
}

func (n *Node) claimKey() string {
	s := ""
	for _, c := range n.claims() {
		s += fmt.Sprintf("%s/%d,", c.Group, c.Epoch)
	}
	return s
}

func (n *Node) refreshView(now time.Duration) {
	v := n.view()
	if v == n.lastView && n.started && now != n.startAt {
		return
	}
	n.lastView = v
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		vs := n.vote[g.Name]
		if gs.Epoch != vs.viewEpoch || gs.Owner != vs.viewOwner {
			vs.viewEpoch, vs.viewOwner, vs.viewSince = gs.Epoch, gs.Owner, now
		}
		if os := n.own[g.Name]; os != nil && gs.Owner == n.name && os.epoch != gs.Epoch {
			os.epoch, os.acks, os.expiry, os.learnedAt = gs.Epoch, map[string]time.Duration{}, 0, now
		}
	}
}

// claims lists the groups this node owns in its view and still wants.
func (n *Node) claims() []cluster.Claim {
	var out []cluster.Claim
	v := n.view()
	for _, g := range n.members {
		gs := v.Group(g.Name)
		os := n.own[g.Name]
		if gs.Owner == n.name && gs.Epoch > 0 && os.relinquished != gs.Epoch && !n.leaving {
			out = append(out, cluster.Claim{Group: g.Name, Epoch: gs.Epoch})
		}
	}
	return out
}

func (n *Node) sendHeartbeats(now time.Duration) {
	n.nextHB = now + n.timing.HeartbeatInterval
	n.lastClaims, n.lastOwners = n.claimKey(), n.ownersKey()
	m := &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: int64(now), Claims: n.claims(), Leaving: n.leaving,
		Applied: n.view().Index}
	if n.d.RaftRole != nil {
		m.RaftRole = n.d.RaftRole()
	}
	v := n.view()
	for _, g := range n.groups {
		if gs := v.Group(g.Name); gs.Epoch > 0 {
			m.Owners = append(m.Owners, cluster.Owner{Group: g.Name, Node: gs.Owner, Epoch: gs.Epoch,
				Prev: n.previousOwner(v, g.Name, gs.Epoch), HandoffTo: gs.HandoffTo, HandoffReason: gs.HandoffReason})
		}
		if vs := n.vote[g.Name]; vs.releasedMax > 0 {
			m.Released = append(m.Released, cluster.Claim{Group: g.Name, Epoch: vs.releasedMax})
		}
	}
	for _, g := range n.members {
		os := n.own[g.Name]
		gst := cluster.GroupStatus{Group: g.Name, Healthy: n.healthy(g.Name), Eligible: n.eligible(now, g.Name), Role: os.role}
		if os.takeoverEpoch > 0 && os.takeoverEpoch == v.Group(g.Name).Epoch {
			gst.Epoch, gst.TakeoverMs = os.takeoverEpoch, os.takeoverMs
		}
		n.addDataStatus(g, &gst, v.Group(g.Name).Epoch)
		m.Groups = append(m.Groups, gst)
		if os.relinquished > 0 {
			m.Relinquished = append(m.Relinquished, cluster.Claim{Group: g.Name, Epoch: os.relinquished})
			m.RelinquishReason = os.relReason
		}
	}
	// The node is a voter for its own claims too.
	if n.isVoter && len(m.Claims) > 0 {
		for _, c := range n.grant(now, n.name, m.Claims) {
			n.ackFrom(now, n.name, c, now)
		}
	}
	for _, p := range n.voters {
		if p != n.name {
			n.d.Send(p, m)
		}
	}
	for name := range n.peers {
		if !slices.Contains(n.voters, name) {
			n.d.Send(name, m)
		}
	}
}

// grant applies the voter's ack rule to claims from node `from` and returns the
// claims it acks, recording the promise.
func (n *Node) grant(now time.Duration, from string, claims []cluster.Claim) []cluster.Claim {
	var acked []cluster.Claim
	v := n.view()
	for _, c := range claims {
		vs := n.vote[c.Group]
		if vs == nil {
			continue
		}
		gs := v.Group(c.Group)
		switch {
		case c.Epoch <= vs.releasedMax: // released: never again
		case c.Epoch < gs.Epoch || c.Epoch < vs.grantEpoch: // superseded
		case c.Epoch == gs.Epoch && gs.Owner != from: // not the owner of that epoch
		case c.Epoch == vs.grantEpoch && vs.grantOwner != "" && vs.grantOwner != from:
		default:
			// c.Epoch > gs.Epoch happens when this voter's view lags: only the
			// committed owner ever claims an epoch, so the claim itself is proof.
			vs.grantEpoch, vs.grantOwner, vs.lastGrant = c.Epoch, from, now
			acked = append(acked, c)
		}
	}
	return acked
}

// Receive handles one authenticated message from a peer.
func (n *Node) Receive(now time.Duration, from string, m *cluster.Message) {
	p := n.peers[from]
	if p == nil {
		return
	}
	p.heard, p.lastHeard = true, now
	switch m.Kind {
	case cluster.KindHeartbeat:
		p.leaving, p.raftRole, p.applied = m.Leaving, m.RaftRole, m.Applied
		if n.learn(m.Owners) {
			n.StateChanged(now)
		}
		for _, gs := range m.Groups {
			p.groups[gs.Group] = gs
		}
		for _, r := range m.Released {
			if r.Epoch > p.released[r.Group] {
				p.released[r.Group] = r.Epoch
			}
		}
		for _, r := range m.Relinquished {
			if r.Epoch > p.relinquished[r.Group] {
				p.relinquished[r.Group] = r.Epoch
				p.relReason = m.RelinquishReason
			}
			n.onRelinquish(now, from, r)
		}
		for _, c := range m.Claims {
			p.lastClaim[c.Group] = now
		}
		if n.isVoter && len(m.Claims) > 0 {
			if acked := n.grant(now, from, m.Claims); len(acked) > 0 {
				n.d.Send(from, &cluster.Message{Kind: cluster.KindAck, Echo: m.SentAt, Acked: acked})
			}
		}
		if n.d.Quorum.IsLeader() && len(m.Released) > 0 {
			n.lead(now)
		}
	case cluster.KindAck:
		if !slices.Contains(n.voters, from) {
			return
		}
		if n.d.OnRTT != nil && len(m.Acked) > 0 && time.Duration(m.Echo) <= now {
			n.d.OnRTT(from, now-time.Duration(m.Echo))
		}
		for _, c := range m.Acked {
			n.ackFrom(now, from, c, time.Duration(m.Echo))
		}
		n.updateRoles(now)
	}
}

func (n *Node) ackFrom(now time.Duration, voter string, c cluster.Claim, sentAt time.Duration) {
	os := n.own[c.Group]
	if os == nil || os.epoch != c.Epoch || sentAt > now {
		return
	}
	if sentAt > os.acks[voter] {
		os.acks[voter] = sentAt
	}
	times := make([]time.Duration, 0, len(os.acks))
	for _, t := range os.acks {
		times = append(times, t)
	}
	if exp, ok := decide.LeaseExpiry(times, n.major, n.timing.FailureTimeout); ok && exp > os.expiry {
		os.expiry = exp
		if os.role == RoleActive && n.d.OnActing != nil {
			n.d.OnActing(c.Group, os.expiry-n.timing.LeaseGuard)
		}
	}
}

// onRelinquish: the owner of (group, epoch) gave it up and stopped acting, so
// this voter may release at once instead of waiting out the hold.
func (n *Node) onRelinquish(now time.Duration, from string, c cluster.Claim) {
	vs := n.vote[c.Group]
	if vs == nil || c.Epoch <= vs.releasedMax {
		return
	}
	if (c.Epoch == vs.viewEpoch && vs.viewOwner == from) || (c.Epoch == vs.grantEpoch && vs.grantOwner == from) {
		n.release(now, c.Group, c.Epoch, "owner relinquished")
	}
}

func (n *Node) checkReleases(now time.Duration) {
	if !n.isVoter {
		return
	}
	for _, g := range n.groups {
		vs := n.vote[g.Name]
		if vs.viewOwner == "" || vs.viewEpoch <= vs.releasedMax || vs.grantEpoch > vs.viewEpoch {
			continue
		}
		if vs.viewOwner == n.name {
			// Our own lease: we release it only by relinquishing.
			continue
		}
		base := max(n.floor, vs.viewSince, vs.lastGrant)
		if decide.ReleaseDue(now, base, n.hold) {
			n.release(now, g.Name, vs.viewEpoch, "owner silent")
		}
	}
}

func (n *Node) release(now time.Duration, group string, epoch uint64, why string) {
	vs := n.vote[group]
	if err := n.d.Releases.Save(group, epoch); err != nil {
		// Without a durable record we must not tell anyone: keep the promise.
		n.log.Error("cannot persist lease release; not releasing", "group", group, "epoch", epoch, "err", err)
		return
	}
	vs.releasedMax, vs.releasedAt = epoch, now
	n.log.Info("released lease", "group", group, "epoch", epoch, "owner", vs.viewOwner, "why", why)
	n.sendHeartbeats(now)
	if n.d.Quorum.IsLeader() {
		n.lead(now)
	}
}

func (n *Node) updateRoles(now time.Duration) {
	v := n.view()
	n.announceStart(now, v)
	for _, g := range n.members {
		os := n.own[g.Name]
		gs := v.Group(g.Name)
		mine := gs.Owner == n.name && gs.Epoch == os.epoch && os.relinquished != gs.Epoch && !n.leaving
		acting := mine && decide.Acting(now, os.expiry, n.timing.LeaseGuard)
		switch {
		case acting && os.role != RoleActive:
			os.role, os.activeSince = RoleActive, now
			if os.takeoverEpoch != gs.Epoch {
				os.takeoverEpoch, os.takeoverMs = gs.Epoch, max((now-os.learnedAt).Milliseconds(), 0)
			}
			prev := n.previousOwner(v, g.Name, gs.Epoch)
			n.log.Info("active", "group", g.Name, "epoch", gs.Epoch, "previous_owner", prev)
			if n.d.OnActing != nil {
				// The fence learns the deadline before the front doors go up.
				n.d.OnActing(g.Name, os.expiry-n.timing.LeaseGuard)
			}
			n.d.OnRole(Transition{Group: g.Name, Role: RoleActive, Epoch: gs.Epoch, PreviousOwner: prev, Reason: "lease acquired"})
		case !acting && os.role == RoleActive:
			os.role = RoleStandby
			why := "lease lost"
			switch {
			case n.leaving || os.relinquished == os.epoch:
				why = "relinquished"
			case gs.Owner != n.name:
				why = "owner changed"
			}
			n.log.Warn("standby", "group", g.Name, "epoch", gs.Epoch, "reason", why)
			n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: why})
		}
	}
}

// announceStart reports the initial standby role of every member group once
// the node knows the replicated state (so hooks get the real epoch and
// owner), or after the startup grace if the quorum is unreachable. A
// restarted node's own replica is stale until it hears a peer, whose
// heartbeat gossips the committed owners, so both are needed.
func (n *Node) announceStart(now time.Duration, v *quorum.State) {
	if n.announced {
		return
	}
	if now < n.startAt+n.timing.StartupGrace && (v.Index == 0 || !n.heardAnyPeer()) {
		return
	}
	n.announced = true
	for _, g := range n.members {
		if n.own[g.Name].role == RoleStandby {
			gs := v.Group(g.Name)
			n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: "start"})
		}
	}
}

func (n *Node) heardAnyPeer() bool {
	for _, p := range n.peers {
		if p.heard {
			return true
		}
	}
	return false
}

func (n *Node) previousOwner(v *quorum.State, group string, epoch uint64) string {
	if h, ok := n.hints[group]; ok && h.Epoch == epoch {
		return h.Prev
	}
	for i := len(v.Events) - 1; i >= 0; i-- {
		if e := v.Events[i]; e.Group == group && e.Epoch == epoch && e.Ownership() {
			return e.From
		}
	}
	return ""
}

// Leave starts a planned shutdown: every group this node owns is demoted at
// once and relinquished, so voters release without waiting out the lease and
// the leader hands the group to a successor. Call Done to learn when the
// successors are committed.
func (n *Node) Leave(now time.Duration) {
	n.leaving = true
	v := n.view()
	for _, g := range n.members {
		gs := v.Group(g.Name)
		if gs.Owner == n.name {
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonShutdown)
		}
	}
	n.updateRoles(now)
	n.sendHeartbeats(now)
}

// Relinquish gives up one group on purpose (switchover, failing checks or
// hook). The node stops acting first; only then do voters hear of it.
func (n *Node) Relinquish(now time.Duration, group, reason string) error {
	gs := n.view().Group(group)
	if gs.Owner != n.name {
		return fmt.Errorf("group %q: this node (%s) is not its owner", group, n.name)
	}
	n.relinquish(now, group, gs.Epoch, reason)
	n.updateRoles(now)
	n.sendHeartbeats(now)
	return nil
}

func (n *Node) relinquish(now time.Duration, group string, epoch uint64, reason string) {
	os := n.own[group]
	if os == nil {
		return
	}
	os.relinquished, os.relReason = epoch, reason
	os.expiry = 0
	// Stop acting (front doors down) before anyone hears of the relinquish.
	n.updateRoles(now)
	if n.isVoter {
		n.release(now, group, epoch, "relinquished by owner")
	}
}

// HookCooldown is how long a node whose active hook failed stays ineligible
// for that group, so that the next candidate gets it.
const HookCooldown = 30 * time.Second

func (n *Node) eligible(now time.Duration, group string) bool {
	os := n.own[group]
	return !n.leaving && os != nil && now >= os.hookBlockUntil
}

func (n *Node) maintenance(group string) bool {
	v := n.view()
	parent, _ := config.SplitUnit(group)
	return v.Maintenance || v.Group(group).Maintenance || v.Group(parent).Maintenance
}

// selfChecks runs the owner's own reasons to step down: a committed handoff
// request (switchover, failback) and failing health checks while a healthy
// member could take over. It also reports fault transitions of health.
func (n *Node) selfChecks(now time.Duration) {
	v := n.view()
	for _, g := range n.members {
		gs, os, healthy := v.Group(g.Name), n.own[g.Name], n.healthy(g.Name)
		if prev, seen := n.healthSeen[g.Name]; !seen || prev != healthy {
			n.healthSeen[g.Name] = healthy
			if seen && !healthy {
				n.log.Warn("fault: health checks fail", "group", g.Name)
				n.d.OnRole(Transition{Group: g.Name, Role: RoleFault, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: "checks failing"})
			} else if seen && os.role != RoleActive {
				n.d.OnRole(Transition{Group: g.Name, Role: RoleStandby, Epoch: gs.Epoch, PreviousOwner: gs.Owner, Reason: "checks pass again"})
			}
		}
		if gs.Owner != n.name || gs.Epoch != os.epoch || os.relinquished == gs.Epoch || n.leaving {
			continue
		}
		switch {
		case gs.HandoffTo != "":
			n.log.Info("handing off on request", "group", g.Name, "to", gs.HandoffTo, "reason", gs.HandoffReason)
			n.relinquish(now, g.Name, gs.Epoch, gs.HandoffReason)
		case !healthy && !n.maintenance(g.Name) && n.otherUsable(now, g):
			n.log.Warn("health checks fail and a healthy standby exists: stepping down", "group", g.Name)
			n.relinquish(now, g.Name, gs.Epoch, quorum.ReasonCheck)
		}
	}
}

// otherUsable reports whether another member could take the group now.
func (n *Node) otherUsable(now time.Duration, g *config.Group) bool {
	for _, c := range n.candidates(now, g) {
		if c.Node != n.name && c.Usable() {
			return true
		}
	}
	return false
}

// HookFailed is called when this node's active hook for (group, epoch)
// failed: the node gives the group up and stays ineligible for HookCooldown,
// so the leader tries the next candidate.
func (n *Node) HookFailed(now time.Duration, group string, epoch uint64) {
	n.GiveUp(now, group, epoch, quorum.ReasonHook, "active hook failed")
}

// GiveUp makes this node step down from (group, epoch) because it cannot
// serve it (failed active hook, service not healthy within start_timeout);
// it stays ineligible for the group for HookCooldown so that the next
// candidate is tried, and the history records reason.
func (n *Node) GiveUp(now time.Duration, group string, epoch uint64, reason, why string) {
	os := n.own[group]
	gs := n.view().Group(group)
	if os == nil || gs.Owner != n.name || gs.Epoch != epoch {
		return
	}
	os.hookBlockUntil = now + HookCooldown
	n.log.Error("cannot serve the group: giving it up", "group", group, "epoch", epoch, "why", why, "ineligible_for", HookCooldown)
	n.relinquish(now, group, epoch, reason)
	n.updateRoles(now)
	n.sendHeartbeats(now)
}

// HandedOff reports whether no group is owned by this node any more in the
// replicated state (the successor is committed).
func (n *Node) HandedOff() bool {
	v := n.view()
	for _, g := range n.members {
		if v.Group(g.Name).Owner == n.name {
			return false
		}
	}
	return true
}

// LeaseValid reports whether this node is acting for the group under a lease
// that has not ended at its time now. The harness checks that at no instant
// two nodes return true for one group.
func (n *Node) LeaseValid(group string, now time.Duration) bool {
	os := n.own[group]
	return os != nil && os.role == RoleActive && now < os.expiry
}

// Role returns this node's role for a group.
func (n *Node) Role(group string) string {
	if os := n.own[group]; os != nil {
		return os.role
	}
	return ""
}

// lead runs the ownership policy on the quorum leader.
func (n *Node) lead(now time.Duration) {
	v := n.view()
	graceOver := now >= n.startAt+n.timing.StartupGrace || n.allMembersUp(now)
	for _, g := range n.groups {
		gs := v.Group(g.Name)
		if p, ok := n.pending[g.Name]; ok && p.epoch == gs.Epoch && now-p.at < n.proposalTimeout() {
			continue
		}
		relinquished, reason := false, quorum.ReasonFailure
		if gs.Owner != "" {
			if gs.Owner == n.name {
				relinquished = n.own[g.Name] != nil && n.own[g.Name].relinquished == gs.Epoch
				reason = n.own[g.Name].relReason
			} else if p := n.peers[gs.Owner]; p != nil && p.relinquished[g.Name] == gs.Epoch {
				relinquished, reason = true, p.relReason
			}
		}
		cands := n.candidates(now, g)
		maint := v.Maintenance || gs.Maintenance || v.Group(g.Parent).Maintenance
		n.trackUsable(now, g.Name, cands)
		n.spreadInputs(now, v, g, cands)
		n.relaySync(now, g, gs)
		n.recordDivergence(now, g)
		grace := graceOver
		if gs.Owner == "" && now < n.startAt+n.timing.StartupGrace {
			// Within the startup grace, give a group its first owner early
			// only when every member is up and usable (its checks have
			// passed), so the choice is the one a settled cluster would
			// make — and, for a data group, every member has reported its
			// position, so the newest data wins.
			for _, c := range cands {
				grace = grace && c.Usable()
			}
			if g.Driver != nil {
				grace = grace && n.allPositionsKnown(g)
			}
		}
		in := decide.Inputs{
			Now: now, Owner: gs.Owner, Epoch: gs.Epoch, Majority: n.major,
			Released: n.releasedCount(g.Name, gs.Epoch), Relinquish: relinquished,
			GraceOver: grace, Maintenance: maint, HandoffTo: gs.HandoffTo, Candidates: cands,
		}
		n.annotate(g.Name, gs)
		if !maint && in.Released < n.major && g.Parent == "" {
			n.failback(now, g, gs, cands)
		}
		if in.Released >= n.major && gs.Owner != "" {
			if q, ok := n.quorumAt[g.Name]; !ok || q.epoch != gs.Epoch {
				n.quorumAt[g.Name] = pending{epoch: gs.Epoch, at: now}
			}
		}
		act := decide.Decide(in)
		if why := n.dataWhy[g.Name]; why != "" && !act.Assign {
			act.Why += " (sync policy: " + why + ")"
		}
		if !act.Assign {
			if gs.Owner != "" && in.Released >= n.major && n.whyLog[g.Name] != act.Why {
				n.log.Warn("cannot fail over", "group", g.Name, "why", act.Why)
			}
			n.whyLog[g.Name] = act.Why
			continue
		}
		n.whyLog[g.Name] = act.Why
		if gs.Owner == "" {
			reason = quorum.ReasonInitial
		}
		cmd := quorum.Command{
			Op: quorum.OpAssign, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner, Owner: act.Owner,
			Reason: reason, TimeUnixMs: n.d.WallNow().UnixMilli(), Detail: act.Why,
		}
		n.dataAssign(g, gs, &cmd)
		if q, ok := n.quorumAt[g.Name]; ok && q.epoch == gs.Epoch {
			cmd.DecideMs = (now - q.at).Milliseconds()
			if gs.Owner != n.name && !relinquished {
				if p := n.peers[gs.Owner]; p != nil && p.heard {
					cmd.DetectMs = (q.at - p.lastClaim[g.Name]).Milliseconds()
				}
			}
		}
		if err := n.d.Quorum.Propose(cmd); err != nil {
			n.log.Debug("propose failed", "group", g.Name, "err", err)
			continue
		}
		n.pending[g.Name] = pending{epoch: gs.Epoch, at: now, to: act.Owner}
		n.log.Info("assigning group", "group", g.Name, "from", gs.Owner, "to", act.Owner, "epoch", gs.Epoch+1, "reason", reason)
	}
	for _, g := range n.spread {
		if !v.Maintenance && !v.Group(g.Name).Maintenance {
			n.rebalance(now, v, g)
		}
	}
	n.keepLeadershipOffOwners(now, v)
}

// trackUsable remembers since when each member has been usable (failback
// waits for failback_delay of continuous health).
func (n *Node) trackUsable(now time.Duration, group string, cands []decide.Candidate) {
	m := n.usableSince[group]
	if m == nil {
		m = map[string]time.Duration{}
		n.usableSince[group] = m
	}
	for _, c := range cands {
		if !c.Usable() {
			delete(m, c.Node)
		} else if _, ok := m[c.Node]; !ok {
			m[c.Node] = now
		}
	}
}

// failback asks the owner to hand the group back to a higher-priority member
// that has been usable for failback_delay (failback: true only).
func (n *Node) failback(now time.Duration, g *config.Group, gs quorum.GroupState, cands []decide.Candidate) {
	if !g.Failback || gs.Owner == "" || gs.HandoffTo != "" {
		return
	}
	owner, _ := g.Member(gs.Owner)
	var best *decide.Candidate
	for i, c := range cands {
		if c.Usable() && c.Priority > owner.Priority && (best == nil || c.Priority > best.Priority) {
			best = &cands[i]
		}
	}
	if best == nil {
		return
	}
	if since, ok := n.usableSince[g.Name][best.Node]; !ok || now-since < g.FailbackDelay.D() {
		return
	}
	key := g.Name + "/handoff"
	if p, ok := n.pending[key]; ok && p.epoch == gs.Epoch && now-p.at < n.proposalTimeout() {
		return
	}
	cmd := quorum.Command{Op: quorum.OpHandoff, Group: g.Name, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Owner: best.Node, Reason: quorum.ReasonFailback, TimeUnixMs: n.d.WallNow().UnixMilli()}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		n.pending[key] = pending{epoch: gs.Epoch, at: now}
		n.log.Info("failback: asking the owner to hand back", "group", g.Name, "owner", gs.Owner, "to", best.Node)
	}
}

// annotate records the new owner's measured takeover time in the history.
func (n *Node) annotate(group string, gs quorum.GroupState) {
	if gs.Owner == "" || n.annotated[group] == gs.Epoch {
		return
	}
	var ms int64
	known := false
	if gs.Owner == n.name {
		if os := n.own[group]; os != nil && os.takeoverEpoch == gs.Epoch {
			ms, known = os.takeoverMs, true
		}
	} else if p := n.peers[gs.Owner]; p != nil {
		if st := p.groups[group]; st.Epoch == gs.Epoch {
			ms, known = st.TakeoverMs, true
		}
	}
	if !known {
		return
	}
	cmd := quorum.Command{Op: quorum.OpAnnotate, Group: group, Epoch: gs.Epoch, TakeoverMs: ms}
	if err := n.d.Quorum.Propose(cmd); err == nil {
		n.annotated[group] = gs.Epoch
	}
}

// RequestError is a refused operator request; Code is the HTTP status.
type RequestError struct {
	Code int
	Msg  string
}

func (e *RequestError) Error() string { return e.Msg }

func reqErr(code int, format string, args ...any) error {
	return &RequestError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// RequestHandoff validates and proposes a switchover of group to `to` (""
// picks the best healthy standby). Only the quorum leader can do it; the
// API forwards requests to it.
func (n *Node) RequestHandoff(now time.Duration, group, to, reason string) (from string, target string, epoch uint64, err error) {
	g := n.d.Config.UnitByName(group)
	if g == nil {
		if pg := n.d.Config.GroupByName(group); pg != nil {
			var names []string
			for _, u := range n.d.Config.UnitsOf(group) {
				names = append(names, u.Name)
			}
			return "", "", 0, reqErr(400, "group %q is active-active: switch one of its units over (%s)", group, strings.Join(names, ", "))
		}
		return "", "", 0, reqErr(404, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return "", "", 0, reqErr(503, "this node does not lead the quorum; retry")
	}
	gs := n.d.Quorum.View().Group(group)
	switch {
	case gs.Owner == "":
		return "", "", 0, reqErr(409, "group %q has no owner to switch over from", group)
	case gs.HandoffTo != "":
		return "", "", 0, reqErr(409, "group %q is mid-change: a handoff to %s is already pending", group, gs.HandoffTo)
	}
	if p, ok := n.pending[group]; ok && p.epoch == gs.Epoch && now-p.at < n.proposalTimeout() {
		return "", "", 0, reqErr(409, "group %q is mid-change: a new owner is being committed", group)
	}
	if n.releasedCount(group, gs.Epoch) > 0 && gs.Owner != n.name {
		if p := n.peers[gs.Owner]; p == nil || !n.alive(now, p) {
			return "", "", 0, reqErr(409, "group %q is mid-change: its owner %s is failing", group, gs.Owner)
		}
	}
	cands := n.candidates(now, g)
	if to == "" {
		to = decide.Best(without(cands, gs.Owner))
		if to == "" {
			return "", "", 0, reqErr(409, "no healthy standby for group %q to switch over to", group)
		}
	}
	if _, err := n.d.Config.NodeByName(to); err != nil {
		return "", "", 0, reqErr(404, "unknown node %q", to)
	}
	var tc *decide.Candidate
	for i := range cands {
		if cands[i].Node == to {
			tc = &cands[i]
		}
	}
	switch {
	case tc == nil:
		return "", "", 0, reqErr(400, "node %q is not a member of group %q", to, group)
	case to == gs.Owner:
		return "", "", 0, reqErr(409, "node %q already owns group %q", to, group)
	case !tc.Alive:
		return "", "", 0, reqErr(409, "node %q is not alive: cannot switch group %q to it", to, group)
	case !tc.Healthy:
		return "", "", 0, reqErr(409, "node %q is unhealthy for group %q (its checks fail)", to, group)
	case !tc.Eligible:
		return "", "", 0, reqErr(409, "node %q is not eligible for group %q (leaving, or its active hook failed recently)", to, group)
	}
	cmd := quorum.Command{Op: quorum.OpHandoff, Group: group, ExpectEpoch: gs.Epoch, ExpectOwner: gs.Owner,
		Owner: to, Reason: reason, TimeUnixMs: n.d.WallNow().UnixMilli()}
	if err := n.d.Quorum.Propose(cmd); err != nil {
		return "", "", 0, reqErr(503, "propose switchover: %v", err)
	}
	n.pending[group+"/handoff"] = pending{epoch: gs.Epoch, at: now}
	return gs.Owner, to, gs.Epoch, nil
}

func without(cs []decide.Candidate, node string) []decide.Candidate {
	out := make([]decide.Candidate, 0, len(cs))
	for _, c := range cs {
		if c.Node != node {
			out = append(out, c)
		}
	}
	return out
}

// SetMaintenance proposes maintenance on or off for a group ("" = the whole
// cluster). Leader only.
func (n *Node) SetMaintenance(group string, on bool) error {
	if group != "" && n.d.Config.GroupByName(group) == nil {
		return reqErr(404, "unknown group %q", group)
	}
	if !n.d.Quorum.IsLeader() {
		return reqErr(503, "this node does not lead the quorum; retry")
	}
	if err := n.d.Quorum.Propose(quorum.Command{Op: quorum.OpMaintenance, Group: group, On: on}); err != nil {
		return reqErr(503, "propose maintenance: %v", err)
	}
	return nil
}

func (n *Node) proposalTimeout() time.Duration {
	return max(time.Second, 4*n.timing.RaftHeartbeatTimeout)
}

func (n *Node) releasedCount(group string, epoch uint64) int {
	c := 0
	for _, v := range n.voters {
		if v == n.name {
			if n.vote[group].releasedMax >= epoch {
				c++
			}
			continue
		}
		if p := n.peers[v]; p != nil && p.released[group] >= epoch {
			c++
		}
	}
	return c
}

func (n *Node) alive(now time.Duration, p *peerState) bool {
	return p.heard && now-p.lastHeard < n.timing.FailureTimeout
}

func (n *Node) candidates(now time.Duration, g *config.Group) []decide.Candidate {
	var out []decide.Candidate
	for _, m := range g.Members {
		c := decide.Candidate{Node: m.Node, Priority: m.Priority}
		if m.Node == n.name {
			c.Alive, c.Healthy, c.Eligible = true, n.healthy(g.Name), n.eligible(now, g.Name)
		} else if p := n.peers[m.Node]; p != nil {
			gs, ok := p.groups[g.Name]
			c.Alive = n.alive(now, p)
			c.Healthy = ok && gs.Healthy
			c.Eligible = ok && gs.Eligible && !p.leaving
		}
		out = append(out, c)
	}
	if why := n.dataEligibility(g, n.view().Group(g.Name), out); why != "" {
		n.dataWhy[g.Name] = why
	} else {
		delete(n.dataWhy, g.Name)
	}
	return out
}

func (n *Node) allPositionsKnown(g *config.Group) bool {
	for _, m := range g.Members {
		if _, ok := n.memberData(g.Name, m.Node); !ok {
			return false
		}
	}
	return true
}

func (n *Node) allMembersUp(now time.Duration) bool {
	for _, p := range n.peers {
		if !n.alive(now, p) {
			return false
		}
	}
	return true
}

// keepLeadershipOffOwners moves quorum leadership to a voter that owns no
// group, so that the death of an owner never also costs a leader election.
func (n *Node) keepLeadershipOffOwners(now time.Duration, v *quorum.State) {
	if n.d.TransferLeadership == nil || now-n.lastXfer < 5*time.Second || now-n.startAt < n.timing.StartupGrace {
		return
	}
	owners := map[string]bool{}
	for _, g := range n.groups {
		owners[v.Group(g.Name).Owner] = true
	}
	if !owners[n.name] && !n.leaving {
		return
	}
	var best string
	names := make([]string, 0, len(n.peers))
	for name := range n.peers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := n.peers[name]
		if slices.Contains(n.voters, name) && !owners[name] && n.alive(now, p) && !p.leaving {
			best = name
			break
		}
	}
	if best == "" {
		return
	}
	n.lastXfer = now
	n.log.Info("moving quorum leadership off an owner", "to", best)
	n.d.TransferLeadership(best)
}

// TickPeriod is how often the runtime calls Tick: often enough that an owner
// notices the end of its lease well within the guard interval.
func TickPeriod(t config.Timing) time.Duration {
	p := min(t.HeartbeatInterval/2, t.LeaseGuard/2)
	return max(p, time.Millisecond)
}
