package core

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/baton-ha/baton/internal/quorum"
)

// Endpoint is one place a group is served right now: an owner's address and
// the service port, for clients that dial owners themselves (package client,
// GET /v1/groups/{g}/endpoints).
type Endpoint struct {
	Node    string `json:"node"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	Epoch   uint64 `json:"epoch"`
	VIP     string `json:"vip,omitempty"`  // the VIP (without prefix length) this owner holds
	Unit    string `json:"unit,omitempty"` // active-active: the unit owned
}

// Endpoints is where a group is served. Generation grows with every change
// of ownership in the group (the sum of its units' epochs), so a client can
// tell a re-resolution that changed nothing from a failover.
type Endpoints struct {
	Group      string     `json:"group"`
	Mode       string     `json:"mode"`
	Generation uint64     `json:"generation"`
	Endpoints  []Endpoint `json:"endpoints"` // empty: nobody owns the group now
}

// EndpointsOf computes a group's endpoints from a view of the replicated
// state. ok is false for an unknown group.
func EndpointsOf(spec *Spec, v *quorum.State, group string) (Endpoints, bool) {
	g := spec.Group(group)
	if g == nil {
		return Endpoints{}, false
	}
	out := Endpoints{Group: g.Name, Mode: g.Mode, Endpoints: []Endpoint{}}
	for _, u := range spec.UnitsOf(g.Name) {
		gs := v.Group(u.Name)
		out.Generation += gs.Epoch
		if gs.Owner == "" {
			continue
		}
		nd, ok := spec.Node(gs.Owner)
		if !ok {
			continue
		}
		e := Endpoint{Node: gs.Owner, Address: nd.Address, Port: g.Port, Epoch: gs.Epoch}
		if u.Parent != "" {
			e.Unit = u.Name
		}
		if len(u.VIPs) > 0 {
			e.VIP = vipAddr(u.VIPs[0])
		}
		out.Endpoints = append(out.Endpoints, e)
	}
	return out, true
}

func vipAddr(prefix string) string {
	if p, err := netip.ParsePrefix(prefix); err == nil {
		return p.Addr().String()
	}
	addr, _, _ := strings.Cut(prefix, "/")
	return addr
}

// DNSAddrs is what the group's DNS name resolves to: its VIPs that have an
// owner when the group has VIPs, else the owners' node addresses (one each).
func (e Endpoints) DNSAddrs() []netip.Addr {
	var out []netip.Addr
	for _, ep := range e.Endpoints {
		s := ep.Address
		if ep.VIP != "" {
			s = ep.VIP
		}
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Endpoints returns a group's endpoints from this node's view.
func (n *Node) Endpoints(group string) (Endpoints, bool) {
	return EndpointsOf(n.spec, n.view(), group)
}
