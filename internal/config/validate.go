package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
)

var (
	clusterNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	nodeNameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$`)
	dnsLabelRE    = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)
)

// Limits that Validate enforces.
const (
	MinHeartbeatInterval = 5 * time.Millisecond
	MinRaftTimeout       = 10 * time.Millisecond
	MaxClockDrift        = 0.1
	MinCheckInterval     = 10 * time.Millisecond
)

// Validate checks c, which should have its defaults applied (Parse does both), and returns every problem found.
// Each message names the offending value and how to fix it.
func (c *Config) Validate() Errors {
	var errs Errors
	switch {
	case c.Version == 0:
		errs.add("version", "missing (add \"version: %d\")", FileVersion)
	case c.Version != FileVersion:
		errs.add("version", "unsupported version %d (this baton reads version %d)", c.Version, FileVersion)
	}
	c.validateCluster(&errs)
	c.validateTiming(&errs)
	c.validateNodes(&errs)
	c.validateAPIAndDNS(&errs)
	c.validateGroups(&errs)
	if len(errs) == 0 {
		// Only on an otherwise valid config: these read addresses and units.
		c.validatePorts(&errs)
		c.validateWire(&errs)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// validatePorts refuses two listeners of one node on the same port and
// address: the cluster port (UDP heartbeats, TCP quorum), the API, the DNS
// server and each proxy. The agent would fail at start with a misleading
// "cannot listen" on whichever came second.
func (c *Config) validatePorts(errs *Errors) {
	type listener struct{ path, host, port string }
	reported := map[[2]string]bool{} // a cluster-wide listener collides on every node: say it once
	for i, n := range c.Nodes {
		on := func(path, hostport string) listener {
			host, port, _ := net.SplitHostPort(hostport)
			if host == "" {
				host = n.Address // an empty host means the node's own address
			}
			return listener{path, host, port}
		}
		ls := []listener{{"cluster.port", n.Address, strconv.Itoa(c.Cluster.Port)}, on(fmt.Sprintf("nodes[%d].api", i), n.API)}
		switch {
		case n.DNS != "":
			ls = append(ls, on(fmt.Sprintf("nodes[%d].dns", i), n.DNS))
		case c.DNS.Listen != "":
			ls = append(ls, on("dns.listen", c.DNS.Listen))
		}
		for j, g := range c.Groups {
			if g.Proxy != nil && g.Proxy.Listen != "" {
				// Every agent runs every group's proxy, member or not.
				ls = append(ls, on(fmt.Sprintf("groups[%d].proxy.listen", j), g.Proxy.Listen))
			}
		}
		for a := range ls {
			for b := a + 1; b < len(ls); b++ {
				x, y := ls[a], ls[b]
				if x.port == y.port && (x.host == y.host || isAnyHost(x.host) || isAnyHost(y.host)) && !reported[[2]string{x.path, y.path}] {
					reported[[2]string{x.path, y.path}] = true
					errs.add(y.path, "port %s is also %s's on node %s; give one of them another port", y.port, x.path, n.Name)
				}
			}
		}
	}
}

func isAnyHost(h string) bool { return h == "0.0.0.0" || h == "::" || h == "[::]" }

func (c *Config) validateCluster(errs *Errors) {
	cl := c.Cluster
	switch {
	case cl.Name == "":
		errs.add("cluster.name", "missing (e.g. name: prod)")
	case !clusterNameRE.MatchString(cl.Name):
		errs.add("cluster.name", "%q is not a valid name: %s", cl.Name, labelRule)
	}

	// The secret: exactly one source, and long enough to resist guessing.
	secret := c.Secret
	if secret == nil && cl.Secret != "" {
		secret = trimTrailingSpace([]byte(cl.Secret)) // Validate on a config that did not go through Parse
	}
	switch {
	case cl.Secret != "" && cl.SecretFile != "":
		errs.add("cluster.secret", "set either secret or secret_file, not both")
	case cl.Secret == "" && cl.SecretFile == "" && len(c.Secret) == 0:
		errs.add("cluster.secret_file", "missing; the cluster needs a shared secret of at least %d bytes (e.g. head -c 32 /dev/urandom | base64 > FILE, then secret_file: FILE)", MinSecretBytes)
	case secret != nil && len(secret) < MinSecretBytes:
		if cl.SecretFile != "" {
			errs.add("cluster.secret_file", "%q holds a secret of %d bytes; use at least %d: head -c 32 /dev/urandom | base64 > %s", cl.SecretFile, len(secret), MinSecretBytes, cl.SecretFile)
		} else {
			errs.add("cluster.secret", "secret is %d bytes; use at least %d (e.g. the output of head -c 32 /dev/urandom | base64), or keep it in a file: head -c 32 /dev/urandom | base64 > FILE, then secret_file: FILE", len(secret), MinSecretBytes)
		}
	}

	if _, ok := Profile(cl.Profile); !ok && cl.Profile != "" {
		errs.add("cluster.profile", "%q is not a profile; use %s", cl.Profile, orList(profileNames))
	}
	if cl.Port < 1 || cl.Port > 65535 {
		errs.add("cluster.port", "%d is out of range; use 1 to 65535 (default %d)", cl.Port, DefaultPort)
	}
}

// validateTiming checks the effective timing, blaming an explicit override (the profiles themselves are sound).
func (c *Config) validateTiming(errs *Errors) {
	cl := c.Cluster
	t := c.Timing()
	ms := time.Millisecond
	if cl.HeartbeatInterval != nil && t.HeartbeatInterval < MinHeartbeatInterval {
		errs.add("cluster.heartbeat_interval", "%v is too short; use at least %v", t.HeartbeatInterval, MinHeartbeatInterval)
	}
	if t.FailureTimeout < 3*t.HeartbeatInterval {
		if cl.FailureTimeout != nil {
			errs.add("cluster.failure_timeout", "%v is less than 3 × heartbeat_interval (%v); use at least %v so one lost heartbeat cannot look like a failure",
				t.FailureTimeout, t.HeartbeatInterval, 3*t.HeartbeatInterval)
		} else {
			errs.add("cluster.heartbeat_interval", "%v is more than a third of failure_timeout (%v); use at most %v so one lost heartbeat cannot look like a failure",
				t.HeartbeatInterval, t.FailureTimeout, (t.FailureTimeout / 3).Truncate(ms))
		}
	}
	if t.LeaseGuard <= 0 || t.LeaseGuard >= t.FailureTimeout/2 {
		path := "cluster.lease_guard"
		if cl.LeaseGuard == nil {
			path = "cluster.failure_timeout" // the profile's guard no longer fits the overridden lease
		}
		errs.add(path, "lease_guard %v must be above 0 and below half of failure_timeout (%v): an owner that cannot renew drops its front doors lease_guard before its lease ends, and needs the rest of the lease to act",
			t.LeaseGuard, t.FailureTimeout)
	}
	if !(t.ClockDrift >= 0 && t.ClockDrift <= MaxClockDrift) {
		errs.add("cluster.clock_drift", "%v is out of range; use 0 to %v (e.g. 0.01: real clocks drift ~0.0001)", t.ClockDrift, MaxClockDrift)
	}
	if cl.RaftTimeout != nil && cl.RaftTimeout.D() < MinRaftTimeout {
		errs.add("cluster.raft_timeout", "%v is too short; use at least %v", cl.RaftTimeout.D(), MinRaftTimeout)
	}
	if t.StartupGrace < 0 {
		errs.add("cluster.startup_grace", "%v is negative; use 0 or more", t.StartupGrace)
	}
}

func (c *Config) validateNodes(errs *Errors) {
	if len(c.Nodes) == 0 {
		errs.add("nodes", "no nodes; add at least one, e.g. {name: n1, address: 10.0.0.11}")
		return
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	apis := map[string]int{}
	for i, n := range c.Nodes {
		p := fmt.Sprintf("nodes[%d]", i)
		switch first, dup := names[n.Name]; {
		case n.Name == "":
			errs.add(p+".name", "missing (e.g. name: n1)")
		case !nodeNameRE.MatchString(n.Name):
			errs.add(p+".name", "%q is not a valid node name: use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit", n.Name)
		case dup:
			errs.add(p+".name", "%q is already the name of nodes[%d]", n.Name, first)
		default:
			names[n.Name] = i
		}

		addr, err := netip.ParseAddr(n.Address)
		switch first, dup := addrs[addr]; {
		case n.Address == "":
			errs.add(p+".address", "missing (the node's IP address, e.g. 10.0.0.11)")
		case err != nil:
			errs.add(p+".address", "%q is not an IP address", n.Address)
		case dup:
			errs.add(p+".address", "%s is already the address of nodes[%d]; every node needs its own (all use cluster.port %d)", addr, first, c.Cluster.Port)
		default:
			addrs[addr] = i
		}

		switch {
		case n.API == "":
			if err == nil {
				errs.add(p+".api", "missing (e.g. %s)", net.JoinHostPort(addr.String(), strconv.Itoa(DefaultAPIPort)))
			}
		case !validHostPort(n.API, true):
			errs.add(p+".api", "%q is not host:port (e.g. 10.0.0.11:%d)", n.API, DefaultAPIPort)
		default:
			if first, dup := apis[n.API]; dup {
				errs.add(p+".api", "%s is already the api of nodes[%d]", n.API, first)
			}
			apis[n.API] = i
			host, port, _ := net.SplitHostPort(n.API)
			if a, aerr := netip.ParseAddr(host); aerr == nil && err == nil && a == addr && port == strconv.Itoa(c.Cluster.Port) {
				errs.add(p+".api", "%s clashes with the quorum traffic on cluster.port %d; use another port (default %d)", n.API, c.Cluster.Port, DefaultAPIPort)
			}
		}
		if n.DNS != "" && !validHostPort(n.DNS, false) {
			errs.add(p+".dns", "%q is not host:port (e.g. %s:53)", n.DNS, n.Address)
		}
	}

	// Every node votes. Two voters cannot tell "the other one died" from "the link between us died", so one of
	// them would have to guess; a third voter, a witness, breaks the tie.
	if voters := c.Voters(); len(voters) == 2 {
		errs.add("nodes", "only 2 voting nodes (%s): a partition between them cannot be decided safely; add a witness node, e.g. {name: %s, address: %s, witness: true}",
			strings.Join(voters, ", "), c.freeWitnessName(), c.freeAddress())
	}
}

// freeWitnessName suggests a name for a new witness node.
func (c *Config) freeWitnessName() string {
	for i := 1; ; i++ {
		name := "w" + strconv.Itoa(i)
		if _, err := c.NodeByName(name); err != nil {
			return name
		}
	}
}

// freeAddress suggests an address for a new node: the one after the highest node address.
func (c *Config) freeAddress() string {
	var top netip.Addr
	for _, n := range c.Nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil && (!top.IsValid() || top.Less(a)) {
			top = a
		}
	}
	if next := top.Next(); next.IsValid() {
		return next.WithZone("").String()
	}
	return "10.0.0.13"
}

func (c *Config) validateAPIAndDNS(errs *Errors) {
	if c.API.Token != "" && c.API.TokenFile != "" {
		errs.add("api.token", "set either token or token_file, not both")
	}
	if t := c.API.TLS; t != nil {
		if t.CertFile == "" {
			errs.add("api.tls.cert_file", "missing: the PEM certificate the API serves (\"{node}\" in the path stands for the node's name)")
		}
		if t.KeyFile == "" {
			errs.add("api.tls.key_file", "missing: the PEM private key of cert_file")
		}
	}
	if c.DNS.Listen != "" && !validHostPort(c.DNS.Listen, false) {
		errs.add("dns.listen", "%q is not host:port (e.g. 10.0.0.11:53)", c.DNS.Listen)
	}
	if !validDomain(strings.TrimSuffix(c.DNS.Zone, ".")) {
		errs.add("dns.zone", "%q is not a domain name (e.g. baton. or ha.example.com.)", c.DNS.Zone)
	}
	switch ttl := c.DNS.TTL.D(); {
	case ttl < 0:
		errs.add("dns.ttl", "%v is negative; use e.g. 1s", ttl)
	case ttl%time.Second != 0:
		errs.add("dns.ttl", "%v is not a whole number of seconds (DNS TTLs count seconds); use e.g. 1s", ttl)
	}
}

func (c *Config) validateGroups(errs *Errors) {
	nodes := map[string]*Node{}
	nodeAddrs := map[netip.Addr]string{}
	for i := range c.Nodes {
		nodes[c.Nodes[i].Name] = &c.Nodes[i]
		if a, err := netip.ParseAddr(c.Nodes[i].Address); err == nil {
			nodeAddrs[a] = c.Nodes[i].Name
		}
	}
	haveDNSServer := c.DNS.Listen != "" || slices.ContainsFunc(c.Nodes, func(n Node) bool { return n.DNS != "" })

	names := map[string]int{}
	vips := map[netip.Addr]string{}  // → path of its first use
	dnsNames := map[string]int{}     // → group index
	proxyListens := map[string]int{} // → group index
	for i := range c.Groups {
		g := &c.Groups[i]
		p := fmt.Sprintf("groups[%d]", i)
		switch first, dup := names[g.Name]; {
		case g.Name == "":
			errs.add(p+".name", "missing (e.g. name: web)")
		case !clusterNameRE.MatchString(g.Name):
			errs.add(p+".name", "%q is not a valid name: %s", g.Name, labelRule)
		case dup:
			errs.add(p+".name", "%q is already the name of groups[%d]", g.Name, first)
		default:
			names[g.Name] = i
		}
		if !slices.Contains([]string{"active-passive", "active-active"}, g.Mode) {
			errs.add(p+".mode", "%q is not a mode; use active-passive or active-active", g.Mode)
		}
		c.validateMembers(errs, g, p, nodes)
		if !slices.Contains([]string{"hot", "warm", "cold"}, g.Standby) {
			errs.add(p+".standby", "%q is not a standby mode; use hot, warm or cold", g.Standby)
		} else if g.Mode == ModeActiveActive && g.Standby != "hot" {
			errs.add(p+".standby", "%q does not fit active-active, where the service runs and serves on every member; use hot", g.Standby)
		}
		if g.Port < 0 || g.Port > 65535 {
			errs.add(p+".port", "%d is out of range; use the service's port, 1 to 65535", g.Port)
		}
		switch {
		case g.FailbackDelay < 0:
			errs.add(p+".failback_delay", "%v is negative; use 0 or more", g.FailbackDelay)
		case g.FailbackDelay > 0 && !g.Failback:
			errs.add(p+".failback_delay", "has no effect without failback: true")
		}
		for j, ch := range g.Checks {
			validateCheck(errs, ch, fmt.Sprintf("%s.checks[%d]", p, j))
		}

		for j, v := range g.VIPs {
			vp := fmt.Sprintf("%s.vips[%d]", p, j)
			pfx, err := netip.ParsePrefix(v.Address)
			switch {
			case v.Address == "":
				errs.add(vp+".address", "missing (want e.g. 10.0.0.100/24)")
			case err != nil:
				errs.add(vp+".address", "%q is not an IP prefix (want e.g. 10.0.0.100/24)", v.Address)
			case vips[pfx.Addr()] != "":
				errs.add(vp+".address", "%s is already used by %s; a VIP belongs to one group", pfx.Addr(), vips[pfx.Addr()])
			case nodeAddrs[pfx.Addr()] != "":
				errs.add(vp+".address", "%s is the address of node %s; a VIP must be an address no node holds", pfx.Addr(), nodeAddrs[pfx.Addr()])
			default:
				vips[pfx.Addr()] = vp
			}
			switch {
			case v.Interface == "":
				errs.add(vp+".interface", "missing (the network interface to add the address to, e.g. eth0)")
			case len(v.Interface) > 15 || strings.ContainsAny(v.Interface, "/ \t\n"):
				errs.add(vp+".interface", "%q is not an interface name (at most 15 characters, no '/' or spaces)", v.Interface)
			}
			if r := v.Refresh.D(); r != 0 && r < time.Second {
				errs.add(vp+".refresh", "%v is too often; use 0 (takeover only) or at least 1s", r)
			}
		}

		if g.DNS != nil {
			switch first, dup := dnsNames[g.DNS.Name]; {
			case g.DNS.Name == "":
				errs.add(p+".dns.name", "missing (the name in dns.zone, e.g. name: %s)", nonEmpty(g.Name, "web"))
			case !validDomain(g.DNS.Name):
				errs.add(p+".dns.name", "%q is not a DNS name relative to the zone (e.g. web)", g.DNS.Name)
			case dup:
				errs.add(p+".dns.name", "%q is already the DNS name of groups[%d]", g.DNS.Name, first)
			default:
				dnsNames[g.DNS.Name] = i
			}
			if !haveDNSServer {
				errs.add(p+".dns", "no DNS server serves it; set dns.listen (or nodes[].dns)")
			}
		}

		if px := g.Proxy; px != nil {
			switch first, dup := proxyListens[px.Listen]; {
			case px.Listen == "":
				errs.add(p+".proxy.listen", "missing (e.g. listen: \":9080\")")
			case !validHostPort(px.Listen, false):
				errs.add(p+".proxy.listen", "%q is not host:port (e.g. \":9080\")", px.Listen)
			case dup:
				errs.add(p+".proxy.listen", "%q is already the proxy listener of groups[%d]", px.Listen, first)
			default:
				proxyListens[px.Listen] = i
			}
			if px.Port < 1 || px.Port > 65535 {
				errs.add(p+".proxy.port", "%d is out of range; use the service's port, 1 to 65535", px.Port)
			}
			if px.MaxConnections < 0 {
				errs.add(p+".proxy.max_connections", "%d is negative; use 0 for the default (4096)", px.MaxConnections)
			}
			if t := px.IdleTimeout.D(); t < 0 || (t > 0 && t < time.Second) {
				errs.add(p+".proxy.idle_timeout", "%v: use 0 (never) or at least 1s, longer than the service's quietest normal pause", px.IdleTimeout)
			}
		}

		if s := g.Service; s != nil {
			sp := p + ".service"
			switch {
			case len(s.Run) == 0 && len(s.Start) == 0:
				errs.add(sp, "nothing to run; set run (a process Baton supervises) or start (a command that starts it)")
			case len(s.Run) > 0 && len(s.Start) > 0:
				errs.add(sp+".start", "set either run (a process Baton supervises) or start (a command that starts it), not both")
			}
			for _, a := range []struct {
				name string
				argv []string
			}{{"run", s.Run}, {"start", s.Start}, {"stop", s.Stop}, {"status", s.Status}, {"promote", s.Promote}, {"demote", s.Demote}} {
				validateArgv(errs, a.argv, sp+"."+a.name)
			}
			if s.StartTimeout <= 0 {
				errs.add(sp+".start_timeout", "%v must be above 0 (e.g. 30s)", s.StartTimeout)
			}
			if s.StopTimeout <= 0 {
				errs.add(sp+".stop_timeout", "%v must be above 0 (e.g. 10s)", s.StopTimeout)
			}
		}

		h := g.Hooks
		validateArgv(errs, h.Active, p+".hooks.active")
		validateArgv(errs, h.Standby, p+".hooks.standby")
		validateArgv(errs, h.Fault, p+".hooks.fault")
		validateArgv(errs, h.Notify, p+".hooks.notify")
		if h.Timeout <= 0 {
			errs.add(p+".hooks.timeout", "%v must be above 0 (e.g. 10s)", h.Timeout)
		}

		if dr := g.Driver; dr != nil {
			validateDriver(errs, g, p+".driver")
		}
	}
}

func (c *Config) validateMembers(errs *Errors, g *Group, p string, nodes map[string]*Node) {
	if len(g.Members) == 0 {
		errs.add(p+".members", "no members; add at least one, e.g. [{node: %s, priority: 100}]", nonEmpty(c.firstServiceNode(), "n1"))
		return
	}
	seen := map[string]int{}
	for j, m := range g.Members {
		mp := fmt.Sprintf("%s.members[%d]", p, j)
		n := nodes[m.Node]
		switch first, dup := seen[m.Node]; {
		case m.Node == "":
			errs.add(mp+".node", "missing (known: %s)", c.knownNodes())
		case n == nil:
			errs.add(mp+".node", "unknown node %q (known: %s)", m.Node, c.knownNodes())
		case n.Witness:
			errs.add(mp+".node", "%q is a witness; witnesses vote but never own a group", m.Node)
		case dup:
			errs.add(mp+".node", "%q is already members[%d]", m.Node, first)
		default:
			seen[m.Node] = j
		}
		if m.Priority < 1 || m.Priority > 255 {
			errs.add(mp+".priority", "%d is out of range; use 1 to 255 (higher wins; default %d)", m.Priority, DefaultPriority)
		}
	}
}

func (c *Config) firstServiceNode() string {
	for _, n := range c.Nodes {
		if !n.Witness {
			return n.Name
		}
	}
	return ""
}

func validateCheck(errs *Errors, ch Check, p string) {
	// unused names the fields given that only other check types read.
	unused := func(field string, set bool, users string) {
		if set {
			errs.add(p+"."+field, "a %s check does not use %s (only %s checks do)", ch.Type, field, users)
		}
	}
	switch ch.Type {
	case "tcp":
		switch {
		case ch.Address == "":
			errs.add(p+".address", "missing (a tcp check needs e.g. address: 127.0.0.1:5432)")
		case !validHostPort(ch.Address, false):
			errs.add(p+".address", "%q is not host:port (e.g. 127.0.0.1:5432)", ch.Address)
		}
		unused("url", ch.URL != "", "http")
		unused("command", len(ch.Command) > 0, "exec")
	case "http":
		u, err := url.Parse(ch.URL)
		switch {
		case ch.URL == "":
			errs.add(p+".url", "missing (an http check needs e.g. url: http://127.0.0.1:8080/healthz)")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs.add(p+".url", "%q is not an http or https URL (e.g. http://127.0.0.1:8080/healthz)", ch.URL)
		}
		unused("address", ch.Address != "", "tcp")
		unused("command", len(ch.Command) > 0, "exec")
	case "exec":
		if len(ch.Command) == 0 {
			errs.add(p+".command", "missing (an exec check needs an argv list, e.g. command: [/usr/local/bin/check-web, --quick])")
		}
		validateArgv(errs, ch.Command, p+".command")
		unused("url", ch.URL != "", "http")
		unused("address", ch.Address != "", "tcp")
	case "":
		errs.add(p+".type", "missing; use tcp, http or exec")
	default:
		errs.add(p+".type", "%q is not a check type; use tcp, http or exec", ch.Type)
	}
	if ch.Type != "http" && ch.Type != "" {
		unused("expect_status", ch.ExpectStatus != "", "http")
		unused("body_contains", ch.BodyContains != "", "http")
		unused("tls_skip_verify", ch.TLSSkipVerify, "http")
	}
	if ch.ExpectStatus != "" {
		if _, _, ok := ParseStatusRange(ch.ExpectStatus); !ok {
			errs.add(p+".expect_status", "%q is not a status or range (e.g. 200 or 200-399)", ch.ExpectStatus)
		}
	}
	if ch.Interval.D() < MinCheckInterval {
		errs.add(p+".interval", "%v is too short; use at least %v", ch.Interval, MinCheckInterval)
	}
	switch {
	case ch.Timeout <= 0:
		errs.add(p+".timeout", "%v must be above 0 (e.g. 1s)", ch.Timeout)
	case ch.Timeout > ch.Interval && ch.Interval > 0:
		errs.add(p+".timeout", "%v is longer than the interval %v: a check runs once per interval, so a hung one would hold up the next; use at most %v", ch.Timeout, ch.Interval, ch.Interval)
	}
	if ch.Fall < 1 {
		errs.add(p+".fall", "%d must be at least 1 (failures in a row that make the service unhealthy)", ch.Fall)
	}
	if ch.Rise < 1 {
		errs.add(p+".rise", "%d must be at least 1 (successes in a row that make it healthy again)", ch.Rise)
	}
}

func validateDriver(errs *Errors, g *Group, p string) {
	dr := g.Driver
	use := orList(DriverTypes)
	switch {
	case slices.Contains(DriverTypes, dr.Type):
	case dr.Type == "":
		errs.add(p+".type", "missing; use %s", use)
	case slices.Contains(plannedDriverTypes, dr.Type):
		errs.add(p+".type", "the %s driver is not available yet; use %s", dr.Type, use)
	default:
		errs.add(p+".type", "%q is not a driver; use %s", dr.Type, use)
	}
	if g.Mode == "active-active" {
		errs.add(p, "a data driver needs mode active-passive (one writable primary), not active-active")
	}
	if g.Standby != "warm" && g.Mode != ModeActiveActive {
		errs.add(p, "a data driver runs its standbys as replicas: set standby: warm (or leave it out), not %q", g.Standby)
	}
	if g.Service != nil {
		errs.add(p, "a group with a driver has the driver run its database; remove service (or the driver)")
	}
	if dr.Type == "postgres" {
		if dr.DataDir == "" {
			errs.add(p+".data_dir", "missing (the PostgreSQL data directory, e.g. /var/lib/postgresql/15/baton)")
		}
		if dr.BinDir == "" {
			errs.add(p+".bin_dir", "missing (the PostgreSQL binaries, e.g. /usr/lib/postgresql/15/bin)")
		}
		if dr.Superuser == nil {
			errs.add(p+".superuser", "missing (user and password_file of a PostgreSQL superuser the agent connects as)")
		}
		if dr.Replication == nil {
			errs.add(p+".replication", "missing (user and password_file of the replication user standbys stream as)")
		}
		switch {
		case dr.SSLMode != "" && !slices.Contains(SSLModes, dr.SSLMode):
			errs.add(p+".ssl_mode", "%q is not an sslmode; use %s", dr.SSLMode, orList(SSLModes))
		case (dr.SSLMode == "verify-ca" || dr.SSLMode == "verify-full") && dr.SSLRootCert == "":
			errs.add(p+".ssl_root_cert", "missing: ssl_mode %s checks the servers' certificates against this CA file (PEM), e.g. /etc/baton/pg-ca.pem", dr.SSLMode)
		}
		for j, n := range dr.ClientNetworks {
			if _, err := netip.ParsePrefix(n); err != nil {
				errs.add(fmt.Sprintf("%s.client_networks[%d]", p, j), "%q is not a network (e.g. 10.0.0.0/24, or 10.0.0.50/32 for one host)", n)
			}
		}
	} else {
		if dr.SSLMode != "" {
			errs.add(p+".ssl_mode", "only the postgres driver connects members to each other; remove it")
		}
		if dr.SSLRootCert != "" {
			errs.add(p+".ssl_root_cert", "only the postgres driver connects members to each other; remove it")
		}
		if len(dr.ClientNetworks) > 0 {
			errs.add(p+".client_networks", "only the postgres driver writes pg_hba.conf; remove it")
		}
	}
	if dr.Type == "redis" && dr.DataDir == "" {
		errs.add(p+".data_dir", "missing (the Redis data directory the driver keeps its config, state and dump in, e.g. /var/lib/baton/redis)")
	}
	if !slices.Contains([]string{"", "off", "on", "strict"}, dr.Sync) {
		errs.add(p+".sync", "%q is not a sync mode; use off, on or strict", dr.Sync)
	}
	if dr.MaxLag != "" {
		if _, err := ParseSize(dr.MaxLag); err != nil {
			errs.add(p+".max_lag", "%v", err)
		}
	}
	if dr.Port < 0 || dr.Port > 65535 {
		errs.add(p+".port", "%d is out of range; use 1 to 65535 (or leave it out for the driver's default)", dr.Port)
	}
	for _, cr := range []struct {
		name string
		c    *Credential
	}{{"superuser", dr.Superuser}, {"replication", dr.Replication}} {
		if cr.c != nil && cr.c.User == "" {
			errs.add(p+"."+cr.name+".user", "missing")
		}
	}
	keys := make([]string, 0, len(dr.Commands))
	for k := range dr.Commands {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(DriverOperations, k) {
			errs.add(p+".commands."+k, "%q is not a driver operation; use %s", k, strings.Join(DriverOperations, ", "))
			continue
		}
		validateArgv(errs, dr.Commands[k], p+".commands."+k)
	}
	if dr.Type == "exec" && len(dr.Commands["state"]) == 0 {
		errs.add(p+".commands.state", "missing: the exec driver needs a state command (it prints e.g. \"role=primary timeline=1 lsn=0/3000060\")")
	}
}

// validateArgv checks a command given as an argv list: commands run without a shell, so the first element is the
// program.
func validateArgv(errs *Errors, argv []string, p string) {
	if len(argv) > 0 && strings.TrimSpace(argv[0]) == "" {
		errs.add(p+"[0]", "empty program name; the first element is the program to run (there is no shell)")
	}
}

const labelRule = "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"

func validHostPort(s string, needHost bool) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || (needHost && host == "") || strings.ContainsAny(host, " \t/") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// validDomain reports whether s (no trailing dot) is a lowercase domain name.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ParseStatusRange parses an expect_status value: "200" or "200-399" (100..599).
func ParseStatusRange(s string) (lo, hi int, ok bool) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

// ParseSize parses a byte size such as "1MB" for driver.max_lag. Units are binary, as in PostgreSQL and Redis:
// B, kB (KiB) = 1024, MB (MiB) = 1024², GB (GiB) = 1024³, TB (TiB) = 1024⁴; case does not matter; no unit means
// bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	shift, ok := map[string]uint{"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20, "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}[unit]
	if err != nil || !ok || n > (1<<63-1)>>shift {
		return 0, fmt.Errorf("%q is not a size (e.g. 0, 512kB or 16MB)", s)
	}
	return n << shift, nil
}

func orList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

func nonEmpty(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// validateWire refuses a config whose heartbeats the wire cannot carry. A
// heartbeat larger than one packet is split (cluster.EncodeParts), but into
// at most cluster.MaxParts packets: a node whose heartbeat cannot be sent
// looks dead to its peers, so every group would go unserved, silently. It
// sizes the largest heartbeat each node could send (core.WorstHeartbeat).
func (c *Config) validateWire(errs *Errors) {
	spec := c.CoreSpec()
	for _, n := range c.Nodes {
		size, packets, err := cluster.PacketSize(n.Name, core.WorstHeartbeat(spec, n.Name))
		switch {
		case err != nil:
			errs.add("groups", "node %s's heartbeat cannot be encoded: %v; use shorter group and node names", n.Name, err)
		case packets > cluster.MaxParts:
			errs.add("groups", "node %s's heartbeat could need %d packets (%d bytes), over the %d one heartbeat may be split into (%d units: each group, and each VIP of an active-active group); use fewer groups or active-active VIPs, or shorter group and node names",
				n.Name, packets, size, cluster.MaxParts, len(spec.Units))
		default:
			continue
		}
		return // one message says it; every node would say the same
	}
}
