// Package sim is Baton's exported in-process cluster harness: N agent cores
// (core.Node) on a simulated network that partitions, drops, delays and
// reorders, with an in-memory quorum twin, per-node clocks that drift within
// the configured bound, and a global virtual clock. Everything is driven from
// one seeded random source, so a failing schedule replays exactly from its
// seed.
//
// The harness checks the safety invariants after every millisecond of virtual
// time: never two nodes holding a valid lease for one group, epochs only
// grow, and no node acts under an epoch older than one already acted under.
package sim

import (
	"container/heap"
	"fmt"
	"log/slog"
	"maps"
	"math/rand"
	"slices"
	"sort"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/quorum"
)

// Step is the virtual time resolution.
const Step = time.Millisecond

// Activation is one role change observed by the harness.
type Activation struct {
	At     time.Duration // global virtual time
	Node   string
	Group  string
	Role   string
	Epoch  uint64
	Reason string
}

// Node is one simulated agent process and its host.
type Node struct {
	Name     string
	core     *core.Node
	alive    bool // process exists (killed → false)
	paused   bool // SIGSTOP
	rate     float64
	offset   time.Duration
	releases *core.MemReleases
	view     *quorum.State
	applied  int // log entries applied
	backlog  []delivery
	ticks    int // Tick calls since the node last started
	// saving: release saves in flight (core.Deps.SaveReleases), each done
	// at its time; disk is the extra time each takes (SlowDisk).
	saving  []pendingSave
	disk    time.Duration
	healthy map[string]bool
	dbs     map[string]*fakeDB // data-aware groups: the node's database (db.go)
}

type delivery struct {
	at   time.Duration
	seq  uint64
	from string
	to   string
	msg  *cluster.Message
}

type queue []delivery

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(delivery)) }
func (q *queue) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}

type proposal struct {
	cmd      quorum.Command
	proposer string
	commitAt time.Duration
}

// Cluster is the simulated cluster.
type Cluster struct {
	Spec   *core.Spec
	Timing core.Timing
	Now    time.Duration
	Rand   *rand.Rand
	Log    *slog.Logger
	// OnSend, if set, sees every message a node sends (before loss).
	OnSend func(from, to string, m *cluster.Message)
	// Wire, if set, passes every message through the real packet codec:
	// sealed for its receiver, split into packets as the UDP transport
	// splits it, each packet lost, delayed and opened on its own. A message
	// the codec refuses to seal is lost (and counted in WireErrors).
	Wire       *cluster.Codec
	WireErrors int
	// Packets counts the packets sent in Wire mode.
	Packets int

	nodes   map[string]*Node
	order   []string
	q       queue
	seq     uint64
	wireSeq uint64
	blocked map[[2]string]bool
	drop    float64
	delayLo time.Duration
	delayHi time.Duration

	// quorum twin
	log        []quorum.Command
	commitTime []time.Duration
	committed  *quorum.State

	// databases (db.go)
	nextWrite    uint64
	acked        []uint64
	ackedChecked int
	lastSync     map[string]string
	proposals    []proposal
	leader       string
	leaderFrom   int // entries in the log when the leader took over
	electionAt   time.Duration
	transferTo   string

	// observations
	Activations []Activation
	lastActEp   map[string]uint64
	epochOwner  map[string]map[uint64]string
	maxView     map[string]map[string]uint64
	err         error
}

// New builds a cluster for cfg. Nothing runs until Start.
func New(spec *core.Spec, seed int64, log *slog.Logger) *Cluster {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		Spec: spec, Timing: spec.Timing, Rand: rand.New(rand.NewSource(seed)), Log: log,
		nodes: map[string]*Node{}, blocked: map[[2]string]bool{},
		delayLo: 200 * time.Microsecond, delayHi: 2 * time.Millisecond,
		committed: quorum.NewState(), lastSync: map[string]string{}, lastActEp: map[string]uint64{}, epochOwner: map[string]map[uint64]string{}, maxView: map[string]map[string]uint64{},
	}
	for _, nd := range spec.Nodes {
		drift := c.Timing.ClockDrift * 0.9
		n := &Node{
			Name: nd.Name, rate: 1 + (c.Rand.Float64()*2-1)*drift,
			offset:   time.Duration(c.Rand.Int63n(int64(time.Hour))),
			releases: &core.MemReleases{}, view: quorum.NewState(), healthy: map[string]bool{}, dbs: map[string]*fakeDB{},
		}
		c.nodes[nd.Name] = n
		c.order = append(c.order, nd.Name)
		c.maxView[nd.Name] = map[string]uint64{}
	}
	return c
}

// Local returns a node's clock at the current global time. Clocks run while
// the process is paused, as monotonic clocks do.
func (c *Cluster) Local(n *Node) time.Duration {
	return n.offset + time.Duration(float64(c.Now)*n.rate)
}

// Node returns a node by name.
func (c *Cluster) Node(name string) *Node { return c.nodes[name] }

// Names returns node names in config order.
func (c *Cluster) Names() []string { return slices.Clone(c.order) }

// Start boots every node.
func (c *Cluster) Start() error {
	for _, name := range c.order {
		if err := c.boot(c.nodes[name]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) boot(n *Node) error {
	q := &nodeQuorum{c: c, n: n}
	node, err := core.NewNode(core.Deps{
		Name: n.Name, Spec: c.Spec, Quorum: q,
		Send:   func(to string, m *cluster.Message) { c.send(n.Name, to, m) },
		OnRole: func(t core.Transition) { c.observe(n.Name, t) },
		Healthy: func(g string) bool {
			group := g // an active-active unit is as healthy as its group
			if u := c.Spec.Unit(g); u != nil {
				group = u.GroupOf()
			}
			h, ok := n.healthy[group]
			return !ok || h
		},
		Releases: n.releases,
		SaveReleases: func(rel map[string]uint64) {
			d := 200*time.Microsecond + time.Duration(c.Rand.Int63n(int64(2*time.Millisecond))) + n.disk
			n.saving = append(n.saving, pendingSave{rel: maps.Clone(rel), at: c.Now + d})
		},
		DataOp:  func(g string, op core.DataOp) { c.dataOp(n, g, op) },
		WallNow: func() time.Time { return time.Unix(0, 0).Add(c.Now) },
		RaftRole: func() string {
			if c.leader == n.Name {
				return "leader"
			}
			return "follower"
		},
		TransferLeadership: func(to string) { c.transferTo = to },
		Log:                c.Log.With("node", n.Name),
	})
	if err != nil {
		return err
	}
	n.core, n.alive, n.paused, n.backlog, n.ticks, n.saving = node, true, false, nil, 0, nil
	c.restartDBs(n)
	return node.Start(c.Local(n))
}

func (c *Cluster) send(from, to string, m *cluster.Message) {
	if c.OnSend != nil {
		c.OnSend(from, to, m)
	}
	if c.Wire == nil {
		c.sendOne(from, to, m) // messages are immutable once sent; share the pointer
		return
	}
	sealed, err := c.Wire.Seal(from, 1, func(n int) uint64 { c.wireSeq += uint64(n); return c.wireSeq - uint64(n) + 1 }, m)
	if err != nil {
		c.WireErrors++
		return
	}
	for i := range sealed.Parts() {
		pkt, err := sealed.For(i, to)
		if err != nil {
			c.WireErrors++
			continue
		}
		env, err := c.Wire.Open(pkt, to)
		if err != nil || env.From != from {
			c.fail("%s → %s: a packet the codec sealed does not open: %v", from, to, err)
			return
		}
		c.Packets++
		c.sendOne(from, to, &env.Msg)
	}
}

func (c *Cluster) sendOne(from, to string, m *cluster.Message) {
	if c.blocked[[2]string{from, to}] || (c.drop > 0 && c.Rand.Float64() < c.drop) {
		return
	}
	d := c.delayLo
	if c.delayHi > c.delayLo {
		d += time.Duration(c.Rand.Int63n(int64(c.delayHi - c.delayLo)))
	}
	c.seq++
	heap.Push(&c.q, delivery{at: c.Now + d, seq: c.seq, from: from, to: to, msg: m})
}

func (c *Cluster) observe(node string, t core.Transition) {
	c.Activations = append(c.Activations, Activation{At: c.Now, Node: node, Group: t.Group, Role: t.Role, Epoch: t.Epoch, Reason: t.Reason})
	c.dbTransition(c.nodes[node], t)
	if t.Role != core.RoleActive {
		return
	}
	if last := c.lastActEp[t.Group]; t.Epoch < last {
		c.fail("node %s acted for group %s under epoch %d after epoch %d had acted", node, t.Group, t.Epoch, last)
	}
	c.lastActEp[t.Group] = t.Epoch
	owners := c.epochOwner[t.Group]
	if owners == nil {
		owners = map[uint64]string{}
		c.epochOwner[t.Group] = owners
	}
	if o, ok := owners[t.Epoch]; ok && o != node {
		c.fail("group %s epoch %d acted on by both %s and %s", t.Group, t.Epoch, o, node)
	}
	owners[t.Epoch] = node
}

func (c *Cluster) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("t=%v: %s", c.Now, fmt.Sprintf(format, args...))
	}
}

// Err returns the first invariant violation seen, if any.
func (c *Cluster) Err() error { return c.err }

// --- faults ---------------------------------------------------------------

// Partition cuts every link between the two sets (both directions).
func (c *Cluster) Partition(a, b []string) {
	for _, x := range a {
		for _, y := range b {
			c.blocked[[2]string{x, y}] = true
			c.blocked[[2]string{y, x}] = true
		}
	}
}

// Isolate cuts one node off from all others.
func (c *Cluster) Isolate(name string) {
	var rest []string
	for _, n := range c.order {
		if n != name {
			rest = append(rest, n)
		}
	}
	c.Partition([]string{name}, rest)
}

// Deafen makes a node hear nobody while everyone still hears it (an
// asymmetric partition: its receive path is broken, its send path is not).
func (c *Cluster) Deafen(name string) {
	for _, n := range c.order {
		if n != name {
			c.blocked[[2]string{n, name}] = true
		}
	}
}

// Heal restores every link, loss and delay.
func (c *Cluster) Heal() {
	c.blocked = map[[2]string]bool{}
	c.drop = 0
	c.delayLo, c.delayHi = 200*time.Microsecond, 2*time.Millisecond
}

// Drop sets the probability that any heartbeat packet is lost.
func (c *Cluster) Drop(p float64) { c.drop = p }

// SlowDisk makes every release save of a node take d longer (0: normal), as
// a disk whose fsync takes seconds.
func (c *Cluster) SlowDisk(name string, d time.Duration) { c.nodes[name].disk = d }

// pendingSave is a release save in flight.
type pendingSave struct {
	rel map[string]uint64
	at  time.Duration
}

// finishSaves completes a running node's release saves that are done.
func (c *Cluster) finishSaves(n *Node) {
	for len(n.saving) > 0 && c.up(n) {
		i := slices.IndexFunc(n.saving, func(ps pendingSave) bool { return ps.at <= c.Now })
		if i < 0 {
			return
		}
		ps := n.saving[i]
		n.saving = slices.Delete(n.saving, i, i+1)
		_ = n.releases.Save(ps.rel)
		n.core.ReleasesSaved(c.Local(n), ps.rel, nil)
	}
}

// Delay sets the one-way delay range of every packet (reordering included).
func (c *Cluster) Delay(lo, hi time.Duration) { c.delayLo, c.delayHi = lo, hi }

// Kill ends a node's process: volatile state is lost, durable state (its raft
// log and released leases) is kept for Restart.
func (c *Cluster) Kill(name string) {
	n := c.nodes[name]
	// A release save in flight may or may not have reached the disk; either
	// way nobody heard of it.
	for _, ps := range n.saving {
		if c.Rand.Intn(2) == 0 {
			_ = n.releases.Save(ps.rel)
		}
	}
	n.alive, n.paused, n.backlog, n.saving = false, false, nil, nil
	if c.leader == name {
		c.loseLeader()
	}
}

// Reconfigure gives one running node a new spec, as a live reload of its
// config does. The cluster's Spec, which the invariants are checked against
// and restarted nodes boot with, stays until SetSpec.
func (c *Cluster) Reconfigure(name string, spec *core.Spec) error {
	n := c.nodes[name]
	if !n.alive {
		return nil
	}
	return n.core.Reconfigure(c.Local(n), spec)
}

// SetSpec makes spec the cluster's (after every node was reconfigured).
func (c *Cluster) SetSpec(spec *core.Spec) { c.Spec = spec }

// Restart boots a killed node from its durable state.
func (c *Cluster) Restart(name string) error {
	n := c.nodes[name]
	if n.alive {
		return nil
	}
	return c.boot(n)
}

// Pause freezes a node's process (SIGSTOP): no ticks, packets queue up.
func (c *Cluster) Pause(name string) {
	if n := c.nodes[name]; n.alive {
		n.paused = true
	}
}

// Resume continues a paused node (SIGCONT); queued packets are processed first.
func (c *Cluster) Resume(name string) {
	n := c.nodes[name]
	if !n.alive || !n.paused {
		return
	}
	n.paused = false
	backlog := n.backlog
	n.backlog = nil
	for _, d := range backlog {
		n.core.Receive(c.Local(n), d.from, d.msg)
	}
}

// SetHealthy sets a node's local health for a group.
func (c *Cluster) SetHealthy(name, group string, ok bool) { c.nodes[name].healthy[group] = ok }

// ForceFailover runs `baton failover --allow-data-loss` on the leader.
func (c *Cluster) ForceFailover(group, to string) error {
	n := c.nodes[c.leader]
	if n == nil {
		return fmt.Errorf("no leader")
	}
	_, err := n.core.ForceFailover(c.Local(n), group, to)
	return err
}

// Leave makes a node hand off its groups (SIGTERM).
func (c *Cluster) Leave(name string) {
	if n := c.nodes[name]; n.alive && !n.paused {
		n.core.Leave(c.Local(n))
	}
}

// --- quorum twin ----------------------------------------------------------

// Ticks is how often the core of the named node ticked since it last started.
func (c *Cluster) Ticks(name string) int { return c.nodes[name].ticks }

func (c *Cluster) up(n *Node) bool { return n.alive && !n.paused }

func (c *Cluster) linked(a, b string) bool {
	return a == b || (!c.blocked[[2]string{a, b}] && !c.blocked[[2]string{b, a}])
}

// canLead: the node is up and reaches a majority of up voters.
func (c *Cluster) canLead(name string) bool {
	n := c.nodes[name]
	if !c.up(n) {
		return false
	}
	reach := 0
	for _, v := range c.Spec.Voters() {
		if c.up(c.nodes[v]) && c.linked(name, v) {
			reach++
		}
	}
	return reach >= len(c.Spec.Voters())/2+1
}

func (c *Cluster) loseLeader() {
	// The first follower to time out starts the election; one that runs Raft
	// at its idle pace (core.Node.RaftIdle: the leader owned nothing) waits
	// the longer idle timeout.
	timeout := time.Duration(0)
	for _, name := range c.order {
		if n := c.nodes[name]; name != c.leader && c.up(n) {
			t := c.Timing.RaftElectionTimeout
			if n.core.RaftIdle() && c.Timing.RaftIdleHeartbeatTimeout > t {
				t = c.Timing.RaftIdleHeartbeatTimeout
			}
			if timeout == 0 || t < timeout {
				timeout = t
			}
		}
	}
	if timeout == 0 {
		timeout = c.Timing.RaftElectionTimeout
	}
	c.leader = ""
	lo, hi := timeout, 2*timeout
	c.electionAt = c.Now + lo + time.Duration(c.Rand.Int63n(int64(hi-lo)+1))
	c.proposals = nil
}

func (c *Cluster) stepQuorum() {
	if c.leader != "" && !c.canLead(c.leader) {
		c.loseLeader()
	}
	if c.leader != "" && c.transferTo != "" {
		if c.canLead(c.transferTo) {
			c.leader, c.leaderFrom = c.transferTo, len(c.log)
			c.proposals = nil
		}
		c.transferTo = ""
	}
	if c.leader == "" && c.Now >= c.electionAt {
		var cands []string
		for _, name := range c.order {
			if c.canLead(name) {
				cands = append(cands, name)
			}
		}
		if len(cands) > 0 {
			c.leader, c.leaderFrom = cands[c.Rand.Intn(len(cands))], len(c.log)
			c.notify(c.leader)
		}
	}
	// Commit proposals whose proposer still leads with a majority.
	var keep []proposal
	for _, p := range c.proposals {
		if c.Now < p.commitAt {
			keep = append(keep, p)
			continue
		}
		if p.proposer == c.leader {
			c.commit(p.cmd)
		}
	}
	c.proposals = keep
	// Replicate to nodes in touch with the leader.
	if c.leader == "" {
		return
	}
	for _, name := range c.order {
		n := c.nodes[name]
		if !c.up(n) || !c.linked(c.leader, name) || n.applied >= len(c.log) {
			continue
		}
		// Followers apply an entry only when the leader next tells them the
		// commit index (hashicorp/raft: up to ~2×CommitTimeout later).
		if name != c.leader && c.Now < c.commitTime[n.applied]+c.followerLag(name, n.applied) {
			continue
		}
		next := n.view.Clone()
		for n.applied < len(c.log) {
			n.applied++
			_ = next.Apply(uint64(n.applied), c.log[n.applied-1])
		}
		n.view = next
		for g, gs := range n.view.Groups {
			if gs.Epoch < c.maxView[name][g] {
				c.fail("node %s view of group %s went back from epoch %d to %d", name, g, c.maxView[name][g], gs.Epoch)
			}
			c.maxView[name][g] = gs.Epoch
		}
		c.notify(name)
	}
}

func (c *Cluster) notify(name string) {
	if n := c.nodes[name]; c.up(n) {
		n.core.StateChanged(c.Local(n))
	}
}

// followerLag is a deterministic pseudo-random delay (0–100 ms) before a
// follower applies a committed entry.
func (c *Cluster) followerLag(node string, idx int) time.Duration {
	h := uint64(idx)*0x9e3779b97f4a7c15 + uint64(len(node))*0xbf58476d1ce4e5b9
	for _, b := range []byte(node) {
		h = (h ^ uint64(b)) * 0x100000001b3
	}
	return time.Duration(h%100) * time.Millisecond
}

type nodeQuorum struct {
	c *Cluster
	n *Node
}

func (q *nodeQuorum) View() *quorum.State { return q.n.view }

// IsLeader is raftstore's DecidingLeader: a new leader decides only once
// its view holds every entry committed before it took over.
func (q *nodeQuorum) IsLeader() bool {
	return q.c.leader == q.n.Name && q.n.applied >= q.c.leaderFrom
}
func (q *nodeQuorum) Leader() string { return q.c.leader }
func (q *nodeQuorum) Propose(cmd quorum.Command) error {
	if q.c.leader != q.n.Name {
		return quorum.ErrNotLeader
	}
	d := time.Millisecond + time.Duration(q.c.Rand.Int63n(int64(4*time.Millisecond)))
	q.c.proposals = append(q.c.proposals, proposal{cmd: cmd, proposer: q.n.Name, commitAt: q.c.Now + d})
	return nil
}

// --- driving --------------------------------------------------------------

// Advance runs the cluster for d of virtual time, checking invariants every step.
func (c *Cluster) Advance(d time.Duration) error {
	end := c.Now + d
	for c.Now < end && c.err == nil {
		c.Now += Step
		c.deliver()
		c.stepQuorum()
		c.stepDBs()
		for _, name := range c.order {
			n := c.nodes[name]
			if !c.up(n) {
				continue
			}
			c.finishSaves(n)
			// As the shell does: Tick when the core says, asked again
			// after every event (here: every step).
			if now := c.Local(n); now >= n.core.NextTick(now) {
				n.core.Tick(now)
				n.ticks++
			}
		}
		c.check()
	}
	return c.err
}

func (c *Cluster) deliver() {
	for c.q.Len() > 0 && c.q[0].at <= c.Now {
		d := heap.Pop(&c.q).(delivery)
		n := c.nodes[d.to]
		switch {
		case !n.alive:
		case n.paused:
			if len(n.backlog) < 4096 {
				n.backlog = append(n.backlog, d)
			}
		default:
			n.core.Receive(c.Local(n), d.from, d.msg)
		}
	}
}

func (c *Cluster) check() {
	c.checkData()
	for _, g := range c.Spec.Units {
		var holders []string
		for _, name := range c.order {
			n := c.nodes[name]
			if n.alive && n.core.LeaseValid(g.Name, c.Local(n)) {
				holders = append(holders, name)
			}
		}
		if len(holders) > 1 {
			c.fail("split brain: %v all hold a valid lease for group %s", holders, g.Name)
		}
	}
}

// Owner returns the node that currently acts for the group under a valid
// lease ("" if none).
func (c *Cluster) Owner(group string) string {
	for _, name := range c.order {
		n := c.nodes[name]
		if c.up(n) && n.core.LeaseValid(group, c.Local(n)) {
			return name
		}
	}
	return ""
}

// commit appends a command to the replicated log.
func (c *Cluster) commit(cmd quorum.Command) {
	if g := c.committed.Group(cmd.Group); cmd.Op == quorum.OpAssign && cmd.Reason == "" &&
		g.Epoch == cmd.ExpectEpoch && g.Owner == cmd.ExpectOwner {
		c.fail("group %s: epoch %d committed with no reason (from %q to %q)", cmd.Group, g.Epoch+1, cmd.ExpectOwner, cmd.Owner)
	}
	c.checkCommit(cmd)
	c.log = append(c.log, cmd)
	c.commitTime = append(c.commitTime, c.Now)
	_ = c.committed.Apply(uint64(len(c.log)), cmd)
}

// Committed returns the replicated state as the log has it. It is shared:
// callers must not modify it.
func (c *Cluster) Committed() *quorum.State { return c.committed }

// Leader returns the quorum leader ("" during an election).
func (c *Cluster) Leader() string { return c.leader }

// WaitOwner advances until every group has an acting owner, up to limit.
// It returns how long that took.
func (c *Cluster) WaitOwner(limit time.Duration) (time.Duration, error) {
	start := c.Now
	for c.Now-start <= limit {
		ok := true
		for _, g := range c.Spec.Units {
			if c.Owner(g.Name) == "" {
				ok = false
			}
		}
		if ok {
			return c.Now - start, nil
		}
		if err := c.Advance(Step); err != nil {
			return c.Now - start, err
		}
	}
	var missing []string
	for _, g := range c.Spec.Units {
		if c.Owner(g.Name) == "" {
			missing = append(missing, g.Name)
		}
	}
	sort.Strings(missing)
	return c.Now - start, fmt.Errorf("t=%v: no owner for %v within %v (leader %q)", c.Now, missing, limit, c.leader)
}

// Status returns a node's status (for debugging failures).
func (c *Cluster) Status(name string) core.Status {
	n := c.nodes[name]
	return n.core.Status(c.Local(n))
}

// Switchover asks the quorum leader to hand group to `to` ("" = best standby).
func (c *Cluster) Switchover(group, to string) error {
	if c.leader == "" {
		return fmt.Errorf("no quorum leader")
	}
	n := c.nodes[c.leader]
	if !c.up(n) {
		return fmt.Errorf("leader %s is down", c.leader)
	}
	_, _, _, err := n.core.RequestHandoff(c.Local(n), group, to, quorum.ReasonSwitchover)
	return err
}

// SetMaintenance turns maintenance on or off ("" = cluster-wide) through the leader.
func (c *Cluster) SetMaintenance(group string, on bool) error {
	if c.leader == "" {
		return fmt.Errorf("no quorum leader")
	}
	return c.nodes[c.leader].core.SetMaintenance(group, on)
}

// HookFailed reports a failed active hook on a node.
func (c *Cluster) HookFailed(name, group string, epoch uint64) {
	if n := c.nodes[name]; c.up(n) {
		n.core.HookFailed(c.Local(n), group, epoch)
	}
}
