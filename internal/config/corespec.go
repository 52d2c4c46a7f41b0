package config

import (
	"time"

	"github.com/baton-ha/baton/internal/core"
)

// CoreSpec is the part of the config the core state machine works from (see
// core.Spec): nodes, groups and units, timing. The config must be valid.
func (c *Config) CoreSpec() *core.Spec {
	s := &core.Spec{
		Cluster: c.Cluster.Name, Profile: c.Cluster.Profile, Timing: c.Timing(),
		KeepLeaderOffOwners: c.Cluster.KeepLeaderOffOwners == nil || *c.Cluster.KeepLeaderOffOwners,
		ConfigHash:          c.Hash(),
	}
	for _, n := range c.Nodes {
		s.Nodes = append(s.Nodes, core.NodeSpec{Name: n.Name, Address: n.Address, API: n.API, Witness: n.Witness})
	}
	for i := range c.Groups {
		s.Groups = append(s.Groups, coreGroup(&c.Groups[i]))
	}
	for _, u := range c.Units() {
		s.Units = append(s.Units, coreGroup(u))
	}
	return s
}

func coreGroup(g *Group) *core.Group {
	out := &core.Group{
		Name: g.Name, Mode: g.Mode, Standby: g.Standby, Failback: g.Failback,
		FailbackDelay: time.Duration(g.FailbackDelay), Port: g.ServicePort(), Parent: g.Parent, Slot: g.Slot,
	}
	for _, m := range g.Members {
		out.Members = append(out.Members, core.Member{Node: m.Node, Priority: m.Priority})
	}
	for _, v := range g.VIPs {
		out.VIPs = append(out.VIPs, v.Address)
	}
	// An active-active group's units move front doors only; the data belongs
	// to the group (Units clears Driver on them).
	if g.Driver != nil {
		lag, _ := ParseSize(g.Driver.MaxLag) // validated
		out.Data = &core.DataSpec{Sync: g.Driver.Sync, MaxLag: uint64(max(lag, 0)), Type: g.Driver.Type}
	}
	return out
}
