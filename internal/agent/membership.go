package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/quorum/raftstore"
)

// Membership: the cluster file is the source of truth for which nodes vote.
// A reload that adds or removes a node (one per reload, see
// config.CheckReload) changes the lease voters at once in the core; the
// quorum leader then brings the Raft configuration in line, one server at a
// time (AddVoter, RemoveServer), once every node it hears runs the same
// config. A node new to the cluster (or one whose data_dir was lost) starts
// without Raft state and does not bootstrap: the leader adds it, or already
// has it, and replicates the log to it.

// reconcileEvery is how often the leader compares the Raft configuration
// with the config. Membership changes are rare and operator-driven; a second
// is quick enough and costs nothing.
const reconcileEvery = time.Second

// membershipTimeout bounds one Raft configuration change.
const membershipTimeout = 10 * time.Second

// maybeBootstrap bootstraps a new cluster when the core says it is one (on
// the loop, each tick, until it has quorum state).
func (a *Agent) maybeBootstrap(now time.Duration) {
	if !a.raft.Fresh() {
		return
	}
	due, why := a.node.BootstrapDue(now)
	if !due {
		if why != a.bootWhy {
			a.bootWhy = why
			a.log.Info("no quorum state yet; not bootstrapping", "why", why)
		}
		return
	}
	if err := a.raft.Bootstrap(); err != nil {
		a.log.Error("bootstrapping the quorum", "err", err)
		return
	}
	a.node.Bootstrapped()
	a.log.Info("bootstrapped a new quorum", "why", why, "voters", a.cfg.Voters())
}

func raftPeers(cfg *config.Config) []raftstore.Peer {
	port := strconv.Itoa(cfg.Cluster.Port)
	var out []raftstore.Peer
	for _, n := range cfg.Nodes {
		out = append(out, raftstore.Peer{ID: n.Name, Addr: net.JoinHostPort(n.Address, port)})
	}
	return out
}

// reconcileVoters runs on the quorum leader: one Raft membership change at a
// time towards the config's nodes.
func (a *Agent) reconcileVoters(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.stopped:
			return
		case <-t.C:
		}
		if !a.raft.IsLeader() {
			continue
		}
		if err := a.reconcileOnce(ctx); err != nil && a.reconcileLog.Allow() {
			a.log.Warn("quorum membership", "err", err)
		}
	}
}

func (a *Agent) reconcileOnce(ctx context.Context) error {
	have, err := a.raft.Voters()
	if err != nil {
		return err
	}
	want := raftPeers(a.shared.Load())
	var agreed bool
	var alive []string
	if err := a.call(ctx, func(now time.Duration) {
		agreed, alive = a.node.ConfigAgreed(now), a.node.AliveVoters(now)
	}); err != nil {
		return nil // stopping
	}
	in := func(ps []raftstore.Peer, id string) bool {
		return slices.ContainsFunc(ps, func(p raftstore.Peer) bool { return p.ID == id })
	}
	for _, p := range want {
		if in(have, p.ID) {
			continue
		}
		if !agreed {
			return fmt.Errorf("node %s is in the config but not a quorum voter yet: waiting until every node runs the same config (baton status: CONFIG)", p.ID)
		}
		if !slices.Contains(alive, p.ID) {
			return fmt.Errorf("node %s is in the config but not a quorum voter yet: waiting until it runs (start its agent)", p.ID)
		}
		a.log.Info("adding a voter to the quorum", "node", p.ID, "address", p.Addr)
		if err := a.raft.AddVoter(p.ID, p.Addr, membershipTimeout); err != nil {
			return fmt.Errorf("adding %s to the quorum: %w", p.ID, err)
		}
		a.log.Info("voter added", "node", p.ID)
		return nil
	}
	for _, p := range have {
		if in(want, p.ID) {
			continue
		}
		if !agreed {
			return fmt.Errorf("quorum voter %s is no longer in the config: waiting until every node runs the same config before removing it", p.ID)
		}
		// The remaining voters must still make a quorum of the new set.
		up := 0
		for _, w := range want {
			if slices.Contains(alive, w.ID) {
				up++
			}
		}
		if up < decide.Majority(len(want)) {
			return fmt.Errorf("not removing quorum voter %s: only %d of the %d remaining voters are up, a quorum needs %d", p.ID, up, len(want), decide.Majority(len(want)))
		}
		a.log.Info("removing a voter from the quorum", "node", p.ID)
		if err := a.raft.RemoveServer(p.ID, membershipTimeout); err != nil {
			return fmt.Errorf("removing %s from the quorum: %w", p.ID, err)
		}
		a.log.Info("voter removed", "node", p.ID)
		return nil
	}
	return nil
}

// NodeRemoval is the answer to a removal from the quorum.
type NodeRemoval struct {
	Node   string   `json:"node"`
	Voters []string `json:"voters"` // the quorum's voters afterwards
}

// RemoveVoter takes a dead node out of the Raft configuration now (leader
// only), without waiting for the config to drop it: what Consul's `operator
// raft remove-peer` does for a server that will not come back. It is refused,
// with the reason, for a node that is not a voter, that this node hears (stop
// it first: a running node would be added again), when fewer than 3 voters
// would be left, or when the voters that are up would not be a quorum of
// those left. The config still names the node until the file is changed and
// reloaded; should the node come back before that, the leader adds it again.
func (a *Agent) RemoveVoter(r *http.Request, name string) (NodeRemoval, error) {
	res := NodeRemoval{Node: name}
	if !a.raft.IsLeader() {
		return res, core.Refuse(core.ErrNotLeader, "this node does not lead the quorum; retry")
	}
	have, err := a.raft.Voters()
	if err != nil {
		return res, core.Refuse(core.ErrUnavailable, "reading the quorum's configuration: %v", err)
	}
	var ids []string
	for _, p := range have {
		ids = append(ids, p.ID)
	}
	var alive []string
	if err := a.call(r.Context(), func(now time.Duration) { alive = a.node.AliveVoters(now) }); err != nil {
		return res, core.Refuse(core.ErrUnavailable, "%v", err)
	}
	left := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == name })
	up := 0
	for _, id := range left {
		if slices.Contains(alive, id) {
			up++
		}
	}
	switch {
	case !slices.Contains(ids, name):
		return res, core.Refuse(core.ErrUnknownNode, "%q is not a voter of the quorum (voters: %s)", name, strings.Join(ids, ", "))
	case name == a.opts.Node || slices.Contains(alive, name):
		return res, core.Refuse(core.ErrConflict, "node %q is running: stop its agent first (it hands its groups off), then remove it", name)
	case len(left) < 3:
		return res, core.Refuse(core.ErrConflict, "removing %q would leave %d voters: keep at least 3, so that the loss of any one still leaves a quorum (add the replacement first)", name, len(left))
	case up < decide.Majority(len(left)):
		return res, core.Refuse(core.ErrConflict, "removing %q would break the quorum: %d of the %d remaining voters are up, a quorum needs %d", name, up, len(left), decide.Majority(len(left)))
	}
	a.log.Info("removing a voter from the quorum on request", "node", name)
	if err := a.raft.RemoveServer(name, membershipTimeout); err != nil {
		return res, core.Refuse(core.ErrUnavailable, "removing %s from the quorum: %v", name, err)
	}
	a.log.Info("voter removed", "node", name)
	res.Voters = left
	return res, nil
}
