package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/quorum"
	"github.com/baton-ha/baton/internal/service"
)

// Standby modes (groups[].standby).
const (
	StandbyHot  = "hot"  // the service runs on every member; only front doors move
	StandbyWarm = "warm" // it runs everywhere in a standby role; promote on takeover, demote on loss
	StandbyCold = "cold" // it is stopped on standbys and started on takeover
)

// groupSvc is the runtime state of one member group's service and takeover.
// All fields are touched only on the agent loop, except through sup.
type groupSvc struct {
	g   *config.Group
	sup *service.Supervisor // nil without a service
	// promoting is the epoch whose takeover is waiting for the service to be
	// healthy (0: none); up is the epoch whose front doors are up.
	promoting uint64
	up        uint64
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	// Service operations (start, promote, stop, demote) run in the
	// background; opMu serialises them and gen makes a stale one (superseded
	// by a later role change) a no-op, so a stop can never overtake the start
	// that follows it.
	opMu sync.Mutex
	gen  atomic.Uint64
}

// serviceOp runs op in the background, after earlier operations, unless a
// later role change superseded it by then.
func (gs *groupSvc) serviceOp(op func()) {
	g := gs.gen.Add(1)
	gs.wg.Add(1)
	go func() {
		defer gs.wg.Done()
		gs.opMu.Lock()
		defer gs.opMu.Unlock()
		if gs.gen.Load() == g {
			op()
		}
	}()
}

func (a *Agent) openServices() error {
	a.svcs = map[string]*groupSvc{}
	stateDir := filepath.Join(a.self.DataDir, "services")
	// Processes a killed agent left behind (normally the kernel kills them
	// with the agent, see the supervisor's death signal).
	if killed, err := service.CleanupLeftovers(stateDir, a.log); err != nil {
		return fmt.Errorf("cleaning up services left by an earlier run: %w", err)
	} else if len(killed) > 0 {
		a.log.Warn("killed service processes left by an earlier run", "process_groups", killed)
	}
	for i := range a.cfg.Groups {
		g := &a.cfg.Groups[i]
		if _, member := g.Member(a.self.Name); !member {
			continue
		}
		// An active-active group's service runs on every member (hot); its
		// units only move front doors, so they get a groupSvc without one.
		if g.Mode == config.ModeActiveActive {
			for _, u := range a.cfg.UnitsOf(g.Name) {
				a.svcs[u.Name] = &groupSvc{g: u}
			}
		}
		gs := &groupSvc{g: g}
		if g.Service != nil {
			sup, err := service.NewSupervisor(service.SupervisorOptions{
				Group: g.Name, Service: *g.Service, StateDir: stateDir, Log: a.log.With("component", "service", "group", g.Name),
				Env: []string{"BATON_CLUSTER=" + a.cfg.Cluster.Name, "BATON_NODE=" + a.self.Name, "BATON_GROUP=" + g.Name},
			})
			if err != nil {
				return fmt.Errorf("groups[%d].service: %w", i, err)
			}
			gs.sup = sup
		}
		a.svcs[g.Name] = gs
	}
	return nil
}

// startServices starts hot and warm services on every member at agent start.
func (a *Agent) startServices() {
	for _, gs := range a.svcs {
		if gs.sup == nil {
			continue
		}
		switch gs.g.Standby {
		case StandbyHot, StandbyWarm:
			if err := gs.sup.Start(); err != nil {
				a.log.Error("starting service", "group", gs.g.Name, "err", err)
			}
		}
	}
}

func (a *Agent) closeServices() {
	for _, gs := range a.svcs {
		if gs.cancel != nil {
			gs.cancel()
		}
		gs.wg.Wait()
		if gs.sup != nil {
			gs.sup.Close()
		}
	}
}

// healthy is the core's view of this node's health for a group: the checks
// pass and the service is not crash-looping. A cold standby has no running
// service to check, so it counts as healthy unless its service failed; an
// owner still starting its service counts as healthy until start_timeout.
func (a *Agent) healthy(group string) bool {
	if parent, slot := config.SplitUnit(group); slot >= 0 {
		// An active-active unit is as healthy as its group's hot service.
		if ps := a.svcs[parent]; ps != nil && ps.sup != nil && ps.sup.Failed() {
			return false
		}
		return a.checksPass(group)
	}
	gs := a.svcs[group]
	if gs != nil && gs.sup != nil && gs.sup.Failed() {
		return false
	}
	if gs != nil && gs.promoting != 0 {
		return true
	}
	if dg := a.data[group]; dg != nil && !a.dataHealthy(dg) {
		return false // its database has not answered for seconds
	}
	if gs != nil && gs.g.Standby == StandbyCold && a.node != nil && a.node.Role(group) != core.RoleActive {
		return true
	}
	hg := a.checks[group]
	return hg == nil || hg.Healthy()
}

func (a *Agent) checksPass(group string) bool {
	parent, _ := config.SplitUnit(group)
	hg := a.checks[parent]
	return hg == nil || hg.Healthy()
}

// promote starts the takeover of a group whose lease this node now holds:
// start (cold) or promote (warm) the service, wait until the group's checks
// pass, then bring the front doors up and run the active hook. If the checks
// do not pass within start_timeout the node gives the group up (history
// reason "start") and the next candidate is tried.
func (a *Agent) promote(t core.Transition) {
	gs := a.svcs[t.Group]
	if gs == nil {
		return
	}
	dg := a.data[t.Group]
	needsAction := gs.sup != nil && gs.g.Standby != StandbyHot || dg != nil
	if !needsAction && a.checksPass(t.Group) {
		a.frontDoorsUp(t)
		return
	}
	gs.promoting = t.Epoch
	timeout := 30 * time.Second
	if gs.g.Service != nil && gs.g.Service.StartTimeout.D() > 0 {
		timeout = gs.g.Service.StartTimeout.D()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	gs.cancel = cancel
	if dg != nil {
		a.promoteData(dg, t.Epoch, t.Sync)
	}
	if gs.sup != nil {
		gs.serviceOp(func() {
			var err error
			switch gs.g.Standby {
			case StandbyCold:
				err = gs.sup.Start()
			case StandbyWarm:
				err = gs.sup.Promote(ctx)
			}
			if err != nil {
				a.log.Error("starting the service for takeover failed", "group", t.Group, "err", err)
			}
		})
	}
	a.log.Info("taking over: waiting for the service to be healthy", "group", t.Group, "epoch", t.Epoch,
		"standby", gs.g.Standby, "start_timeout", timeout)
	gs.wg.Add(1)
	go func() {
		defer gs.wg.Done()
		defer cancel()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if a.checksPass(t.Group) && (dg == nil || dg.promoted.Load() == t.Epoch) {
				a.post(func(time.Duration) {
					if gs.promoting == t.Epoch && a.node.Role(t.Group) == core.RoleActive {
						gs.promoting = 0
						a.frontDoorsUp(t)
					}
				})
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				if ctx.Err() == context.DeadlineExceeded {
					a.post(func(now time.Duration) {
						if gs.promoting == t.Epoch {
							// GiveUp demotes, which stops the service it started.
							a.node.GiveUp(now, t.Group, t.Epoch, quorum.ReasonStart,
								fmt.Sprintf("service not healthy within start_timeout %v", timeout))
						}
					})
				}
				return
			}
		}
	}()
}

func (a *Agent) frontDoorsUp(t core.Transition) {
	gs := a.svcs[t.Group]
	if a.vips != nil {
		a.vips.up(t.Group)
	}
	if gs != nil {
		gs.up = t.Epoch
	}
	a.runHook(t)
}

// demote takes the front doors down, then stops (cold) or demotes (warm)
// the service in the background.
func (a *Agent) demote(t core.Transition) {
	if dg := a.data[t.Group]; dg != nil {
		// Before anything else: the database stops acknowledging writes (also
		// at start: a primary that outlived a killed agent must not go on).
		a.fenceData(dg)
	}
	if a.vips != nil {
		a.vips.down(t.Group)
	}
	gs := a.svcs[t.Group]
	if gs == nil {
		return
	}
	if gs.cancel != nil {
		gs.cancel()
	}
	// Only a node that took the group over has anything to stop or demote
	// (not, e.g., the standby reported at start).
	wasOwner := gs.promoting != 0 || gs.up != 0
	gs.promoting, gs.up = 0, 0
	if gs.sup == nil || !wasOwner {
		return
	}
	switch gs.g.Standby {
	case StandbyCold:
		gs.serviceOp(func() {
			if err := gs.sup.Stop(); err != nil {
				a.log.Error("stopping the service", "group", t.Group, "err", err)
			}
		})
	case StandbyWarm:
		gs.serviceOp(func() {
			if err := gs.sup.Demote(context.Background()); err != nil {
				a.log.Error("demoting the service", "group", t.Group, "err", err)
			}
		})
	}
}
