package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/quorum"
)

// The harness's databases: for every data-aware group, each member host runs
// a fakeDB that behaves like PostgreSQL streaming replication in the ways the
// sync-standby protocol depends on, and the harness plays the shell (package
// agent) for it: it runs the driver operations the core asks for, promotes on
// takeover, fences on demotion and at agent start, and polls the database's
// state into the core.
//
// A client writes one record per millisecond to whichever member acts for
// the group under a valid lease (the VIP is there, also while the agent is
// frozen: the fence only drops it at the acting deadline). A primary
// acknowledges a write once a standby it names synchronous holds it (none
// named: at once, or never with strict); a fenced primary acknowledges
// nothing. The database outlives its agent (kill -9 of the agent leaves it
// running, as pg_ctl's daemon does). The checks (checkData, checkCommit):
// every recorded synchronous standby holds every acknowledged write, a
// promoted owner holds them all, and only a recorded synchronous standby (or
// the owner itself) is ever given a sync group.

// fakeDB is one member's database for one group.
type fakeDB struct {
	manual bool            // the test fixed the report (SetData): no model, ops succeed at once
	report core.DataReport // manual only
	role   string          // primary | standby | stopped
	log    []uint64        // write ids in commit order: its history
	has    map[uint64]bool // the ids in log
	follow string          // the primary a standby streams from
	caught bool            // the standby caught up with its primary since it connected
	sync   []string        // the synchronous standbys a primary waits for
	strict bool
	fenced bool
	wait   []int       // positions (1-based) of writes this primary holds but has not acknowledged
	ops    []pendingOp // driver operations in flight (completed in order)
}

type pendingOp struct {
	at    time.Duration // global time it completes
	op    core.DataOp
	run   func() error
	group string
}

// dbPoll is how often the shell polls a driver (max(heartbeat, 100 ms)).
func (c *Cluster) dbPoll() time.Duration {
	return max(c.Timing.HeartbeatInterval, 100*time.Millisecond)
}

// SetData fixes what a node's driver reports for a data-aware group (instead
// of the model): the operations the core asks for then succeed at once and
// change nothing.
func (c *Cluster) SetData(name, group string, r core.DataReport) {
	d := c.db(c.nodes[name], group)
	d.manual, d.report = true, r
}

func (c *Cluster) db(n *Node, group string) *fakeDB {
	d := n.dbs[group]
	if d == nil {
		d = &fakeDB{role: "stopped"}
		n.dbs[group] = d
	}
	return d
}

// restartDBs plays the agent's start: it fences every database it runs.
func (c *Cluster) restartDBs(n *Node) {
	for _, u := range c.Spec.Units {
		if _, ok := u.Member(n.Name); ok && u.Data != nil {
			d := c.db(n, u.Name)
			d.fenced, d.wait, d.ops = true, nil, nil
		}
	}
}

// dataOp queues a driver operation the core asked for.
func (c *Cluster) dataOp(n *Node, group string, op core.DataOp) {
	d := c.db(n, group)
	delay := time.Millisecond + time.Duration(c.Rand.Int63n(int64(4*time.Millisecond)))
	run := func() error { return nil }
	if !d.manual {
		switch op.Kind {
		case core.OpSetSync:
			run = func() error { d.sync, d.strict = slices.Clone(op.Standbys), op.Strict; return nil }
		case core.OpFollow:
			delay += 20 * time.Millisecond
			run = func() error { return c.follow(n, group, d, op.Primary) }
		}
	}
	if len(d.ops) > 0 {
		delay = max(delay, d.ops[len(d.ops)-1].at-c.Now)
	}
	d.ops = append(d.ops, pendingOp{at: c.Now + delay, op: op, run: run, group: group})
}

// follow makes d a standby of primary's database, rewinding a diverged
// history to the common prefix (what a returning old primary loses).
func (c *Cluster) follow(n *Node, group string, d *fakeDB, primary string) error {
	p := c.nodes[primary]
	pd := c.db(p, group)
	if !c.linked(n.Name, primary) || pd.role != "primary" {
		return fmt.Errorf("primary %s unreachable", primary)
	}
	common := 0
	for common < len(d.log) && common < len(pd.log) && d.log[common] == pd.log[common] {
		common++
	}
	d.truncate(common)
	d.role, d.follow, d.caught, d.fenced, d.wait = "standby", primary, false, false, nil
	return nil
}

// dbTransition plays the shell's reaction to a role change: promote on
// takeover (no synchronous standbys yet), fence on demotion.
func (c *Cluster) dbTransition(n *Node, t core.Transition) {
	u := c.Spec.Unit(t.Group)
	if u == nil || u.Data == nil {
		return
	}
	d := c.db(n, t.Group)
	switch t.Role {
	case core.RoleActive:
		epoch := t.Epoch
		d.ops = append(d.ops, pendingOp{at: c.Now + 2*time.Millisecond, group: t.Group, run: func() error {
			if !d.manual {
				d.role, d.follow, d.sync, d.strict, d.fenced = "primary", "", slices.Clone(t.Sync), u.Data.Sync == "strict", false
			}
			if c.up(n) {
				n.core.DataPromoted(c.Local(n), t.Group, epoch)
			}
			return nil
		}})
	case core.RoleStandby:
		if !d.manual && d.role == "primary" {
			d.fenced, d.wait = true, nil // pending commits are cancelled, never acknowledged
		}
	}
}

// stepDBs runs one millisecond of every database: finished operations,
// replication, the client's write and acknowledgements, and polls.
func (c *Cluster) stepDBs() {
	for _, name := range c.order {
		n := c.nodes[name]
		for group, d := range n.dbs {
			for len(d.ops) > 0 && d.ops[0].at <= c.Now {
				po := d.ops[0]
				d.ops = d.ops[1:]
				err := po.run()
				if po.op.Kind != 0 && c.up(n) {
					n.core.DataOpDone(c.Local(n), po.group, po.op, err)
				}
			}
			if !d.manual {
				c.replicate(n, group, d)
			}
		}
	}
	c.clientWrites()
	if c.Now%c.dbPoll() == 0 {
		for _, name := range c.order {
			n := c.nodes[name]
			if !c.up(n) {
				continue
			}
			for group, d := range n.dbs {
				n.core.DataPolled(c.Local(n), group, c.report(n, group, d))
			}
		}
	}
}

// replicate copies a few of the primary's records to a connected standby.
func (c *Cluster) replicate(n *Node, group string, d *fakeDB) {
	if d.role != "standby" || d.follow == "" {
		return
	}
	pd := c.db(c.nodes[d.follow], group)
	if pd.role != "primary" || !c.linked(n.Name, d.follow) {
		d.caught = false
		return
	}
	if len(d.log) > len(pd.log) || (len(d.log) > 0 && d.log[len(d.log)-1] != pd.log[len(d.log)-1]) {
		d.caught = false // diverged: it cannot stream until it follows (rewinds) again
		return
	}
	k := 1 + c.Rand.Intn(3)
	for ; k > 0 && len(d.log) < len(pd.log); k-- {
		d.add(pd.log[len(d.log)])
	}
	// PostgreSQL reports a standby "streaming" (and so synchronous, once
	// named) as soon as its walsender has *sent* the primary's WAL up to
	// the end once, while the standby may not have flushed it yet: caught
	// is set a few records short of the primary.
	if len(pd.log)-len(d.log) <= streamingSlack {
		d.caught = true
	}
}

// streamingSlack is how far behind the primary (records) a standby may be
// when it is first reported streaming.
const streamingSlack = 3

// streaming reports the standbys connected to n's database, and those of
// them caught up (PostgreSQL's "streaming" state).
func (c *Cluster) streaming(n *Node, group string) (connected, caught []string) {
	for _, name := range c.order {
		if name == n.Name {
			continue
		}
		sd := c.nodes[name].dbs[group]
		if sd != nil && !sd.manual && sd.role == "standby" && sd.follow == n.Name && c.linked(name, n.Name) {
			connected = append(connected, name)
			if sd.caught {
				caught = append(caught, name)
			}
		}
	}
	return connected, caught
}

func (c *Cluster) report(n *Node, group string, d *fakeDB) core.DataReport {
	if d.manual {
		return d.report
	}
	r := core.DataReport{Known: true, Role: d.role, Pos: uint64(len(d.log)), Empty: d.role == "stopped" && len(d.log) == 0}
	if d.role == "primary" {
		connected, caught := c.streaming(n, group)
		r.Streaming = connected
		for _, s := range caught {
			if slices.Contains(d.sync, s) {
				r.Synchronous = append(r.Synchronous, s)
			}
		}
	}
	return r
}

// clientWrites submits one write to each acting owner's database and
// acknowledges what its synchronous standbys hold.
func (c *Cluster) clientWrites() {
	for _, u := range c.Spec.Units {
		if u.Data == nil {
			continue
		}
		for _, name := range c.order {
			n := c.nodes[name]
			d := n.dbs[u.Name]
			if d == nil || d.manual {
				continue
			}
			if n.alive && n.core.LeaseValid(u.Name, c.Local(n)) && d.role == "primary" && !d.fenced {
				c.nextWrite++
				d.add(c.nextWrite)
				d.wait = append(d.wait, len(d.log))
			}
			c.acknowledge(n, u.Name, d)
		}
	}
}

func (c *Cluster) acknowledge(n *Node, group string, d *fakeDB) {
	if d.role != "primary" || d.fenced || len(d.wait) == 0 {
		return
	}
	held := len(d.log)
	if len(d.sync) > 0 {
		// ANY 1 of the named standbys, streaming from this primary.
		held = 0
		_, caught := c.streaming(n, group)
		for _, s := range d.sync {
			if slices.Contains(caught, s) {
				held = max(held, len(c.nodes[s].dbs[group].log))
			}
		}
	} else if d.strict {
		return
	}
	i := 0
	for i < len(d.wait) && d.wait[i] <= held {
		c.acked = append(c.acked, d.log[d.wait[i]-1])
		i++
	}
	d.wait = d.wait[i:]
}

// checkData: every recorded synchronous standby holds every acknowledged
// write (sync on | strict). Writes acknowledged since the last check are
// checked every step, all of them whenever the recorded set changes and
// every half second.
func (c *Cluster) checkData() {
	full := c.Now%(500*time.Millisecond) == 0
	for _, u := range c.Spec.Units {
		if u.Data == nil || (u.Data.Sync != "on" && u.Data.Sync != "strict") {
			continue
		}
		gs := c.committed.Group(u.Name)
		key := fmt.Sprint(gs.Epoch, gs.Sync)
		from := c.ackedChecked
		if full || c.lastSync[u.Name] != key {
			from, c.lastSync[u.Name] = 0, key
		}
		for _, x := range gs.Sync {
			if d := c.nodes[x].dbs[u.Name]; d != nil && !d.manual {
				if w, missing := missingAcked(d, c.acked[from:]); missing {
					c.fail("group %s: recorded synchronous standby %s (epoch %d) lacks acknowledged write %d (it holds %d writes, last %v; %s)", u.Name, x, gs.Epoch, w, len(d.log), d.log[max(len(d.log)-3, 0):], c.dbSummary(u.Name))
				}
			}
		}
	}
	c.ackedChecked = len(c.acked)
}

func (d *fakeDB) add(w uint64) {
	if d.has == nil {
		d.has = map[uint64]bool{}
	}
	d.log = append(d.log, w)
	d.has[w] = true
}

func (d *fakeDB) truncate(k int) {
	for _, w := range d.log[k:] {
		delete(d.has, w)
	}
	d.log = d.log[:k]
}

// missingAcked returns a write of acked that d does not hold.
func missingAcked(d *fakeDB, acked []uint64) (uint64, bool) {
	for _, w := range acked {
		if !d.has[w] {
			return w, true
		}
	}
	return 0, false
}

// checkCommit checks an assignment about to be committed: in a sync group
// only a recorded synchronous standby, or the owner itself, takes over from
// an owner, and it holds every acknowledged write.
func (c *Cluster) checkCommit(cmd quorum.Command) {
	u := c.Spec.Unit(cmd.Group)
	if cmd.Op != quorum.OpAssign || u == nil || u.Data == nil || (u.Data.Sync != "on" && u.Data.Sync != "strict") {
		return
	}
	gs := c.committed.Group(cmd.Group)
	if gs.Epoch != cmd.ExpectEpoch || gs.Owner != cmd.ExpectOwner || gs.Owner == "" || cmd.Owner == "" ||
		cmd.Owner == gs.Owner || cmd.Reason == quorum.ReasonManual {
		return
	}
	if !slices.Contains(gs.Sync, cmd.Owner) {
		c.fail("group %s: %s promoted at epoch %d although the recorded synchronous standbys were %v", cmd.Group, cmd.Owner, gs.Epoch+1, gs.Sync)
		return
	}
	if d := c.nodes[cmd.Owner].dbs[cmd.Group]; d != nil && !d.manual {
		if w, missing := missingAcked(d, c.acked); missing {
			c.fail("group %s: %s promoted at epoch %d lacks acknowledged write %d", cmd.Group, cmd.Owner, gs.Epoch+1, w)
		}
	}
}

// Acknowledged returns how many writes the client saw acknowledged.
func (c *Cluster) Acknowledged() int { return len(c.acked) }

// DBLog returns how many writes a node's database holds for a group.
func (c *Cluster) DBLog(name, group string) int {
	if d := c.nodes[name].dbs[group]; d != nil {
		return len(d.log)
	}
	return 0
}

// dbSummary describes every member's database of a group (for failures).
func (c *Cluster) dbSummary(group string) string {
	var out []string
	for _, name := range c.order {
		if d := c.nodes[name].dbs[group]; d != nil {
			last := d.log[max(len(d.log)-3, 0):]
			out = append(out, fmt.Sprintf("%s: %s fenced=%v follow=%q caught=%v sync=%v strict=%v len=%d last=%v waiting=%d",
				name, d.role, d.fenced, d.follow, d.caught, d.sync, d.strict, len(d.log), last, len(d.wait)))
		}
	}
	return strings.Join(out, "; ")
}
