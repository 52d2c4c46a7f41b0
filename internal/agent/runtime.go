// Package agent is Baton's runtime shell around the core state machine
// (package core): it feeds the core real time, heartbeats from the UDP
// transport, the quorum store's changes (Raft), health and driver reports, and
// carries out what the core decides: VIPs and their fence (vips.go),
// services and takeover (services.go), driver operations (datart.go), hooks,
// DNS and proxy front doors (frontdoors.go) and the API backend
// (apibackend.go). Everything that touches the outside world lives here; every
// decision lives in the core.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/cluster/udp"
	"github.com/baton-ha/baton/internal/clusterkey"
	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/metrics"
	"github.com/baton-ha/baton/internal/quorum/raftstore"
	"github.com/baton-ha/baton/internal/service"
	"github.com/baton-ha/baton/internal/systemd"
	"golang.org/x/time/rate"
)

// Options start a real agent.
type Options struct {
	Config *config.Config
	Node   string // this node's name (must be in Config)
	Log    *slog.Logger
	// Ready, if set, is closed once the agent listens on all its sockets.
	Ready chan<- struct{}
	// Handler builds the HTTP API handler (package api); nil serves nothing.
	Handler func(a *Agent) http.Handler
	// Version is reported as baton_build_info.
	Version string
	// Systemd, if set, is told when the agent is ready (joined the quorum and
	// caught up), is petted from the core loop for systemd's watchdog, and
	// told when the SIGTERM handoff begins (package systemd).
	Systemd *systemd.Notifier
	// Reloads, if set, asks for a config reload with every value (SIGHUP).
	Reloads <-chan struct{}
	// Debug is fault injection for the nemesis runner (see Debug); nil
	// injects nothing.
	Debug *Debug
}

// Agent is a running agent process: the Node core driven by real time, UDP
// heartbeats, Raft over TLS, hooks and the HTTP API.
type Agent struct {
	opts Options
	// cfg and self are the running config and this node's entry in it; a
	// reload replaces them on the loop, so only the loop reads them. shared
	// is the same config for the API's goroutines; retiring, during a
	// reload, the config being replaced (for the groups it removes).
	cfg          *config.Config
	self         *config.Node
	shared       atomic.Pointer[config.Config]
	retiring     *config.Config
	reloadMu     sync.Mutex // one reload at a time
	bootWhy      string     // why the node last said it does not bootstrap
	reconcileLog *rate.Limiter
	timing       core.Timing
	log          *slog.Logger
	start        time.Time
	node         *core.Node
	udp          *udp.UDP
	raft         *raftstore.Raft
	hooks        *service.HookRunner
	http         *http.Server
	checks       map[string]*health.Group // member groups only
	metrics      *metrics.Metrics
	seenEvent    uint64 // history already turned into metrics (event seq)
	seenTakeover map[uint64]bool
	vips         *vips // nil when this node holds no VIPs
	svcs         map[string]*groupSvc
	fd           *frontDoors
	data         map[string]*dataGroup // data-aware groups this node is a member of
	checkCtx     context.Context       // the checks run until it ends (agent stop)
	stopChecks   context.CancelFunc
	changes      changeSignal // tells the API's event stream to look (stream.go)
	raftIdle     bool         // raft runs at its idle pace (raftpace.go)

	changed chan struct{}
	reqs    chan func(now time.Duration)
	stopped chan struct{}  // closed when the loop has ended
	saves   sync.WaitGroup // release saves in flight (saveReleases)
}

func (a *Agent) now() time.Duration { return time.Since(a.start) }

// decidingQuorum is the Raft store as the core sees it: a leader counts as
// one only once its View holds what earlier leaders committed
// (raftstore.DecidingLeader). The shell's own uses of IsLeader (membership,
// API forwarding, the handoff) keep raft's plain answer.
type decidingQuorum struct{ *raftstore.Raft }

func (q decidingQuorum) IsLeader() bool { return q.DecidingLeader() }

// Run starts the agent and blocks until ctx is cancelled (then it hands off
// its groups and exits) or a fatal error occurs.
func Run(ctx context.Context, opts Options) error {
	a, err := open(opts)
	if err != nil {
		return err
	}
	if opts.Reloads != nil {
		go func() {
			for {
				select {
				case <-opts.Reloads:
					_, _ = a.ReloadConfig(ctx) // logged there
				case <-a.stopped:
					return
				}
			}
		}()
	}
	return a.loop(ctx)
}

func open(opts Options) (_ *Agent, err error) {
	cfg := opts.Config
	self, err := cfg.NodeByName(opts.Node)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", self.Name)
	a := &Agent{opts: opts, cfg: cfg, self: self, timing: cfg.Timing(), log: log, start: time.Now(),
		changed: make(chan struct{}, 1), reqs: make(chan func(time.Duration)), stopped: make(chan struct{})}
	a.shared.Store(cfg)
	a.reconcileLog = rate.NewLimiter(rate.Every(10*time.Second), 1)
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	raiseFDLimit(log)
	a.metrics = metrics.New(cfg.Cluster.Name, self.Name)
	a.metrics.Log = log.With("component", "metrics")
	a.metrics.SetBuildInfo(opts.Version)
	a.seenTakeover = map[uint64]bool{}
	if err := os.MkdirAll(self.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("nodes[%s].data_dir: %w", self.Name, err)
	}
	port := strconv.Itoa(cfg.Cluster.Port)
	peers := map[string]string{}
	var raftPeers []raftstore.Peer
	for _, n := range cfg.Nodes {
		addr := net.JoinHostPort(n.Address, port)
		peers[n.Name] = addr
		raftPeers = append(raftPeers, raftstore.Peer{ID: n.Name, Addr: addr})
	}
	bind := net.JoinHostPort(self.Address, port)
	// Every key of cluster traffic comes from the stretched secret (argon2id, once per process: internal/clusterkey),
	// so the raft certificate anyone can fetch and a captured heartbeat are no cheap test of a guessed secret.
	kdfStart := time.Now()
	clusterKey := clusterkey.Derive(cfg.Secret, cfg.Cluster.Name)
	log.Info("cluster key derived", "kdf", "argon2id", "took", time.Since(kdfStart).Round(time.Millisecond))
	inc, err := nextIncarnation(filepath.Join(self.DataDir, "incarnation"), opts.Debug.wallNow())
	if err != nil {
		return nil, fmt.Errorf("nodes[%s].data_dir: %w", self.Name, err)
	}
	a.udp, err = udp.Listen(bind, self.Name, inc, peers,
		cluster.NewCodec(clusterKey, cfg.Cluster.Name), log.With("component", "heartbeat"))
	if err != nil {
		return nil, err
	}
	st := &a.udp.Stats
	a.metrics.RegisterPacketCounters(st.Sent.Load, st.Received.Load, func() map[string]uint64 {
		return map[string]uint64{"auth": st.RejectedAuth.Load(), "replay": st.RejectedReplay.Load(),
			"malformed": st.RejectedMalformed.Load(), "unknown_peer": st.RejectedUnknownPeer.Load(),
			"misdirected": st.RejectedMisdirected.Load(), "version": st.RejectedVersion.Load()}
	})
	a.raft, err = raftstore.OpenRaft(raftstore.RaftConfig{
		NodeID: self.Name, Bind: bind, DataDir: self.DataDir, Peers: raftPeers,
		Secret: clusterKey, Cluster: cfg.Cluster.Name,
		HeartbeatTimeout: a.timing.RaftHeartbeatTimeout, ElectionTimeout: a.timing.RaftElectionTimeout,
		LeaderLeaseTimeout: a.timing.RaftLeaderLease, CommitTimeout: a.timing.RaftCommitTimeout,
		Logger: log.With("component", "raft"), OnChange: a.notify, FsyncDelay: opts.Debug.FsyncDelay,
		// A node without quorum state may be joining a running cluster or
		// replacing a lost member: it bootstraps only when the core says the
		// cluster is new (core.Node.BootstrapDue).
		DeferBootstrap: true,
	})
	if err != nil {
		return nil, fmt.Errorf("quorum store in %s: %w", self.DataDir, err)
	}
	a.hooks = service.NewHookRunner(log.With("component", "hooks"))
	a.metrics.RegisterQuorumRejected(a.raft.RejectedConns)
	a.metrics.RegisterSendErrors(a.udp.Stats.SendErrors.Load)
	a.checks = map[string]*health.Group{}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if _, member := g.Member(self.Name); !member {
			continue
		}
		hg, err := a.newChecks(g)
		if err != nil {
			return nil, fmt.Errorf("groups[%d].checks: %w", i, err)
		}
		a.checks[g.Name] = hg
	}
	sendLog := rate.NewLimiter(rate.Every(10*time.Second), 1)
	releases := &FileReleases{Path: self.DataDir + "/released.json", FsyncDelay: opts.Debug.FsyncDelay}
	a.node, err = core.NewNode(core.Deps{
		Name: self.Name, Spec: cfg.CoreSpec(), Quorum: decidingQuorum{a.raft}, WallNow: opts.Debug.wallNow,
		Send: func(to string, m *cluster.Message) {
			if err := a.udp.Send(to, m); err != nil && sendLog.Allow() {
				// A heartbeat that is never sent makes this node look dead
				// to its peers: say so loudly (counted in
				// baton_heartbeat_send_errors_total, logged now and then).
				log.Error("heartbeat not sent", "to", to, "err", err, "failed_so_far", a.udp.Stats.SendErrors.Load())
			}
		},
		SendMany: func(to []string, m *cluster.Message) {
			if err := a.udp.SendMany(to, m); err != nil && sendLog.Allow() {
				log.Error("heartbeat not sent", "to", to, "err", err, "failed_so_far", a.udp.Stats.SendErrors.Load())
			}
		},
		OnRole: a.onRole,
		OnRTT:  a.metrics.ObserveHeartbeatRTT,
		OnActing: func(group string, until time.Duration) {
			if a.vips != nil {
				a.vips.acting(a.now(), group, until)
			}
			if dg := a.data[group]; dg != nil {
				a.armDataFence(dg, group, until)
			}
		},
		Healthy:            a.healthy,
		Releases:           releases,
		SaveReleases:       a.saveReleases(releases),
		RaftRole:           a.raft.Role,
		TransferLeadership: func(to string) { go func() { _ = a.raft.TransferLeadership(to) }() },
		DataOp:             a.runDataOp,
		Fresh:              a.raft.Fresh(),
		Log:                log.With("component", "core"),
	})
	if err != nil {
		return nil, err
	}
	if err := a.openVIPs(); err != nil {
		return nil, err
	}
	if err := a.openServices(); err != nil {
		return nil, err
	}
	if err := a.openData(); err != nil {
		return nil, err
	}
	if err := a.openFrontDoors(); err != nil {
		return nil, err
	}
	if opts.Handler == nil {
		return a, nil
	}
	ln, err := net.Listen("tcp", self.API)
	if err != nil {
		return nil, fmt.Errorf("nodes[%s].api: cannot listen on %s: %w", self.Name, self.API, err)
	}
	a.http = &http.Server{Handler: opts.Handler(a), ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout: apiReadTimeout, WriteTimeout: apiWriteTimeout, IdleTimeout: apiIdleTimeout,
		ErrorLog: slog.NewLogLogger(log.With("component", "api").Handler(), slog.LevelDebug)}
	var served net.Listener = newLimitListener(ln, apiMaxConns, apiMaxPerSource, log.With("component", "api"))
	if t := cfg.API.TLS; t != nil {
		// HTTPS only: a plain HTTP request gets net/http's 400 "Client sent an HTTP request to an HTTPS server".
		tc, err := t.ServerConfig(self.Name)
		if err != nil {
			ln.Close()
			return nil, err
		}
		served = tls.NewListener(served, tc)
	}
	go func() {
		if err := a.http.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server stopped", "err", err)
		}
	}()
	return a, nil
}

// newChecks builds (does not start) the health checks of a member group.
func (a *Agent) newChecks(g *config.Group) (*health.Group, error) {
	hg, err := health.NewGroup(g.Name, g.Checks, a.log.With("component", "health"), func(string, bool) { a.notify() })
	if err != nil {
		return nil, err
	}
	hg.SetObserver(func(group, check string, r health.Result) { a.metrics.CheckResult(group, check, r.OK, r.Took) })
	return hg, nil
}

func (a *Agent) notify() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// onRole turns the core's role changes into effects. Becoming active starts
// the takeover (service, checks, then front doors and the active hook: see
// services.go); becoming standby takes the front doors down first, then the
// service, then runs the standby hook.
func (a *Agent) onRole(t core.Transition) {
	if a.unitConfig(t.Group) == nil {
		return
	}
	switch t.Role {
	case core.RoleActive:
		a.promote(t)
	case core.RoleStandby:
		a.demote(t)
		a.runHook(t)
	default:
		a.runHook(t)
	}
}

// unitConfig is the config of a unit: the running one's, or during a reload
// the retiring one's for a unit the reload removes.
func (a *Agent) unitConfig(name string) *config.Group {
	if u := a.cfg.UnitByName(name); u != nil {
		return u
	}
	if a.retiring != nil {
		return a.retiring.UnitByName(name)
	}
	return nil
}

// runHook runs the group's hook for t.Role (and notify).
func (a *Agent) runHook(t core.Transition) {
	g := a.unitConfig(t.Group)
	env := service.Env{Cluster: a.cfg.Cluster.Name, Node: a.self.Name, Group: g.GroupOf(), Role: t.Role,
		Epoch: t.Epoch, PreviousOwner: t.PreviousOwner, Reason: t.Reason}
	if g.Parent != "" {
		env.Unit = g.Name
		if len(g.VIPs) > 0 {
			env.VIP = g.VIPs[0].Address
		}
	}
	var argv []string
	switch t.Role {
	case core.RoleActive:
		argv = g.Hooks.Active
	case core.RoleStandby:
		argv = g.Hooks.Standby
	case core.RoleFault:
		argv = g.Hooks.Fault
	}
	if len(argv) > 0 {
		job := service.HookJob{Argv: argv, Timeout: g.Hooks.Timeout.D(), Env: env}
		job.Done = func(r service.Result) {
			a.metrics.HookRun(t.Group, t.Role, r.Err == nil, r.Took)
			if r.Err != nil && t.Role == core.RoleActive {
				// A failing active hook means this node cannot serve: give the
				// group up so that the next candidate is tried.
				a.post(func(now time.Duration) { a.node.HookFailed(now, t.Group, t.Epoch) })
			}
		}
		a.hooks.Enqueue(t.Group, job)
	}
	if len(g.Hooks.Notify) > 0 {
		a.hooks.Enqueue(t.Group, service.HookJob{Argv: g.Hooks.Notify, Timeout: g.Hooks.Timeout.D(), Env: env,
			Done: func(r service.Result) { a.metrics.HookRun(t.Group, "notify", r.Err == nil, r.Took) }})
	}
}

// post runs f on the agent loop without waiting; dropped once the loop ended.
func (a *Agent) post(f func(now time.Duration)) {
	go func() {
		select {
		case a.reqs <- f:
		case <-a.stopped:
		}
	}()
}

func (a *Agent) loop(ctx context.Context) error {
	defer a.close()
	defer close(a.stopped)
	if err := a.node.Start(a.now()); err != nil {
		return err
	}
	checkCtx, stopChecks := context.WithCancel(context.Background())
	a.checkCtx, a.stopChecks = checkCtx, stopChecks
	for _, hg := range a.checks {
		hg.Start(checkCtx)
	}
	a.startServices()
	a.startData()
	go a.reconcileVoters(ctx)
	a.log.Info("agent started", "cluster", a.cfg.Cluster.Name, "profile", a.cfg.Cluster.Profile,
		"heartbeat", a.timing.HeartbeatInterval, "lease", a.timing.FailureTimeout, "api", a.self.API)
	if a.opts.Ready != nil {
		close(a.opts.Ready)
	}
	sd := a.opts.Systemd
	sd.Status("waiting for the quorum: no leader known yet")
	sdLeader := "" // the leader the systemd status line names
	// The core says when it must tick next (core.Node.NextTick): every
	// TickPeriod while anything is in flux, less often when settled.
	tickAt := a.node.NextTick(a.now())
	tick := time.NewTimer(max(tickAt-a.now(), 0))
	defer tick.Stop()
	in := a.udp.In()
	var leaveDeadline time.Time
	var waitLogged bool
	done := ctx.Done()
	for {
		select {
		case <-done:
			sd.Stopping("handing off owned groups")
			a.log.Info("shutting down: handing off owned groups")
			a.node.Leave(a.now())
			done = nil
			leaveDeadline = time.Now().Add(2*a.node.Hold() + 2*time.Second)
		case m, ok := <-in:
			if !ok {
				return errors.New("heartbeat socket closed")
			}
			a.node.Receive(a.now(), m.From, &m.Msg)
		case <-a.changed:
			a.node.StateChanged(a.now())
		case <-tick.C:
			tickAt = -1 // fired: arm again below
			a.node.Tick(a.now())
			a.maybeBootstrap(a.now())
			if a.vips != nil {
				a.vips.renew(a.now())
			}
			// Here, on the loop that drives the core, so that a core that
			// stops turning stops petting systemd's watchdog.
			sd.Pet(time.Now())
			if sd.IsReady() && done != nil {
				if l := a.raft.Leader(); l != sdLeader {
					sdLeader = l
					sd.Status("running: quorum leader " + orNone(l))
				}
			}
		case f := <-a.reqs:
			f(a.now())
		}
		a.publish()
		a.paceRaft()
		a.changes.signal()
		if next := a.node.NextTick(a.now()); next != tickAt {
			tickAt = next
			tick.Reset(max(next-a.now(), 0))
		}
		if done != nil && sd.Enabled() && !sd.IsReady() && a.raft.Synced() {
			sdLeader = a.raft.Leader()
			sd.Ready("running: quorum leader " + sdLeader)
			a.log.Info("told systemd the agent is ready (joined the quorum, caught up)", "leader", sdLeader)
		}
		if done == nil {
			pending := a.node.HandoffPending(a.now())
			switch {
			case len(pending) > 0 && time.Now().Before(leaveDeadline):
				if !waitLogged {
					a.log.Info("waiting for successors to be committed before exiting", "groups", pending,
						"at_most", time.Until(leaveDeadline).Round(time.Millisecond))
					waitLogged = true
				}
				continue
			case len(pending) > 0:
				a.log.Warn("no successor committed before the shutdown deadline; leaving anyway", "groups", pending)
			}
			a.handOffLeadership()
			a.hooks.Drain(5 * time.Second)
			a.log.Info("agent stopped")
			return nil
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none known"
	}
	return s
}

// handOffLeadership moves quorum leadership away before exit, so the rest of
// the cluster does not wait for an election. Raft picks the most caught-up
// follower: naming one from the config could pick a dead node and wait out
// the transfer timeout.
func (a *Agent) handOffLeadership() {
	if !a.raft.IsLeader() {
		return
	}
	if err := a.raft.TransferLeadership(""); err != nil {
		a.log.Info("quorum leadership not transferred before exit; the others elect a leader", "err", err)
	}
}

// call runs f on the agent loop and waits for it (or ctx).
func (a *Agent) call(ctx context.Context, f func(now time.Duration)) error {
	done := make(chan struct{})
	select {
	case a.reqs <- func(now time.Duration) { f(now); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.stopped:
		return errors.New("agent is shutting down")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// saveReleases makes the core's lease releases durable off the loop, so a
// slow disk delays only the releases, never the heartbeats and acks (see
// core.Node.ReleasesSaved). Saves merge into one file under its lock, in any
// order; close waits for those in flight.
func (a *Agent) saveReleases(store *FileReleases) func(map[string]uint64) {
	return func(released map[string]uint64) {
		a.saves.Add(1)
		go func() {
			defer a.saves.Done()
			err := store.Save(released)
			a.post(func(now time.Duration) { a.node.ReleasesSaved(now, released, err) })
		}()
	}
}

func (a *Agent) close() {
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = a.http.Shutdown(ctx)
		cancel()
	}
	if a.vips != nil {
		a.vips.close()
	}
	a.closeData()
	a.closeServices()
	a.fd.close()
	if a.stopChecks != nil {
		a.stopChecks()
	}
	for _, hg := range a.checks {
		hg.Stop()
	}
	if a.hooks != nil {
		a.hooks.Close()
	}
	a.saves.Wait()
	if a.raft != nil {
		if err := a.raft.Close(); err != nil {
			a.log.Warn("closing quorum store", "err", err)
		}
	}
	if a.udp != nil {
		_ = a.udp.Close()
	}
}
