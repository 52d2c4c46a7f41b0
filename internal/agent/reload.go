package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/decide"
	"github.com/baton-ha/baton/internal/frontdoor/vip"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/metrics"
	"github.com/baton-ha/baton/internal/service"
)

// A live reload (SIGHUP, `baton reload`, POST /v1/reload) re-reads the
// config file and applies it without a restart. The file is checked whole
// first, as check-config and the agent's start check it, plus what cannot
// change live (config.CheckReload); a file with any problem is refused and
// the running config stays. An accepted file is applied on the loop, in an
// order that never gives a unit two owners or leaves a VIP unguarded:
//
//  1. new or changed health checks are built and started (changed checks of a
//     healthy group start out healthy, see health.Group.AssumeHealthy);
//  2. the core switches to the new spec (core.Node.Reconfigure): a unit this
//     node may no longer own is relinquished, so its front doors go down and
//     its standby hook runs, under the retiring config;
//  3. VIPs: the fence learns each changed group's addresses before one is
//     added; an owned group's new address goes up and its old one down
//     under the same lease and epoch;
//  4. services of groups this node joined or left start or stop; the DNS
//     server and the proxies whose settings changed are opened again.
//
// Units that did not change keep everything: owner, epoch, lease, VIPs,
// checks, services; no hook runs for them.

// ReloadResult is what a reload did.
type ReloadResult struct {
	Config     string   `json:"config"`
	ConfigHash string   `json:"config_hash"`
	Unchanged  bool     `json:"unchanged,omitempty"` // the file means what the running config means
	Added      []string `json:"added,omitempty"`     // groups
	Removed    []string `json:"removed,omitempty"`
	Changed    []string `json:"changed,omitempty"`
	// Warnings: the config is applied, but something on this host did not
	// follow (e.g. a proxy's new port is taken); each says what to fix.
	Warnings []string `json:"warnings,omitempty"`
}

// ReloadError is a refused reload: the running config stays.
type ReloadError struct {
	Config   string
	Problems config.Errors // every problem, with its field path
	Err      error         // the file could not be read at all
}

func (e *ReloadError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("reload refused, the running config stays: %s: %v", e.Config, e.Err)
	}
	msg := fmt.Sprintf("reload refused, the running config stays: %s: %d problem(s)", e.Config, len(e.Problems))
	for _, p := range e.Problems {
		msg += "\n" + e.Config + ": " + p.Error()
	}
	return msg
}

// Reload is ReloadConfig for the API (POST /v1/reload).
func (a *Agent) Reload(r *http.Request) (ReloadResult, error) { return a.ReloadConfig(r.Context()) }

// ReloadConfig re-reads the config file and applies it (see above). It
// returns a *ReloadError when the file is refused; either way it logs the
// outcome.
func (a *Agent) ReloadConfig(ctx context.Context) (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	path := a.shared.Load().Path
	res, err := a.reload(ctx, path)
	var re *ReloadError
	switch {
	case errors.As(err, &re):
		a.metrics.ConfigReload(metrics.ReloadRefused)
		if re.Err != nil {
			a.log.Error("reload refused; the running config stays", "config", path, "err", re.Err)
		}
		for _, p := range re.Problems {
			a.log.Error("reload refused; the running config stays", "config", path, "problem", p.Error())
		}
	case err != nil:
		a.log.Error("reload failed", "config", path, "err", err)
	case res.Unchanged:
		a.metrics.ConfigReload(metrics.ReloadUnchanged)
		a.log.Info("reload: the config did not change", "config", path, "config_hash", res.ConfigHash)
	default:
		a.metrics.ConfigReload(metrics.ReloadApplied)
		a.log.Info("reloaded", "config", path, "config_hash", res.ConfigHash,
			"added", res.Added, "removed", res.Removed, "changed", res.Changed)
		for _, w := range res.Warnings {
			a.log.Warn("reload: applied, but", "problem", w)
		}
	}
	return res, err
}

func (a *Agent) reload(ctx context.Context, path string) (ReloadResult, error) {
	res := ReloadResult{Config: path}
	if path == "" {
		return res, &ReloadError{Config: "(config)", Err: errors.New("the agent was started from a config in memory; there is no file to reload")}
	}
	next, err := config.Load(path)
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			return res, &ReloadError{Config: path, Problems: problems}
		}
		return res, &ReloadError{Config: path, Err: err}
	}
	if _, err := next.NodeByName(a.opts.Node); err != nil {
		return res, &ReloadError{Config: path, Problems: config.Errors{{Path: "nodes", Msg: fmt.Sprintf("this node (%s) is not in the file any more; stop its agent instead", a.opts.Node)}}}
	}
	if problems := config.CheckHost(next, a.opts.Node); len(problems) > 0 {
		return res, &ReloadError{Config: path, Problems: problems}
	}
	res.ConfigHash = fmt.Sprintf("%016x", next.Hash())
	var refused error
	err = a.call(ctx, func(now time.Duration) {
		if problems := config.CheckReload(a.cfg, next, a.opts.Node); len(problems) > 0 {
			refused = &ReloadError{Config: path, Problems: problems}
			return
		}
		refused = a.applyConfig(now, next, &res)
	})
	if err != nil {
		return res, err
	}
	return res, refused
}

// applyConfig switches the running agent to next, on the loop. next passed
// config.CheckReload against the running config.
func (a *Agent) applyConfig(now time.Duration, next *config.Config, res *ReloadResult) error {
	cur := a.cfg
	if next.Hash() == cur.Hash() {
		// The hash leaves the API token out (it never leaves the node):
		// a new token is all that changed, and it takes effect now.
		res.Unchanged = next.APIToken == cur.APIToken
		a.cfg, a.self = next, mustNode(next, a.opts.Node)
		a.shared.Store(next)
		return nil
	}
	for i := range next.Groups {
		g := &next.Groups[i]
		switch cg := cur.GroupByName(g.Name); {
		case cg == nil:
			res.Added = append(res.Added, g.Name)
		case !reflect.DeepEqual(cg, g):
			res.Changed = append(res.Changed, g.Name)
		}
	}
	for i := range cur.Groups {
		if next.GroupByName(cur.Groups[i].Name) == nil {
			res.Removed = append(res.Removed, cur.Groups[i].Name)
		}
	}
	self := mustNode(next, a.opts.Node)
	if err := a.checkNodeChange(now, cur, next); err != nil {
		return err
	}

	// 1. Checks, and the supervisors of services this node now runs: built
	// before anything changes, so that a failure refuses the reload whole.
	checks := map[string]*health.Group{}
	var started, retired []*health.Group
	fail := func(err error) error {
		for _, hg := range started {
			hg.Stop()
		}
		return &ReloadError{Config: next.Path, Err: err}
	}
	for i := range next.Groups {
		g := &next.Groups[i]
		if _, member := g.Member(self.Name); !member {
			continue
		}
		old := a.checks[g.Name]
		if cg := cur.GroupByName(g.Name); old != nil && cg != nil && reflect.DeepEqual(cg.Checks, g.Checks) {
			if _, was := cg.Member(self.Name); was {
				checks[g.Name] = old
				continue
			}
		}
		hg, err := a.newChecks(g)
		if err != nil {
			return fail(fmt.Errorf("groups[%d].checks: %w", i, err))
		}
		if old != nil && old.Healthy() {
			hg.AssumeHealthy()
		}
		started = append(started, hg)
		checks[g.Name] = hg
	}
	svcs, err := a.reloadServices(next, self)
	if err != nil {
		return fail(err)
	}
	for name, hg := range a.checks {
		if checks[name] != hg {
			retired = append(retired, hg)
		}
	}
	for _, hg := range started {
		hg.Start(a.checkCtx)
	}

	// 2. The core, with the retiring config still at hand for what it
	// gives up.
	a.retiring = cur
	a.cfg, a.self = next, self
	a.shared.Store(next)
	a.checks = checks
	defer func() { a.retiring = nil }()
	if !slices.Equal(cur.Voters(), next.Voters()) {
		peers := map[string]string{}
		for _, p := range raftPeers(next) {
			peers[p.ID] = p.Addr
		}
		if err := a.udp.SetPeers(peers); err != nil {
			return fmt.Errorf("reload: heartbeat peers: %w", err)
		}
		if err := a.raft.SetPeers(raftPeers(next)); err != nil {
			return fmt.Errorf("reload: quorum peers: %w", err)
		}
	}
	if err := a.node.Reconfigure(now, next.CoreSpec()); err != nil {
		return fmt.Errorf("reload: %w", err)
	}

	for _, u := range cur.Units() {
		if next.UnitByName(u.Name) == nil {
			a.metrics.ForgetGroup(u.Name)
		}
	}
	for _, n := range cur.Nodes {
		if _, err := next.NodeByName(n.Name); err != nil {
			a.metrics.ForgetPeer(n.Name)
		}
	}

	// 3. VIPs.
	if err := a.reloadVIPs(now); err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}

	// 4. Services, DNS, proxies.
	for name, gs := range a.svcs {
		if svcs[name] != gs {
			go func() {
				if gs.cancel != nil {
					gs.cancel()
				}
				gs.wg.Wait()
				if gs.sup != nil {
					gs.sup.Close()
				}
			}()
		}
	}
	for name, gs := range svcs {
		if a.svcs[name] != gs && gs.sup != nil && (gs.g.Standby == StandbyHot || gs.g.Standby == StandbyWarm) {
			if err := gs.sup.Start(); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("group %s: starting its service: %v", name, err))
			}
		}
	}
	a.svcs = svcs
	res.Warnings = append(res.Warnings, a.reloadFrontDoors(cur)...)
	for _, hg := range retired {
		go hg.Stop()
	}
	a.notify()
	return nil
}

// checkNodeChange refuses removing a node that still owns a group (hand it
// off first, or stop that agent, which hands off) or whose removal would
// leave fewer voters up than a quorum of the new set.
func (a *Agent) checkNodeChange(now time.Duration, cur, next *config.Config) error {
	var problems config.Errors
	v := a.node.View()
	for _, n := range cur.Nodes {
		if _, err := next.NodeByName(n.Name); err == nil {
			continue
		}
		for _, u := range cur.Units() {
			if gs := v.Group(u.Name); gs.Owner == n.Name {
				problems = append(problems, config.FieldError{Path: "nodes", Msg: fmt.Sprintf(
					"node %q still owns group %s (epoch %d): stop its agent first (it hands off), or baton switchover %s, then reload", n.Name, u.GroupOf(), gs.Epoch, u.GroupOf())})
			}
		}
		alive, up := a.node.AliveVoters(now), 0
		for _, w := range next.Voters() {
			if slices.Contains(alive, w) {
				up++
			}
		}
		if need := decide.Majority(len(next.Voters())); up < need {
			problems = append(problems, config.FieldError{Path: "nodes", Msg: fmt.Sprintf(
				"removing node %q would break the quorum: %d of the %d remaining voters are up, a quorum needs %d", n.Name, up, len(next.Voters()), need)})
		}
	}
	if len(problems) > 0 {
		return &ReloadError{Config: next.Path, Problems: problems}
	}
	return nil
}

func mustNode(c *config.Config, name string) *config.Node {
	n, err := c.NodeByName(name)
	if err != nil {
		panic("agent: node vanished from a checked config: " + err.Error())
	}
	return n
}

// reloadServices returns the groupSvc of every member group (and unit) under
// next: the running one where the group stays, a new one (supervisor built,
// not started) where this node joined a group.
func (a *Agent) reloadServices(next *config.Config, self *config.Node) (map[string]*groupSvc, error) {
	out := map[string]*groupSvc{}
	for i := range next.Groups {
		g := &next.Groups[i]
		if _, member := g.Member(self.Name); !member {
			continue
		}
		if g.Mode == config.ModeActiveActive {
			for _, u := range next.UnitsOf(g.Name) {
				if gs := a.svcs[u.Name]; gs != nil {
					out[u.Name] = gs
				} else {
					out[u.Name] = &groupSvc{g: u}
				}
			}
		}
		if gs := a.svcs[g.Name]; gs != nil {
			out[g.Name] = gs
			continue
		}
		gs := &groupSvc{g: g}
		if g.Service != nil {
			sup, err := service.NewSupervisor(service.SupervisorOptions{
				Group: g.Name, Service: *g.Service, StateDir: a.self.DataDir + "/services", Log: a.log.With("component", "service", "group", g.Name),
				Env: []string{"BATON_CLUSTER=" + next.Cluster.Name, "BATON_NODE=" + self.Name, "BATON_GROUP=" + g.Name},
			})
			if err != nil {
				for _, gs := range out {
					if gs.sup != nil && a.svcs[gs.g.Name] != gs {
						gs.sup.Close()
					}
				}
				return nil, fmt.Errorf("groups[%d].service: %w", i, err)
			}
			gs.sup = sup
		}
		out[g.Name] = gs
	}
	return out, nil
}

// reloadVIPs brings the VIPs of this node's units in line with the running
// config. For an owned unit whose addresses changed, the fence first guards
// the old and the new ones, the new ones go up and the old ones down, and
// then the fence guards the new ones only: the unit keeps its lease and
// epoch throughout, so no other node holds either address meanwhile.
func (a *Agent) reloadVIPs(now time.Duration) error {
	want := map[string][]vip.VIP{}
	refresh := map[vip.VIP]time.Duration{}
	var resetting, kept []vip.VIP
	for _, g := range a.cfg.Units() {
		if _, member := g.Member(a.self.Name); !member {
			continue
		}
		for _, c := range g.VIPs {
			p, err := vip.Parse(c.Address, c.Interface)
			if err != nil {
				return fmt.Errorf("group %s: vip %s: %w", g.GroupOf(), c.Address, err)
			}
			want[g.Name] = append(want[g.Name], p)
			if c.Resets() {
				resetting = append(resetting, p)
			} else {
				kept = append(kept, p)
			}
			if r := c.Refresh.D(); r > 0 {
				refresh[p] = r
			}
		}
	}
	if a.vips == nil {
		if len(want) == 0 {
			return nil
		}
		if err := a.openVIPs(); err != nil {
			return fmt.Errorf("VIPs: %w", err)
		}
		// The first VIPs of this node: those of groups it acts for go up
		// now, under the fence's hold.
		for g := range want {
			if until, acting := a.node.ActingUntil(g); acting && a.svcs[g] != nil && a.svcs[g].up != 0 {
				a.vips.acting(now, g, until)
				a.vips.up(g)
			}
		}
		return nil
	}
	v := a.vips
	names := map[string]bool{}
	for g := range v.byGroup {
		names[g] = true
	}
	for g := range want {
		names[g] = true
	}
	for g := range names {
		old, nw := v.byGroup[g], want[g]
		if slices.Equal(old, nw) {
			continue
		}
		until, acting := a.node.ActingUntil(g)
		gs := a.svcs[g]
		up := acting && (v.held[g] || (gs != nil && gs.up != 0))
		if !up {
			v.byGroup[g] = nw
			v.sendLine(vip.VIPsLine(g, nw))
			continue
		}
		union := slices.Clone(old)
		for _, p := range nw {
			if !slices.Contains(union, p) {
				union = append(union, p)
			}
		}
		v.sendLine(vip.VIPsLine(g, union))
		v.byGroup[g] = nw
		// The hold covers the whole list; a group that had no VIPs has none.
		delete(v.lastHold, g)
		v.acting(now, g, until)
		for _, p := range nw {
			if slices.Contains(old, p) {
				continue
			}
			if err := v.mgr.Add(p, v.lifetime); err != nil {
				a.log.Error("adding VIP failed", "group", g, "vip", p.Prefix, "interface", p.Interface, "err", err)
				continue
			}
			v.held[g] = true
			v.announced[p] = now
			a.log.Info("VIP up (reload)", "group", g, "vip", p.Prefix, "interface", p.Interface)
		}
		for _, p := range old {
			if slices.Contains(nw, p) {
				continue
			}
			if err := v.mgr.Remove(p); err != nil {
				a.log.Error("removing VIP failed", "group", g, "vip", p.Prefix, "err", err)
			} else {
				a.log.Info("VIP down (reload)", "group", g, "vip", p.Prefix, "interface", p.Interface)
			}
		}
		v.sendLine(vip.VIPsLine(g, nw))
		if len(nw) == 0 {
			delete(v.held, g)
		}
	}
	for g, ps := range v.byGroup {
		if len(ps) == 0 {
			delete(v.byGroup, g)
		}
	}
	v.refresh = refresh
	// A VIP added by this reload gets its resets too, one removed loses them,
	// and a changed tcp_reset applies from now on.
	v.setResets(resetting, kept, false)
	return nil
}

// reloadFrontDoors opens the DNS server again if its settings changed, and
// the proxies of groups whose proxy settings changed, were added or removed.
func (a *Agent) reloadFrontDoors(cur *config.Config) []string {
	var warnings []string
	fd := a.fd
	curSelf := mustNode(cur, a.opts.Node)
	// (The zone's records, nodes included, are republished below; only the
	// server's own settings need it opened again.)
	if !reflect.DeepEqual(cur.DNS, a.cfg.DNS) || curSelf.DNS != a.self.DNS {
		if fd.dns != nil {
			_ = fd.dns.Close()
			fd.dns = nil
		}
		if err := a.openDNS(); err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	for i := range a.cfg.Groups {
		g := &a.cfg.Groups[i]
		var was *config.Proxy
		if cg := cur.GroupByName(g.Name); cg != nil {
			was = cg.Proxy
		}
		if reflect.DeepEqual(was, g.Proxy) && (g.Proxy == nil || fd.proxies[g.Name] != nil) {
			continue
		}
		if p := fd.proxies[g.Name]; p != nil {
			_ = p.Close()
			delete(fd.proxies, g.Name)
			delete(fd.targets, g.Name)
		}
		if g.Proxy == nil {
			continue
		}
		if err := a.openProxy(g); err != nil {
			warnings = append(warnings, fmt.Sprintf("groups[%d].proxy.listen: %v", i, err))
		}
	}
	for name, p := range fd.proxies {
		if a.cfg.GroupByName(name) == nil {
			_ = p.Close()
			delete(fd.proxies, name)
			delete(fd.targets, name)
		}
	}
	fd.lastView = nil // publish everything again
	a.publish()
	return warnings
}
