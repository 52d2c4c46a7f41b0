package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/frontdoor/vip"
)

// vips manages this node's virtual IPs: added when the node starts acting
// for a group, removed when it stops, and guarded by a fence process (`baton
// fence`) that removes them at the acting deadline even if this agent is
// killed or frozen. See internal/frontdoor/vip/README.md for the timing.
type vips struct {
	a         *Agent
	byGroup   map[string][]vip.VIP
	mgr       *vip.Manager
	fence     *exec.Cmd
	fenceIn   io.WriteCloser
	w         *bufio.Writer
	lastHold  map[string]time.Duration
	held      map[string]bool
	lifetime  time.Duration
	nextRenew time.Duration
	refresh   map[vip.VIP]time.Duration // VIP → announce period while owned
	announced map[vip.VIP]time.Duration // VIP → last announce
	resets    bool                      // the TCP resets for VIPs not held here are installed (or were tried)
	resetting []vip.VIP                 // the VIPs with tcp_reset on, as last installed
	kept      []vip.VIP                 // the VIPs with tcp_reset off, as last told the Manager and the fence
}

// KernelLifetime is the valid_lft given to a VIP: whole seconds, at least the
// lease plus one second, renewed every second by the owner. It is the last
// line of defence when agent and fence are both killed.
func KernelLifetime(lease time.Duration) time.Duration {
	return time.Duration(math.Ceil(lease.Seconds())+1) * time.Second
}

func (a *Agent) openVIPs() error {
	v := &vips{a: a, byGroup: map[string][]vip.VIP{}, mgr: vip.NewManager(a.log.With("component", "vip")),
		lastHold: map[string]time.Duration{}, held: map[string]bool{}, lifetime: KernelLifetime(a.timing.FailureTimeout),
		refresh: map[vip.VIP]time.Duration{}, announced: map[vip.VIP]time.Duration{}}
	var all, resetting, kept []vip.VIP
	for _, g := range a.cfg.Units() {
		if _, member := g.Member(a.self.Name); !member {
			continue
		}
		for _, c := range g.VIPs {
			p, err := vip.Parse(c.Address, c.Interface)
			if err != nil {
				return fmt.Errorf("group %s: vip %s: %w", g.GroupOf(), c.Address, err)
			}
			v.byGroup[g.Name] = append(v.byGroup[g.Name], p)
			all = append(all, p)
			if c.Resets() {
				resetting = append(resetting, p)
			} else {
				kept = append(kept, p)
			}
			if r := c.Refresh.D(); r > 0 {
				v.refresh[p] = r
			}
		}
	}
	if len(all) == 0 {
		return nil
	}
	// Nothing is owned at start: a VIP still on an interface is a leftover
	// of an earlier run (the fence normally removes it) and must go.
	removed, err := vip.RemoveStale(all, func(vip.VIP) bool { return false })
	if err != nil {
		return fmt.Errorf("removing stale VIPs: %w", err)
	}
	for _, r := range removed {
		a.log.Warn("removed a VIP left over from an earlier run", "vip", r.Prefix, "interface", r.Interface)
	}
	// Someone answering for a VIP we do not hold is either a member of its
	// group (its current owner: normal on a restart) or a host outside the
	// group (a conflict an operator must fix): tell which.
	for g, ps := range v.byGroup {
		for _, p := range ps {
			err := vip.Preflight(p, false)
			var ans *vip.AnsweredError
			switch {
			case errors.As(err, &ans):
				if m := a.memberWithMAC(g, p.Interface, ans.MAC); m != "" {
					a.log.Info("VIP held by another member (its owner, presumably)", "vip", p.Prefix, "member", m, "mac", ans.MAC)
				} else {
					a.log.Warn("VIP preflight: a host outside the group answers for this address", "vip", p.Prefix,
						"interface", p.Interface, "mac", ans.MAC, "fix", "find the host with that MAC and remove the address from it")
				}
			case err != nil:
				a.log.Warn("VIP preflight", "vip", p.Prefix, "interface", p.Interface, "err", err)
			}
		}
	}
	if err := v.startFence(); err != nil {
		return err
	}
	v.setResets(resetting, kept, true)
	a.vips = v
	return nil
}

// setResets installs the TCP resets for the VIPs of resetting (tcp_reset on)
// and tells the Manager and the fence to leave the connections of kept
// (tcp_reset off) alone when they remove them; a list that did not change
// since the last call is not installed again unless force.
//
// With the resets a client that still sends to this host after a VIP left it
// (until the new owner's announcement reaches it) is refused at once instead
// of waiting a second for its SYN to be retransmitted.
func (v *vips) setResets(resetting, kept []vip.VIP, force bool) {
	if force || !slices.Equal(resetting, v.resetting) {
		if err := v.mgr.SetResets(vip.ResetTable(v.a.cfg.Cluster.Name, v.a.self.Name), resetting); err != nil {
			v.a.log.Warn("VIPs work, but clients connecting to one this host just gave up wait for a TCP retransmit (about 1 s) instead of being refused",
				"err", err)
		}
		v.resets, v.resetting = true, resetting
	}
	if force || !slices.Equal(kept, v.kept) {
		addrs := make([]netip.Addr, len(kept))
		for i, p := range kept {
			addrs[i] = p.Addr()
		}
		v.mgr.KeepConnections(addrs)
		v.sendLine(vip.KeepLine(kept))
		v.kept = kept
	}
}

func (v *vips) startFence() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "fence", "--config", v.a.cfg.Path, "--node", v.a.self.Name)
	// Its own process group and no death signal: it must outlive the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the VIP fence: %w", err)
	}
	v.fence, v.fenceIn, v.w = cmd, in, bufio.NewWriter(in)
	go func() { _ = cmd.Wait() }()
	return nil
}

func (v *vips) sendLine(line string) {
	_, _ = v.w.WriteString(line)
	if err := v.w.Flush(); err != nil {
		v.a.log.Error("VIP fence pipe broken; dropping VIPs", "err", err)
		for g := range v.held {
			v.down(g)
		}
	}
}

// acting is the node's OnActing: forward the deadline to the fence, at most
// once per half heartbeat of progress (the fence's deadline then trails the
// real one by less than that, which only makes it drop earlier).
func (v *vips) acting(now time.Duration, group string, until time.Duration) {
	if len(v.byGroup[group]) == 0 {
		return
	}
	if until-v.lastHold[group] < v.a.timing.HeartbeatInterval/2 && v.held[group] {
		return
	}
	v.lastHold[group] = until
	v.sendLine(vip.HoldLine(group, max(until-now, 0)))
}

// up adds the group's VIPs (the fence already holds the deadline: the node
// reports it before the role change) and announces them (gratuitous ARP /
// unsolicited NA, inside Add).
func (v *vips) up(group string) {
	if len(v.byGroup[group]) > 0 && v.a.now() >= v.lastHold[group] {
		v.a.log.Warn("not adding VIPs: the acting deadline has passed (agent stalled?)", "group", group)
		return
	}
	for _, p := range v.byGroup[group] {
		if err := v.mgr.Add(p, v.lifetime); err != nil {
			v.a.log.Error("adding VIP failed", "group", group, "vip", p.Prefix, "interface", p.Interface, "err", err)
			continue
		}
		v.held[group] = true
		v.announced[p] = v.a.now()
		v.a.log.Info("VIP up", "group", group, "vip", p.Prefix, "interface", p.Interface)
	}
}

func (v *vips) down(group string) {
	if len(v.byGroup[group]) == 0 {
		return
	}
	for _, p := range v.byGroup[group] {
		if err := v.mgr.Remove(p); err != nil {
			v.a.log.Error("removing VIP failed", "group", group, "vip", p.Prefix, "err", err)
		}
	}
	if v.held[group] {
		v.a.log.Info("VIP down", "group", group)
	}
	delete(v.held, group)
	delete(v.lastHold, group)
	v.sendLine(vip.DropLine(group))
}

// renew refreshes the kernel lifetime of held VIPs about once a second, and
// repeats announcements for VIPs with a refresh period.
func (v *vips) renew(now time.Duration) {
	if now < v.nextRenew {
		return
	}
	for g := range v.held {
		for _, p := range v.byGroup[g] {
			if r := v.refresh[p]; r > 0 && now-v.announced[p] >= r {
				v.announced[p] = now
				go func() { _ = v.mgr.Announce(p, 1, 0) }()
			}
		}
	}
	v.nextRenew = now + time.Second
	for g := range v.held {
		if now >= v.lastHold[g] {
			// Past the acting deadline (this agent was frozen, perhaps
			// right between the core's tick and here): the core demotes on
			// its next tick; never renew, let alone re-add, a VIP now.
			continue
		}
		for _, p := range v.byGroup[g] {
			err := v.mgr.Renew(p, v.lifetime)
			if errors.Is(err, vip.ErrNotPresent) {
				// Someone removed it while we still hold the lease: put it back.
				v.a.log.Warn("VIP vanished while owned; adding it again", "vip", p.Prefix)
				err = v.mgr.Add(p, v.lifetime)
			}
			if err != nil {
				v.a.log.Warn("renewing VIP lifetime failed", "vip", p.Prefix, "err", err)
			}
		}
	}
}

func (v *vips) close() {
	for g := range v.held {
		v.down(g)
	}
	if v.fenceIn != nil {
		v.fenceIn.Close() // EOF: the fence removes whatever is left and exits
	}
	if v.resets {
		// The successors are committed by now (the agent waits for that
		// before it exits) and have announced or are about to.
		if err := v.mgr.ClearResets(vip.ResetTable(v.a.cfg.Cluster.Name, v.a.self.Name)); err != nil && !errors.Is(err, vip.ErrNoNFT) {
			v.a.log.Warn("could not remove the TCP resets for VIPs", "err", err)
		}
	}
}

// memberWithMAC returns the member of group (other than this node) whose
// address answers with mac on iface, or "".
func (a *Agent) memberWithMAC(group, iface, mac string) string {
	u := a.cfg.UnitByName(group)
	if u == nil {
		return ""
	}
	for _, m := range u.Members {
		if m.Node == a.self.Name {
			continue
		}
		nd, err := a.cfg.NodeByName(m.Node)
		if err != nil {
			continue
		}
		addr, err := netip.ParseAddr(nd.Address)
		if err != nil {
			continue
		}
		if who, err := vip.WhoAnswers(iface, addr); err == nil && strings.EqualFold(who, mac) {
			return m.Node
		}
	}
	return ""
}
