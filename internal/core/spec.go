package core

import (
	"slices"
	"time"
)

// Spec is everything the core knows of the cluster's configuration: the
// nodes, the groups and their units, and the timing. It holds no secrets,
// paths, commands or checks: those are the shell's business. The shell builds
// it from the cluster file (config.Config.CoreSpec); the in-process harness
// does the same for its fixtures. A Spec is read-only once built.
type Spec struct {
	Cluster string
	Profile string
	Timing  Timing
	Nodes   []NodeSpec
	// Groups are the configured groups in file order; Units every unit of
	// every group (see Group), in the same order.
	Groups []*Group
	Units  []*Group
	// KeepLeaderOffOwners moves quorum leadership to a voter that owns no
	// group, so the death of an owner never also costs a leader election.
	KeepLeaderOffOwners bool
	// ConfigHash identifies the configuration this spec was built from
	// (config.Config.Hash); heartbeats announce it, so status can mark the
	// nodes that run another one.
	ConfigHash uint64
}

// NodeSpec is one node of the cluster. Every node votes; a witness owns no
// group.
type NodeSpec struct {
	Name    string
	Address string // the node's cluster address (IP)
	API     string // host:port of its HTTP API
	Witness bool
}

// Group is a group as the core sees it, or one unit of it. A unit is what one
// lease, one owner and one epoch cover: an active-passive group is its own
// unit (Parent ""); an active-active group has one unit per VIP (or per
// member without VIPs), named "web[0]", "web[1]", … with Parent "web" and its
// own VIP only.
type Group struct {
	Name          string
	Mode          string // active-passive | active-active
	Standby       string // hot | warm | cold
	Members       []Member
	Failback      bool
	FailbackDelay time.Duration
	// Port is the service port on each member (DNS SRV, the proxy, the
	// client's endpoints); 0 if none is known.
	Port int
	// VIPs are the group's (or the unit's) virtual addresses as prefixes
	// ("10.0.0.100/24").
	VIPs []string
	// Data makes the group data-aware (it has a driver); nil otherwise.
	Data *DataSpec
	// Parent and Slot are set on the units of an active-active group.
	Parent string
	Slot   int
}

// Member is a node that may own a group; the healthy member with the highest
// priority is preferred.
type Member struct {
	Node     string
	Priority int
}

// DataSpec is what the core needs to know of a group's driver: its sync
// policy (off | on | strict) and, for off, how far behind the old primary a
// standby may be and still be promoted automatically (bytes, 0 = no bound).
type DataSpec struct {
	Sync   string
	MaxLag uint64
	// Type is the driver type (postgres, redis, exec), for the history's words.
	Type string
}

// Mode names (Group.Mode).
const (
	ModeActivePassive = "active-passive"
	ModeActiveActive  = "active-active"
)

// Member returns node's membership of g.
func (g *Group) Member(node string) (Member, bool) {
	i := slices.IndexFunc(g.Members, func(m Member) bool { return m.Node == node })
	if i < 0 {
		return Member{}, false
	}
	return g.Members[i], true
}

// GroupOf returns the name of the group a unit belongs to.
func (g *Group) GroupOf() string {
	if g.Parent != "" {
		return g.Parent
	}
	return g.Name
}

// syncMode returns the group's sync policy ("" for a group without driver).
func (g *Group) syncMode() string {
	if g.Data == nil {
		return ""
	}
	return g.Data.Sync
}

// Voters returns every node's name in config order: every node, witness or
// not, votes in the quorum.
func (s *Spec) Voters() []string {
	names := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		names[i] = n.Name
	}
	return names
}

// Node returns the node called name.
func (s *Spec) Node(name string) (NodeSpec, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeSpec{}, false
}

// Group returns the configured group called name, or nil.
func (s *Spec) Group(name string) *Group {
	for _, g := range s.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Unit returns the unit called name, or nil.
func (s *Spec) Unit(name string) *Group {
	for _, u := range s.Units {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// UnitsOf returns the units of the group called name (one for an
// active-passive group).
func (s *Spec) UnitsOf(group string) []*Group {
	var out []*Group
	for _, u := range s.Units {
		if u.Name == group || u.Parent == group {
			out = append(out, u)
		}
	}
	return out
}
