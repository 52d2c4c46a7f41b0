package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/driver"
	"github.com/baton-ha/baton/internal/quorum"
)

// dataGroup is the shell's side of a data-aware group on a member: a poller
// that reads the driver's state every heartbeat interval and hands it to the
// core (which decides what the database should do: core/syncstandby.go), a
// queue that runs driver operations one at a time in order (bootstrap,
// promote, follow, setting the synchronous standbys), and the early fence.
// Fence bypasses the queue: it must act at once.
type dataGroup struct {
	g   *config.Group
	drv driver.Driver

	// Loop-owned.
	state    driver.State
	stateErr error
	lastOK   time.Duration // when State last succeeded (agent clock); everOK: it ever did
	everOK   bool

	// promoted is the epoch whose promotion finished (0 after a fence): the
	// early-fence timer reads it from its own goroutine.
	promoted atomic.Uint64
	busy     atomic.Int32           // operations running (bootstrap, promote, follow, ...)
	opEnd    atomic.Int64           // when the last one ended (agent clock, ns)
	lastErr  atomic.Pointer[string] // the last driver error (nil: the last state poll succeeded)

	// The early fence: see armDataFence.
	fenceTimer *time.Timer
	fenceMu    sync.Mutex
	preFenced  atomic.Bool
	ops        chan func()
	start      time.Time // the agent's clock origin (opEnd is measured from it)
	wg         sync.WaitGroup
	cancel     context.CancelFunc
	ctx        context.Context
}

func (a *Agent) openData() error {
	a.data = map[string]*dataGroup{}
	for i := range a.cfg.Groups {
		g := &a.cfg.Groups[i]
		if g.Driver == nil {
			continue
		}
		if _, member := g.Member(a.self.Name); !member {
			continue
		}
		var members, addrs []string
		for _, m := range g.Members {
			members = append(members, m.Node)
			if n, err := a.cfg.NodeByName(m.Node); err == nil {
				addrs = append(addrs, n.Address)
			}
		}
		group, cluster, node := g.Name, a.cfg.Cluster.Name, a.self.Name
		// One cluster file serves every node: "{node}" in the data dir
		// stands for this node's name (several members on one machine).
		dcfg := *g.Driver
		dcfg.DataDir = strings.ReplaceAll(dcfg.DataDir, "{node}", a.self.Name)
		sockDir := ""
		if dcfg.Type == "postgres" && dcfg.DataDir != "" {
			// Its own socket directory, so that members sharing a machine
			// (or a file system, as in the namespace lab) do not collide.
			sockDir = dcfg.DataDir + ".run"
			if err := makeOwnedDir(sockDir, dcfg.OSUser); err != nil {
				return fmt.Errorf("groups[%d].driver: socket directory %s: %w", i, sockDir, err)
			}
		}
		var peers []driver.Peer
		for _, m := range g.Members {
			if nd, err := a.cfg.NodeByName(m.Node); err == nil {
				peers = append(peers, driver.Peer{Node: m.Node, Host: nd.Address, Port: driverPort(&dcfg)})
			}
		}
		drv, err := driver.New(&dcfg, driver.Options{
			Cluster: a.cfg.Cluster.Name, Group: g.Name, Node: a.self.Name, Members: members, Peers: peers, MemberAddresses: addrs,
			SocketDir: sockDir, // listen_addresses "*": clients come through the VIPs too
			Logger:    a.log.With("component", "driver", "group", g.Name), AllowRebuild: g.Driver.AllowRebuild,
			Env: func() []string {
				return []string{"BATON_CLUSTER=" + cluster, "BATON_NODE=" + node, "BATON_GROUP=" + group}
			},
		})
		if err != nil {
			return fmt.Errorf("groups[%d].driver: %w", i, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.data[g.Name] = &dataGroup{g: g, drv: drv, ops: make(chan func(), 64),
			ctx: ctx, cancel: cancel, start: a.start}
	}
	return nil
}

func (a *Agent) startData() {
	for _, dg := range a.data {
		// A node acts for nothing at start: a database left running as
		// primary by an earlier agent (pg_ctl daemonises it) must stop
		// acknowledging writes before anything else happens.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := dg.drv.Fence(ctx); err != nil {
			a.log.Warn("fencing the database at start", "group", dg.g.Name, "err", err)
		}
		cancel()
		dg.wg.Add(2)
		go func() {
			defer dg.wg.Done()
			for {
				select {
				case op := <-dg.ops:
					op()
				case <-dg.ctx.Done():
					return
				}
			}
		}()
		go a.pollData(dg)
	}
}

func (a *Agent) closeData() {
	for _, dg := range a.data {
		if dg.fenceTimer != nil {
			dg.fenceTimer.Stop()
		}
		dg.cancel()
		dg.wg.Wait()
	}
}

// pollData reads the driver's state every heartbeat interval (at least
// every 100 ms) and hands it to the agent loop.
func (a *Agent) pollData(dg *dataGroup) {
	defer dg.wg.Done()
	t := time.NewTicker(max(a.timing.HeartbeatInterval, 100*time.Millisecond))
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(dg.ctx, time.Second)
		st, err := dg.drv.State(ctx)
		cancel()
		a.post(func(now time.Duration) { a.dataPolled(now, dg, st, err) })
		select {
		case <-t.C:
		case <-dg.ctx.Done():
			return
		}
	}
}

// enqueue runs op on the group's driver queue, after the operations before it.
func (dg *dataGroup) enqueue(op func(ctx context.Context)) {
	run := func() {
		dg.busy.Add(1)
		defer func() {
			dg.opEnd.Store(int64(time.Since(dg.start)))
			dg.busy.Add(-1)
		}()
		op(dg.ctx)
	}
	select {
	case dg.ops <- run:
	case <-dg.ctx.Done():
	}
}

func (a *Agent) dataPolled(now time.Duration, dg *dataGroup, st driver.State, err error) {
	if a.node == nil {
		return
	}
	if err != nil && !errors.Is(err, context.Canceled) && (dg.stateErr == nil || dg.stateErr.Error() != err.Error()) {
		a.log.Warn("database state unavailable", "group", dg.g.Name, "err", err)
	}
	dg.stateErr = err
	if err != nil {
		msg := err.Error()
		dg.lastErr.Store(&msg)
		// A database that is starting or restarting does not answer for a
		// moment: keep reporting what it last said (see dataHealthy).
		st = dg.state
	} else {
		dg.lastErr.Store(nil)
		if st.Unrelated != "" {
			// Not an error of the poll, but what status must show.
			msg := st.Unrelated
			dg.lastErr.Store(&msg)
		}
		dg.state, dg.lastOK, dg.everOK = st, now, true
	}
	r := core.DataReport{Known: dg.everOK, Role: string(st.Role), Pos: st.Pos.LSN, Synchronous: st.Sync, Unrelated: st.Unrelated != "",
		Empty: st.Role == driver.RoleStopped && st.Pos == (driver.Position{})}
	for node := range st.Lag {
		r.Streaming = append(r.Streaming, node)
	}
	slices.Sort(r.Streaming)
	a.node.DataPolled(now, dg.g.Name, r)
}

// runDataOp carries out a driver operation the core asked for (on the
// group's queue, after those before it) and reports the outcome back.
func (a *Agent) runDataOp(group string, op core.DataOp) {
	dg := a.data[group]
	if dg == nil {
		return
	}
	var peer driver.Peer
	if op.Kind == core.OpFollow {
		nd, err := a.cfg.NodeByName(op.Primary)
		if err != nil {
			a.post(func(now time.Duration) { a.node.DataOpDone(now, group, op, err) })
			return
		}
		peer = driver.Peer{Node: op.Primary, Host: nd.Address, Port: driverPort(dg.g.Driver)}
	}
	dg.enqueue(func(ctx context.Context) {
		var err error
		switch op.Kind {
		case core.OpSetSync:
			err = dg.drv.SetSync(ctx, op.Standbys, op.Strict)
		case core.OpFollow:
			if op.Bootstrap {
				err = dg.drv.Bootstrap(ctx, &peer)
			} else {
				err = dg.drv.Follow(ctx, peer)
			}
		}
		a.post(func(now time.Duration) { a.node.DataOpDone(now, group, op, err) })
	})
}

// dataHealthy: the database has answered within the last few seconds (it
// may not while it starts, restarts or rewinds).
// An operation in progress (initdb, a base backup, a rewind) and a few
// seconds after it count as answering.
func (a *Agent) dataHealthy(dg *dataGroup) bool {
	if !dg.everOK {
		return false
	}
	window := max(3*time.Second, 4*a.timing.FailureTimeout)
	last := max(dg.lastOK, time.Duration(dg.opEnd.Load()))
	return dg.busy.Load() > 0 || a.now()-last < window
}

// promoteData takes the database over for epoch: start it if needed
// (initialising a first primary), set the synchronous standbys the policy
// starts with (strict: commits wait until one catches up), and promote.
func (a *Agent) promoteData(dg *dataGroup, epoch uint64, sync []string) {
	if dg.state.Role == driver.RoleStopped && dg.state.Pos == (driver.Position{}) && epoch > 1 {
		// No data at all, and the group had a primary before: starting an
		// empty database would not be a failover but a new database.
		a.post(func(now time.Duration) {
			a.node.GiveUp(now, dg.g.Name, epoch, quorum.ReasonStart, "this member has no copy of the data yet")
		})
		return
	}
	strict := dg.g.Driver.Sync == "strict"
	dg.preFenced.Store(false)
	stopped := dg.state.Role == driver.RoleStopped
	dg.enqueue(func(ctx context.Context) {
		err := func() error {
			if stopped {
				if err := dg.drv.Bootstrap(ctx, nil); err != nil {
					return fmt.Errorf("start: %w", err)
				}
			}
			if err := dg.drv.SetSync(ctx, sync, strict); err != nil {
				return fmt.Errorf("set synchronous standbys %v: %w", sync, err)
			}
			return dg.drv.Promote(ctx, epoch)
		}()
		if err != nil {
			a.log.Error("promoting the database failed", "group", dg.g.Name, "epoch", epoch, "err", err)
			return
		}
		dg.promoted.Store(epoch)
		a.post(func(now time.Duration) { a.node.DataPromoted(now, dg.g.Name, epoch) })
		a.log.Info("database promoted", "group", dg.g.Name, "epoch", epoch)
	})
}

// driverPort is where the group's database listens on every member.
func driverPort(d *config.Driver) int {
	switch {
	case d.Port != 0:
		return d.Port
	case d.Type == "postgres":
		return 5432
	case d.Type == "redis":
		return 6379
	}
	return 0
}

// makeOwnedDir creates dir (mode 0755, parents 0755) owned by the OS user
// the database runs as (default postgres) when running as root.
func makeOwnedDir(dir, osUser string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if osUser == "" {
		osUser = "postgres"
	}
	u, err := user.Lookup(osUser)
	if err != nil {
		return fmt.Errorf("os user %q: %w (driver.os_user)", osUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// dataFenceLead is how long before the acting deadline (when the VIPs go)
// an owner whose lease was not renewed fences its database: long enough for
// the database to end its client sessions while the VIP still carries their
// goodbye, so clients stuck on the old primary hear of it at once instead of
// waiting out their own timeouts. It is at most a quarter of the acting
// window (lease − guard), so renewals every heartbeat never trigger it:
// 85 ms with the default profile, 30 ms with fast.
func (a *Agent) dataFenceLead() time.Duration {
	return min(100*time.Millisecond, (a.timing.FailureTimeout-a.timing.LeaseGuard)/4)
}

// armDataFence is called whenever the owner's acting deadline moves (every
// renewal). A timer fences the database dataFenceLead before the deadline
// unless the next renewal comes first; a renewal after such an early fence
// (a late lease, but still ours) lifts it again.
func (a *Agent) armDataFence(dg *dataGroup, group string, until time.Duration) {
	d := until - a.dataFenceLead() - a.now()
	if dg.fenceTimer == nil {
		dg.fenceTimer = time.AfterFunc(d, func() {
			if dg.promoted.Load() == 0 {
				return
			}
			dg.preFenced.Store(true)
			dg.fenceMu.Lock()
			defer dg.fenceMu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := dg.drv.Fence(ctx); err != nil {
				a.log.Error("early fence of the database failed", "group", group, "err", err)
				return
			}
			a.log.Warn("lease not renewed in time: database fenced ahead of the acting deadline", "group", group)
		})
	} else {
		dg.fenceTimer.Reset(d)
	}
	if epoch := dg.promoted.Load(); epoch != 0 && dg.preFenced.Load() {
		dg.preFenced.Store(false)
		a.log.Info("lease renewed after an early fence: lifting it", "group", group, "epoch", epoch)
		dg.enqueue(func(ctx context.Context) {
			dg.fenceMu.Lock()
			defer dg.fenceMu.Unlock()
			if dg.promoted.Load() != epoch {
				return
			}
			if err := dg.drv.Promote(ctx, epoch); err != nil {
				a.log.Error("lifting the early fence failed", "group", group, "err", err)
			}
		})
	}
}

// fenceData stops the database acknowledging writes, at once.
func (a *Agent) fenceData(dg *dataGroup) {
	dg.promoted.Store(0)
	dg.preFenced.Store(false)
	if dg.fenceTimer != nil {
		dg.fenceTimer.Stop()
	}
	go func() {
		dg.fenceMu.Lock()
		defer dg.fenceMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		t0 := time.Now()
		if err := dg.drv.Fence(ctx); err != nil {
			a.log.Error("fencing the database failed", "group", dg.g.Name, "err", err)
			return
		}
		a.log.Info("database fenced", "group", dg.g.Name, "took", time.Since(t0).Round(time.Microsecond))
	}()
}
