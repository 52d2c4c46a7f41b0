package config

import (
	"fmt"
	"strings"
)

// ModeActiveActive and ModeActivePassive are the group modes.
const (
	ModeActivePassive = "active-passive"
	ModeActiveActive  = "active-active"
)

// A unit is what one lease, one owner and one epoch cover. An active-passive
// group is one unit. An active-active group is one unit per VIP, named
// "web[0]", "web[1]", … in VIP order, each moving on its own; a group without
// VIPs (DNS, proxy or client front doors only) has one unit per member, so
// every healthy member can own one. A unit is a *Group whose Parent names
// the group it belongs to ("" for an active-passive group, which is its own
// unit) and whose VIPs hold just its own address; checks, service and hooks
// are the parent's.

// Units returns every unit of every group, in group order. The slice and the
// units are built once per Config and shared; treat them as read-only.
func (c *Config) Units() []*Group {
	if c.units != nil {
		return c.units
	}
	var out []*Group
	for i := range c.Groups {
		g := &c.Groups[i]
		if g.Mode != ModeActiveActive {
			out = append(out, g)
			continue
		}
		n := len(g.VIPs)
		if n == 0 {
			n = len(g.Members)
		}
		for s := 0; s < n; s++ {
			u := *g
			u.Name, u.Parent, u.Slot = UnitName(g.Name, s), g.Name, s
			u.VIPs = nil
			if s < len(g.VIPs) {
				u.VIPs = []VIP{g.VIPs[s]}
			}
			u.Service, u.Driver = nil, nil
			out = append(out, &u)
		}
	}
	c.units = out
	return out
}

// UnitName is the name of slot s of an active-active group.
func UnitName(group string, slot int) string { return fmt.Sprintf("%s[%d]", group, slot) }

// SplitUnit returns the group a unit name belongs to ("web[1]" → "web", 1;
// "web" → "web", -1).
func SplitUnit(name string) (group string, slot int) {
	i := strings.LastIndexByte(name, '[')
	if i < 0 || !strings.HasSuffix(name, "]") {
		return name, -1
	}
	if _, err := fmt.Sscanf(name[i:], "[%d]", &slot); err != nil {
		return name, -1
	}
	return name[:i], slot
}

// UnitByName returns the unit called name, or nil.
func (c *Config) UnitByName(name string) *Group {
	for _, u := range c.Units() {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// UnitsOf returns the units of the group called name (one for an
// active-passive group).
func (c *Config) UnitsOf(group string) []*Group {
	var out []*Group
	for _, u := range c.Units() {
		if u.Name == group || u.Parent == group {
			out = append(out, u)
		}
	}
	return out
}

// GroupOf returns the name of the group a unit belongs to.
func (g *Group) GroupOf() string {
	if g.Parent != "" {
		return g.Parent
	}
	return g.Name
}

// ServicePort is the port clients use for the group's service on an owner:
// groups[].port, else proxy.port, else driver.port; 0 if none is known.
func (g *Group) ServicePort() int {
	switch {
	case g.Port != 0:
		return g.Port
	case g.Proxy != nil && g.Proxy.Port != 0:
		return g.Proxy.Port
	case g.Driver != nil && g.Driver.Port != 0:
		return g.Driver.Port
	}
	return 0
}
