// Package raftstore is the durable quorum store: hashicorp/raft with
// raft-boltdb in the node's data_dir, over mutual TLS whose Ed25519 keys are
// derived from the cluster secret and pinned, applying quorum.Command to a
// quorum.State. It implements quorum.Quorum for the agent.
package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/quorum"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"golang.org/x/time/rate"
)

// Raft tuning that is not a timing profile value.
const (
	snapshotThreshold = 1024             // entries between snapshots: the state is tiny, compact often
	trailingLogs      = 1024             // entries kept after a snapshot, so a briefly absent follower catches up from the log
	snapshotInterval  = 30 * time.Second // how often raft checks the threshold
	snapshotsRetained = 2                // the newest, plus one in case it turns out corrupt
	logCacheSize      = 512              // recent entries served from memory to replication
	// maxAppendEntries is raft's group commit: proposals waiting together are
	// written to disk, replicated and applied as one batch of up to this
	// many. The leader proposes one assignment per group in one pass, so
	// when the owner of a few hundred groups dies they commit in one disk
	// write and one round trip (raft's default is 64). Entries are tiny.
	maxAppendEntries = 256
	maxPool          = 3 // pooled TCP connections per peer
	// rpcTimeout is the I/O deadline of one raft RPC. It does not bound
	// failure detection (heartbeats and elections have their own timers); it
	// only frees a connection to a peer that stopped answering.
	rpcTimeout = 10 * time.Second
	// proposeEnqueueTimeout bounds how long Propose waits for room in raft's
	// apply queue (buffered: raft.Config.BatchApplyCh); it never waits for
	// replication or the disk. The caller is the agent's loop, which sends
	// no heartbeats while it waits; a proposal that finds the queue full is
	// dropped and proposed again from a later View (commands are CAS).
	proposeEnqueueTimeout = 10 * time.Millisecond
	// proposeSlow: a Propose that takes longer is logged (rate-limited).
	proposeSlow = 20 * time.Millisecond
	// boltOpenTimeout bounds the wait for raft.db's file lock, which another
	// agent on the same DataDir would hold forever.
	boltOpenTimeout = 2 * time.Second
)

// Peer is one voter: its node name and raft address ("ip:port").
type Peer struct{ ID, Addr string }

// RaftConfig configures OpenRaft.
type RaftConfig struct {
	NodeID    string // node name, used as raft ServerID
	Bind      string // "ip:port" TCP listen address (TLS transport only)
	Advertise string // address peers dial; defaults to Bind
	// DataDir holds raft.db (raft-boltdb v2) and snapshots/; created 0700.
	// Empty means in-memory stores, which is allowed only with Transport.
	DataDir string
	Peers   []Peer // all voters including this node, the same list on every node
	Secret  []byte // cluster key (the agent passes the argon2id-stretched secret, internal/clusterkey); authenticates and encrypts raft traffic
	Cluster string // cluster name; part of the key derivation
	// Raft timers; zero takes raft's default. LeaderLeaseTimeout must not
	// exceed HeartbeatTimeout, nor HeartbeatTimeout ElectionTimeout.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	// Logger receives raft's logs: warnings and errors at their level,
	// everything else at Debug. nil discards them.
	Logger *slog.Logger
	// OnChange, if set, is called after applies and leadership changes, from
	// one goroutine, coalesced: several changes may yield one call, and a call
	// always follows the last change. It may block; raft does not wait for it.
	OnChange func()
	// DeferBootstrap leaves a node without raft state unbootstrapped: it
	// waits for a leader to add it (a node joining a running cluster, or one
	// replacing a member whose data_dir is gone), unless the caller decides
	// the cluster is new and calls Bootstrap. Without it such a node
	// bootstraps with Peers at once.
	DeferBootstrap bool
	// Transport, if set, replaces the TLS transport (tests pass
	// raft.NewInmemTransport). Raft owns it once OpenRaft succeeds and closes
	// it on Close; a failed OpenRaft leaves it open.
	Transport raft.Transport
	// FsyncDelay, if set, is a debug fault (agent.Debug): every write to the
	// log and stable store first waits as long as it says, as if
	// raft-boltdb's fsync took that long. nil in production.
	FsyncDelay func() time.Duration
}

// Raft is the durable Quorum: hashicorp/raft over TLS with raft-boltdb.
type Raft struct {
	id      string
	raft    *raft.Raft
	fsm     *FSM
	peersMu sync.Mutex
	peers   map[string]string // ID → address (under peersMu)
	stream  *TLSStreamLayer   // nil with a caller-supplied Transport
	patient *patientTransport // nil with a caller-supplied Transport
	bolt    *raftboltdb.BoltStore
	// fresh: the stores held no state at open and Bootstrap has not run.
	fresh    atomic.Bool
	boot     raft.Configuration
	changeMu sync.Mutex // one membership change at a time

	obsCh  chan raft.Observation
	obs    *raft.Observer
	signal chan struct{} // capacity 1: a pending OnChange call
	// committed (capacity 1): entries were applied here; a leader tells its
	// followers at once (announceCommits).
	committed chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// readyTerm is the term in which this node, as leader, last passed a
	// barrier (under readyMu): from then on its View holds every entry an
	// earlier leader committed, and ReadIndex may answer from it.
	readyMu   sync.Mutex
	readyTerm uint64
	readying  atomic.Bool // a new leader's barrier runs (readyAsync)
	bgMu      sync.Mutex  // closing, and wg.Add of background goroutines
	closing   bool
	log       *slog.Logger
	slowLog   *rate.Limiter // "proposal blocked" warnings
}

var _ quorum.Quorum = (*Raft)(nil)

// OpenRaft opens (or creates) this node's raft stores, bootstraps the cluster
// from Peers if the stores hold no state yet, and starts raft. Every node
// bootstraps with the same Peers, which raft treats as one configuration.
func OpenRaft(cfg RaftConfig) (r *Raft, err error) {
	rc, err := raftConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := validatePeers(cfg); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hlog := newHclogAdapter(logger)
	rc.Logger = hlog

	r = &Raft{
		id:        cfg.NodeID,
		peers:     make(map[string]string, len(cfg.Peers)),
		obsCh:     make(chan raft.Observation, 16),
		signal:    make(chan struct{}, 1),
		committed: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		log:       logger,
		slowLog:   rate.NewLimiter(rate.Every(10*time.Second), 3),
	}
	for _, p := range cfg.Peers {
		r.peers[p.ID] = p.Addr
	}
	// Undo whatever was opened if a later step fails.
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
			r = nil
		}
	}()

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if cfg.DataDir == "" {
		if cfg.Transport == nil {
			return nil, errors.New("quorum: DataDir is required (in-memory stores only with a test Transport)")
		}
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("quorum: data dir: %w", err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{
			Path:        filepath.Join(cfg.DataDir, "raft.db"),
			BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
		})
		if err != nil {
			return nil, fmt.Errorf("quorum: open %s: %w", filepath.Join(cfg.DataDir, "raft.db"), err)
		}
		closers = append(closers, bolt.Close)
		r.bolt = bolt
		cached, err := raft.NewLogCache(logCacheSize, bolt)
		if err != nil {
			return nil, fmt.Errorf("quorum: log cache: %w", err)
		}
		logs, stable = cached, bolt
		// FileSnapshotStore keeps its files in DataDir/snapshots.
		fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hlog.Named("snapshot"))
		if err != nil {
			return nil, fmt.Errorf("quorum: snapshot store: %w", err)
		}
		snaps = fss
	}

	if cfg.FsyncDelay != nil {
		s := &slowStore{LogStore: logs, StableStore: stable, delay: cfg.FsyncDelay}
		logs, stable = s, s
	}

	trans := cfg.Transport
	if trans == nil {
		advertise := cfg.Advertise
		if advertise == "" {
			advertise = cfg.Bind
		}
		o := tlsOptions{advertise: advertise, logger: logger}
		// Only the cluster's nodes may connect, and this node dials from its
		// own address so that the others accept it.
		for _, p := range cfg.Peers {
			ap, err := netip.ParseAddrPort(p.Addr)
			if err != nil {
				// A peer named by host name: its address is not known here,
				// so no address can be refused.
				logger.Warn("quorum: peer address is not ip:port; accepting connections from any address", "peer", p.ID, "addr", p.Addr)
				o.allowed, o.local = nil, netip.Addr{}
				break
			}
			o.allowed = append(o.allowed, ap.Addr())
			if p.ID == cfg.NodeID {
				o.local = ap.Addr()
			}
		}
		stream, err := newTLSStreamLayer(cfg.Bind, cfg.Secret, cfg.Cluster, o)
		if err != nil {
			return nil, fmt.Errorf("quorum: %w", err)
		}
		closers = append(closers, stream.Close)
		r.stream = stream
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  stream,
			MaxPool: maxPool,
			Timeout: rpcTimeout,
			Logger:  hlog.Named("net"),
		})
		closers = append(closers, nt.Close)
		r.patient = newPatientTransport(nt)
		trans = r.patient
	}
	if self := r.peers[cfg.NodeID]; self != string(trans.LocalAddr()) {
		return nil, fmt.Errorf("quorum: peers entry %q has address %q but this node's transport is at %q",
			cfg.NodeID, self, trans.LocalAddr())
	}

	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("quorum: read raft state: %w", err)
	}
	for _, p := range cfg.Peers {
		r.boot.Servers = append(r.boot.Servers, raft.Server{
			Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr),
		})
	}
	if !has && !cfg.DeferBootstrap {
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, r.boot); err != nil {
			return nil, fmt.Errorf("quorum: bootstrap: %w", err)
		}
	}
	r.fresh.Store(!has && cfg.DeferBootstrap)

	r.fsm = NewFSM(logger)
	r.fsm.OnApply = r.applied
	ra, err := raft.NewRaft(rc, r.fsm, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("quorum: start raft: %w", err)
	}
	r.raft = ra
	if r.patient != nil {
		r.patient.follow(ra)
	}
	r.obs = raft.NewObserver(r.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	ra.RegisterObserver(r.obs)
	r.wg.Add(2)
	go r.run(cfg.OnChange)
	go r.announceCommits()
	return r, nil
}

// raftConfig builds and validates the raft configuration.
func raftConfig(cfg RaftConfig) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	set(&rc.HeartbeatTimeout, cfg.HeartbeatTimeout)
	set(&rc.ElectionTimeout, cfg.ElectionTimeout)
	set(&rc.LeaderLeaseTimeout, cfg.LeaderLeaseTimeout)
	set(&rc.CommitTimeout, cfg.CommitTimeout)
	// Proposals queue up (Propose never waits for them) and the leader takes
	// every queued one into one batch, instead of one disk write per
	// proposal while the proposer waits for the leader loop (see also below:
	// a slow disk).
	rc.MaxAppendEntries = maxAppendEntries
	rc.SnapshotThreshold = snapshotThreshold
	rc.TrailingLogs = trailingLogs
	rc.SnapshotInterval = snapshotInterval
	rc.NoSnapshotRestoreOnStart = false
	// Buffer the apply queue (MaxAppendEntries deep): unbuffered, Apply waits
	// until the leader's loop takes the entry, and that loop waits for the
	// disk (StoreLogs fsyncs), so a slow disk on the leader froze the agent
	// loop that proposes — 6.4 s with a 1.6 s fsync in a nemesis run. raft's
	// Apply timeout then only bounds the wait for room in the queue, which
	// is all Propose relies on (it drops the future).
	rc.BatchApplyCh = true

	if cfg.NodeID == "" {
		return nil, errors.New("quorum: NodeID is required")
	}
	// Check the relations ourselves so the error names our fields.
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		return nil, fmt.Errorf("quorum: LeaderLeaseTimeout (%v) must not exceed HeartbeatTimeout (%v)",
			rc.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	}
	if rc.HeartbeatTimeout > rc.ElectionTimeout {
		return nil, fmt.Errorf("quorum: HeartbeatTimeout (%v) must not exceed ElectionTimeout (%v)",
			rc.HeartbeatTimeout, rc.ElectionTimeout)
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("quorum: raft config: %w", err)
	}
	return rc, nil
}

func validatePeers(cfg RaftConfig) error {
	if len(cfg.Peers) == 0 {
		return errors.New("quorum: Peers is empty")
	}
	seenID := map[string]bool{}
	seenAddr := map[string]bool{}
	self := false
	for i, p := range cfg.Peers {
		switch {
		case p.ID == "":
			return fmt.Errorf("quorum: Peers[%d]: empty ID", i)
		case p.Addr == "":
			return fmt.Errorf("quorum: Peers[%d] (%s): empty Addr", i, p.ID)
		case seenID[p.ID]:
			return fmt.Errorf("quorum: Peers[%d]: duplicate ID %q", i, p.ID)
		case seenAddr[p.Addr]:
			return fmt.Errorf("quorum: Peers[%d] (%s): duplicate Addr %q", i, p.ID, p.Addr)
		}
		seenID[p.ID], seenAddr[p.Addr] = true, true
		self = self || p.ID == cfg.NodeID
	}
	if !self {
		return fmt.Errorf("quorum: NodeID %q is not in Peers", cfg.NodeID)
	}
	if cfg.Transport != nil {
		return nil
	}
	if cfg.Bind == "" {
		return errors.New("quorum: Bind is required")
	}
	if len(cfg.Secret) == 0 {
		return errors.New("quorum: Secret is required")
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.Bind
	}
	host, _, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("quorum: Advertise %q: %w", adv, err)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("quorum: Advertise %q must be a specific IP address (set Advertise when binding to a wildcard)", adv)
	}
	return nil
}

// notify records that OnChange is due; it never blocks.
func (r *Raft) notify() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// applied runs on raft's FSM goroutine after every apply; it never blocks.
func (r *Raft) applied() {
	r.notify()
	select {
	case r.committed <- struct{}{}:
	default:
	}
}

// announceCommits makes a leader tell its followers at once what it just
// committed, so that they apply it one round trip later instead of up to
// two CommitTimeouts later.
//
// Why: hashicorp/raft's followers learn the commit index only from an
// AppendEntries that the leader's replication sends — when it has new
// entries, or every CommitTimeout (randomized up to twice that) when it has
// none; heartbeats do not carry it. A short CommitTimeout made followers
// apply sooner, at the price of an AppendEntries per follower every 50–100
// ms on an idle cluster, over TLS: the largest part of the leader's idle CPU.
// Here the leader appends a barrier (an entry the FSM never sees) right after
// an apply: replicating it carries the new commit index. The barrier's own
// commit is announced only by the next one, or by CommitTimeout's — it
// changes nothing. So CommitTimeout is only the fallback when an
// announcement did not get through, and can be long (config's profiles).
// Bursts coalesce: one barrier per wake-up, however many batches applied.
func (r *Raft) announceCommits() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.committed:
		}
		if r.raft.State() != raft.Leader {
			continue
		}
		// Only the enqueueing waits (raft's apply queue is buffered); the
		// future is not awaited: its commit is of no interest.
		r.raft.Barrier(announceEnqueueTimeout)
	}
}

// announceEnqueueTimeout bounds how long announceCommits waits for room in
// raft's apply queue; a barrier that finds it full is not needed: the
// queued entries will carry the commit index.
const announceEnqueueTimeout = 10 * time.Millisecond

// run turns observations and applies into coalesced OnChange calls, and
// starts a new leader's barrier (see DecidingLeader).
func (r *Raft) run(onChange func()) {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.obsCh:
			if r.patient != nil {
				r.patient.wake() // a leader's waits may be over
			}
			r.readyAsync()
		case <-r.signal:
		}
		if onChange != nil {
			onChange()
		}
	}
}

// readyAsync starts the barrier that makes a new leader ready, unless it is
// ready or one runs. Its end is an OnChange: the leader may decide now.
func (r *Raft) readyAsync() {
	if r.raft.State() != raft.Leader || r.ready(r.raft.CurrentTerm()) || !r.readying.CompareAndSwap(false, true) {
		return
	}
	r.bgMu.Lock()
	defer r.bgMu.Unlock()
	if r.closing {
		r.readying.Store(false)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.readying.Store(false)
		for r.raft.State() == raft.Leader && !r.ready(r.raft.CurrentTerm()) {
			select {
			case <-r.stop:
				return
			default:
			}
			if err := r.becomeReady(readyBarrierTimeout); err != nil {
				r.log.Debug("quorum: new leader's barrier", "err", err)
			}
		}
		r.notify()
	}()
}

// readyBarrierTimeout bounds one try of a new leader's barrier; a leader
// whose barrier timed out tries again while it leads.
const readyBarrierTimeout = 2 * time.Second

// ready reports whether this node passed a barrier as leader in term.
func (r *Raft) ready(term uint64) bool {
	r.readyMu.Lock()
	defer r.readyMu.Unlock()
	return r.readyTerm == term
}

// becomeReady passes one barrier in the current term unless one passed:
// from then on the View holds every entry an earlier leader committed.
func (r *Raft) becomeReady(timeout time.Duration) error {
	term := r.raft.CurrentTerm()
	if r.ready(term) {
		return nil
	}
	if err := mapErr(r.raft.Barrier(timeout).Error()); err != nil {
		return err
	}
	r.readyMu.Lock()
	r.readyTerm = term
	r.readyMu.Unlock()
	return nil
}

// View returns the latest applied state; callers must not mutate it.
func (r *Raft) View() *quorum.State { return r.fsm.View() }

// IsLeader reports whether this node is the raft leader.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// DecidingLeader reports whether this node leads and its View already holds
// every entry committed before its term: it passed a barrier as leader in
// the current term. Raft makes a node leader before its state machine has
// applied what the earlier leader committed (a restarted node restores its
// snapshot and applies the rest only once it learns the commit index), and a
// decision from that older View is wrong in ways the commands' CAS does not
// catch: a leader that still saw a standby in the synchronous set promoted
// it after the set had been emptied (sim seed 424 of
// TestSyncStandbyRandomFaults). The core decides only as a DecidingLeader;
// the barrier starts at once when raft reports the leadership, and its end
// is an OnChange.
func (r *Raft) DecidingLeader() bool {
	if r.raft.State() != raft.Leader {
		return false
	}
	if r.ready(r.raft.CurrentTerm()) {
		return true
	}
	r.readyAsync() // in case the observation was dropped
	return false
}

// Leader returns the leader's node name, "" if unknown.
func (r *Raft) Leader() string {
	_, id := r.raft.LeaderWithID()
	return string(id)
}

// Synced reports whether this node has joined the quorum and knows its
// state: a leader is known, something is committed (at least the bootstrap
// configuration), and this node has applied every entry it knows to be
// committed. A node that has just restarted or rejoined is not synced until
// the leader has told it the commit index and it has caught up.
func (r *Raft) Synced() bool {
	if r.Leader() == "" {
		return false
	}
	commit := r.raft.CommitIndex()
	return commit > 0 && r.raft.AppliedIndex() >= commit
}

// Propose hands c to raft without waiting for it to commit; the outcome shows
// in a later View. Followers return quorum.ErrNotLeader.
func (r *Raft) Propose(c quorum.Command) error {
	if r.raft.State() != raft.Leader {
		return quorum.ErrNotLeader
	}
	// The future is dropped on purpose: commands are CAS, so a proposal lost
	// to a leadership change is simply proposed again from the next View.
	t0 := time.Now()
	f := r.raft.Apply(c.Encode(), proposeEnqueueTimeout)
	if took := time.Since(t0); took > proposeSlow && r.slowLog.Allow() {
		// The caller is the agent's loop: while it waits here it sends no
		// heartbeats and renews no lease.
		r.log.Warn("quorum: handing a proposal to raft blocked the caller", "took", took, "op", c.Op, "group", c.Group)
	}
	_ = f
	return nil
}

// SetTimeouts changes raft's heartbeat and election timeouts while it runs
// (hashicorp/raft ReloadConfig): on the leader the heartbeat interval (a
// tenth of the heartbeat timeout), on a follower how long it waits for the
// leader before an election. Raft refuses a heartbeat timeout below the
// leader lease set at OpenRaft, or an election timeout below the heartbeat
// timeout.
func (r *Raft) SetTimeouts(heartbeat, election time.Duration) error {
	rc := r.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == heartbeat && rc.ElectionTimeout == election {
		return nil
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = heartbeat, election
	if err := r.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("quorum: set raft timeouts: %w", err)
	}
	return nil
}

// Timeouts returns raft's current heartbeat and election timeouts.
func (r *Raft) Timeouts() (heartbeat, election time.Duration) {
	rc := r.raft.ReloadableConfig()
	return rc.HeartbeatTimeout, rc.ElectionTimeout
}

// Barrier blocks until every entry committed before it has been applied
// to this node's View (leader only).
func (r *Raft) Barrier(timeout time.Duration) error {
	return mapErr(r.raft.Barrier(timeout).Error())
}

// ReadIndex returns an index of this node's View that holds every change
// acknowledged before the call (leader only; quorum.ErrNotLeader elsewhere):
// a node that has applied it can answer a read as the leader would. The
// leader takes its own applied index, then confirms with a quorum that it
// still leads (a newer leader could have acknowledged newer changes); a new
// leader first passes one barrier per term, so that what earlier leaders
// committed is applied here too. This is Raft's read-index (§6.4 of Ongaro's
// thesis) and Consul's consistent read mode.
func (r *Raft) ReadIndex(ctx context.Context) (uint64, error) {
	if r.raft.State() != raft.Leader {
		return 0, quorum.ErrNotLeader
	}
	if err := r.becomeReady(time.Until(deadlineOr(ctx, 5*time.Second))); err != nil {
		return 0, err
	}
	idx := r.fsm.View().Index
	if err := mapErr(r.raft.VerifyLeader().Error()); err != nil {
		return 0, err
	}
	return idx, nil
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}

// TransferLeadership hands raft leadership to the named voter ("" = any)
// and blocks until the transfer finished or failed.
func (r *Raft) TransferLeadership(to string) error {
	if to == "" {
		return mapErr(r.raft.LeadershipTransfer().Error())
	}
	r.peersMu.Lock()
	addr, ok := r.peers[to]
	r.peersMu.Unlock()
	if !ok {
		return fmt.Errorf("quorum: transfer leadership: %q is not a voter", to)
	}
	return mapErr(r.raft.LeadershipTransferToServer(raft.ServerID(to), raft.ServerAddress(addr)).Error())
}

// Fresh reports whether this node opened empty stores with DeferBootstrap
// and has not bootstrapped: it waits to be added by a leader.
func (r *Raft) Fresh() bool { return r.fresh.Load() }

// Bootstrap starts a new cluster from the Peers given to OpenRaft (every node
// of a new cluster does so with the same list). Only for a Fresh node.
func (r *Raft) Bootstrap() error {
	if !r.fresh.Load() {
		return errors.New("quorum: bootstrap: this node already has raft state")
	}
	err := r.raft.BootstrapCluster(r.boot).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("quorum: bootstrap: %w", err)
	}
	r.fresh.Store(false)
	return nil
}

// SetPeers replaces the cluster's nodes this store knows (after a reload added
// or removed one): whom it may transfer leadership to and, with the TLS
// transport, whose connections it accepts. The raft configuration itself
// changes only through AddVoter and RemoveServer on the leader.
func (r *Raft) SetPeers(peers []Peer) error {
	m := make(map[string]string, len(peers))
	var addrs []netip.Addr
	anyAddr := false
	for _, p := range peers {
		m[p.ID] = p.Addr
		if ap, err := netip.ParseAddrPort(p.Addr); err == nil {
			addrs = append(addrs, ap.Addr())
		} else {
			anyAddr = true
		}
	}
	r.peersMu.Lock()
	r.peers = m
	r.peersMu.Unlock()
	if r.stream != nil && !anyAddr {
		r.stream.setAllowed(addrs)
	}
	return nil
}

// Voters returns the voters of the latest raft configuration this node
// knows (committed or not), by ID and address.
func (r *Raft) Voters() ([]Peer, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address)})
		}
	}
	return out, nil
}

// AddVoter makes id a voter at addr and waits until the change is committed
// (leader only; one membership change at a time).
func (r *Raft) AddVoter(id, addr string, timeout time.Duration) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	return mapErr(r.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error())
}

// RemoveServer removes id from the raft configuration and waits until the
// change is committed (leader only; one membership change at a time).
func (r *Raft) RemoveServer(id string, timeout time.Duration) error {
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	return mapErr(r.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error())
}

func mapErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) {
		return quorum.ErrNotLeader
	}
	return err
}

// Role returns "leader", "follower", "candidate" or "shutdown".
func (r *Raft) Role() string {
	switch r.raft.State() {
	case raft.Leader:
		return "leader"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	default:
		return "follower"
	}
}

// Stats returns raft's statistics plus "tls_rejected_conns" with the TLS
// transport.
func (r *Raft) Stats() map[string]string {
	s := r.raft.Stats()
	if r.stream != nil {
		s["tls_rejected_conns"] = fmt.Sprint(r.stream.Rejected())
	}
	return s
}

// RejectedConns counts inbound connections the TLS transport refused
// (wrong key, not TLS, stalled handshakes); 0 with a custom Transport.
func (r *Raft) RejectedConns() uint64 {
	if r.stream == nil {
		return 0
	}
	return r.stream.Rejected()
}

// LastContact is when this node last heard from the leader; on the leader
// itself it is now.
func (r *Raft) LastContact() time.Time {
	if r.raft.State() == raft.Leader {
		return time.Now()
	}
	return r.raft.LastContact()
}

// Close shuts raft down and releases the transport and stores; it waits for
// every goroutine it started. It is idempotent.
func (r *Raft) Close() error {
	r.closeOnce.Do(func() {
		if r.patient != nil {
			r.patient.stopWaiting() // Shutdown waits for the goroutines in a wait
		}
		err := r.raft.Shutdown().Error() // also closes the transport
		r.raft.DeregisterObserver(r.obs)
		r.bgMu.Lock()
		r.closing = true
		r.bgMu.Unlock()
		close(r.stop)
		r.wg.Wait()
		if r.stream != nil {
			err = errors.Join(err, ignoreClosed(r.stream.Close()))
		}
		if r.bolt != nil {
			err = errors.Join(err, r.bolt.Close())
		}
		r.closeErr = err
	})
	return r.closeErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
