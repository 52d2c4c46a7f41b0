package agent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	dnsfd "github.com/baton-ha/baton/internal/frontdoor/dns"
	"github.com/baton-ha/baton/internal/frontdoor/proxy"
	"github.com/baton-ha/baton/internal/quorum"
)

// frontDoors are the client-facing doors every agent serves from its view of
// the replicated state, member of the group or not: the DNS zone and a TCP
// proxy per group with proxy.listen. The agent loop calls publish after
// every event; it does work only when the view changed.
type frontDoors struct {
	dns      *dnsfd.Server
	zone     atomic.Pointer[map[string]dnsfd.Record]
	proxies  map[string]*proxy.Proxy // group → its proxy
	targets  map[string][]proxy.Target
	units    map[string]quorum.GroupState // unit → state last published
	lastView *quorum.State
}

func (a *Agent) openFrontDoors() error {
	fd := &frontDoors{proxies: map[string]*proxy.Proxy{}, targets: map[string][]proxy.Target{}, units: map[string]quorum.GroupState{}}
	a.fd = fd
	empty := map[string]dnsfd.Record{}
	fd.zone.Store(&empty)
	if err := a.openDNS(); err != nil {
		return err
	}
	for i := range a.cfg.Groups {
		g := &a.cfg.Groups[i]
		if g.Proxy == nil {
			continue
		}
		if err := a.openProxy(g); err != nil {
			return fmt.Errorf("groups[%d].proxy.listen: %w", i, err)
		}
	}
	return nil
}

// openDNS starts the DNS server if this node serves one (at start, and
// again after a reload changed its settings).
func (a *Agent) openDNS() error {
	fd := a.fd
	listen := a.self.DNS
	if listen == "" {
		listen = a.cfg.DNS.Listen
	}
	if listen == "" {
		return nil
	}
	listen = a.onOwnAddress(listen)
	s, err := dnsfd.New(a.cfg.DNS.Zone, a.cfg.DNS.TTL.D(), func() map[string]dnsfd.Record { return *fd.zone.Load() },
		a.log.With("component", "dns"))
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	s.OnQuery = a.metrics.DNSQuery
	if err := s.Listen(listen); err != nil {
		return fmt.Errorf("dns.listen (nodes[%s].dns): %w", a.self.Name, err)
	}
	fd.dns = s
	return nil
}

// openProxy starts the proxy of a group with proxy settings.
func (a *Agent) openProxy(g *config.Group) error {
	group := g.Name
	p, err := proxy.Listen(proxy.Options{Listen: a.onOwnAddress(g.Proxy.Listen), Log: a.log.With("component", "proxy", "group", group),
		MaxConns: g.Proxy.MaxConnections, IdleTimeout: g.Proxy.IdleTimeout.D(),
		OnConn: func(node string) { a.metrics.ProxyConn(group, node) }})
	if err != nil {
		return err
	}
	a.fd.proxies[group] = p
	return nil
}

// onOwnAddress puts this node's address into a listen address without a
// host (":9080"), so that one cluster file serves every node, also when
// several agents share a machine; "0.0.0.0:9080" listens everywhere.
func (a *Agent) onOwnAddress(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host != "" {
		return hostport
	}
	return net.JoinHostPort(a.self.Address, port)
}

func (fd *frontDoors) close() {
	if fd == nil {
		return
	}
	if fd.dns != nil {
		_ = fd.dns.Close()
	}
	for _, p := range fd.proxies {
		_ = p.Close()
	}
}

// publish brings the DNS zone and the proxies' targets up to date with the
// node's view. A proxy hears of a planned change (switchover, failback,
// shutdown: the old owner is alive and handed over) as a Switchover, so its
// connections drain; of anything else as a Failover, which resets them.
func (a *Agent) publish() {
	fd := a.fd
	v := a.node.View()
	if fd == nil || v == fd.lastView {
		return
	}
	fd.lastView = v
	zone := map[string]dnsfd.Record{}
	for _, nd := range a.cfg.Nodes {
		if addr, err := netip.ParseAddr(nd.Address); err == nil {
			zone[nd.Name] = dnsfd.Record{Addrs: []netip.Addr{addr}}
		}
	}
	if fd.dns != nil {
		var ns []netip.Addr
		for _, nd := range a.cfg.Nodes {
			if hp := nd.DNS; hp != "" || a.cfg.DNS.Listen != "" {
				if addr, err := netip.ParseAddr(nd.Address); err == nil {
					ns = append(ns, addr)
				}
			}
		}
		zone["ns"] = dnsfd.Record{Addrs: ns}
	}
	for i := range a.cfg.Groups {
		g := &a.cfg.Groups[i]
		e, _ := core.EndpointsOf(a.node.Spec(), v, g.Name)
		if g.DNS != nil {
			zone[g.DNS.Name] = dnsRecord(g, e)
		}
		if p := fd.proxies[g.Name]; p != nil {
			var targets []proxy.Target
			for _, ep := range e.Endpoints {
				t := proxy.Target{Node: ep.Node, Addr: net.JoinHostPort(ep.Address, strconv.Itoa(g.Proxy.Port))}
				if !slices.Contains(targets, t) {
					targets = append(targets, t)
				}
			}
			if !slices.Equal(targets, fd.targets[g.Name]) {
				how := a.changeKind(v, g)
				a.log.Info("proxy follows the owners", "group", g.Name, "targets", targets, "change", how)
				p.Update(targets, how)
				fd.targets[g.Name] = targets
			}
		}
		for _, u := range a.cfg.UnitsOf(g.Name) {
			fd.units[u.Name] = v.Group(u.Name)
		}
	}
	fd.zone.Store(&zone)
}

// changeKind tells a planned handover of g's units since the last publish
// from a failure.
func (a *Agent) changeKind(v *quorum.State, g *config.Group) proxy.Change {
	how := proxy.Switchover
	for _, u := range a.cfg.UnitsOf(g.Name) {
		before, now := a.fd.units[u.Name], v.Group(u.Name)
		if before.Owner == "" || before.Owner == now.Owner {
			continue
		}
		planned := before.HandoffTo != "" || a.node.PeerLeaving(before.Owner)
		for i := len(v.Events) - 1; i >= 0 && !planned; i-- {
			if e := v.Events[i]; e.Group == u.Name && e.Epoch == now.Epoch && e.Ownership() {
				planned = e.Reason == quorum.ReasonSwitchover || e.Reason == quorum.ReasonFailback || e.Reason == quorum.ReasonShutdown
				break
			}
		}
		if !planned {
			how = proxy.Failover
		}
	}
	return how
}

// dnsRecord is what a group's DNS name answers. SRV targets are node names
// (n1.<zone>) only where clients dial the nodes' own addresses: n1.<zone>
// answers the node's address, so naming it as the target of a VIP would give
// glue that contradicts a direct query. With VIPs, the server names each VIP
// by its address label instead, which resolves to the VIP.
func dnsRecord(g *config.Group, e core.Endpoints) dnsfd.Record {
	rec := dnsfd.Record{Addrs: e.DNSAddrs(), Port: g.ServicePort()}
	if len(g.VIPs) > 0 {
		return rec
	}
	for _, ep := range e.Endpoints {
		if addr, err := netip.ParseAddr(ep.Address); err == nil {
			rec.Targets = append(rec.Targets, dnsfd.Target{Node: ep.Node, Addr: addr})
		}
	}
	return rec
}
