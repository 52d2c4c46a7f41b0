package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// interfaceByName is net.InterfaceByName, replaceable in tests.
var interfaceByName = net.InterfaceByName

// CheckHost runs the checks that depend on the host node runs on, which Validate cannot: every VIP interface of
// the groups node is a member of exists here, the API's certificate, key and CA load (api.tls), and node's data_dir
// exists and is writable or can be created. (check-config --node and the agent also build each driver, which
// reads its password files under ReadSecretFile's rules.) It
// writes (and removes) a probe file to test writability, because permission bits alone do not tell (read-only
// mounts, ACLs, root).
func CheckHost(c *Config, node string) Errors {
	var errs Errors
	ni := -1
	for i := range c.Nodes {
		if c.Nodes[i].Name == node {
			ni = i
		}
	}
	if ni < 0 {
		errs.add("", "unknown node %q (known: %s)", node, c.knownNodes())
		return errs
	}
	if err := checkLocalAddress(c.Nodes[ni].Address); err != nil {
		errs.add(fmt.Sprintf("nodes[%d].address", ni), "%v; is this node %s? pass the right --node", err, node)
	}
	for i := range c.Groups {
		g := &c.Groups[i]
		if _, ok := g.Member(node); !ok {
			continue
		}
		for j, v := range g.VIPs {
			if v.Interface == "" {
				continue // Validate reports it
			}
			ifc, err := interfaceByName(v.Interface)
			if err != nil {
				errs.add(fmt.Sprintf("groups[%d].vips[%d].interface", i, j), "no interface %q on this host", v.Interface)
				continue
			}
			if err := checkVIPSubnet(ifc, v.Address); err != nil {
				errs.add(fmt.Sprintf("groups[%d].vips[%d].address", i, j), "%v", err)
			}
		}
		for _, prog := range programsOf(g, fmt.Sprintf("groups[%d]", i)) {
			if err := checkProgram(prog.argv[0]); err != nil {
				errs.add(prog.path+"[0]", "%v", err)
			}
		}
	}
	if t := c.API.TLS; t != nil && t.CertFile != "" && t.KeyFile != "" {
		var es Errors
		if _, err := t.ServerConfig(node); errors.As(err, &es) {
			errs = append(errs, es...)
		}
		if _, err := t.ClientConfig(node); errors.As(err, &es) && t.CAFile != "" {
			errs = append(errs, es...) // without ca_file the pinned cert_file was judged above
		}
	}
	if dir := c.Nodes[ni].DataDir; dir != "" {
		if err := checkWritableDir(dir); err != nil {
			errs.add(fmt.Sprintf("nodes[%d].data_dir", ni), "%v", err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkWritableDir checks that dir is a writable directory, or that its nearest existing ancestor is one (so the
// agent can create it).
func checkWritableDir(dir string) error {
	d := filepath.Clean(dir)
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				if d == filepath.Clean(dir) {
					return fmt.Errorf("%s is not a directory", dir)
				}
				return fmt.Errorf("cannot create %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("cannot use %s: %v", dir, pathErr(err))
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("cannot create %s: no existing parent directory", dir)
		}
		d = parent
	}
	f, err := os.CreateTemp(d, ".baton-check-*")
	if err != nil {
		if d == filepath.Clean(dir) {
			return fmt.Errorf("%s is not writable: %v", dir, pathErr(err))
		}
		return fmt.Errorf("cannot create %s: %s is not writable: %v", dir, d, pathErr(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

// interfaceAddrs is (*net.Interface).Addrs and net.InterfaceAddrs, replaceable in tests.
var (
	interfaceAddrs = func(ifc *net.Interface) ([]net.Addr, error) { return ifc.Addrs() }
	hostAddrs      = net.InterfaceAddrs
)

// checkLocalAddress: the node's address must be one of this host's (or lie in
// a loopback network, where every address is local): an agent started with
// the wrong --node would otherwise bind nothing or impersonate another node.
func checkLocalAddress(address string) error {
	a, err := netip.ParseAddr(address)
	if err != nil {
		return nil // Validate reports it
	}
	addrs, err := hostAddrs()
	if err != nil {
		return fmt.Errorf("cannot list this host's addresses: %v", err)
	}
	var have []string
	for _, ad := range addrs {
		p, ok := prefixOf(ad)
		if !ok {
			continue
		}
		if p.Addr() == a.Unmap() || (p.Addr().IsLoopback() && p.Contains(a.Unmap())) {
			return nil
		}
		have = append(have, p.Addr().String())
	}
	return fmt.Errorf("%s is not an address of this host (it has %s)", address, strings.Join(have, ", "))
}

// checkVIPSubnet: a VIP must lie in one of its interface's networks, or the
// gratuitous ARP announces an address nobody on that segment routes to.
func checkVIPSubnet(ifc *net.Interface, vip string) error {
	v, err := netip.ParsePrefix(vip)
	if err != nil {
		return nil // Validate reports it
	}
	addrs, err := interfaceAddrs(ifc)
	if err != nil {
		return fmt.Errorf("cannot list the addresses of %s: %v", ifc.Name, err)
	}
	var nets []string
	for _, ad := range addrs {
		p, ok := prefixOf(ad)
		if !ok || p.Addr().Is4() != v.Addr().Is4() || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if p.Masked().Contains(v.Addr()) {
			return nil
		}
		nets = append(nets, p.Masked().String())
	}
	if len(nets) == 0 {
		return fmt.Errorf("%s has no %s network to put %s in; give it an address in the VIP's network first", ifc.Name, family(v.Addr()), vip)
	}
	return fmt.Errorf("%s is outside %s's networks (%s); use an address in one of them, or the interface that has %s's network",
		vip, ifc.Name, strings.Join(nets, ", "), v.Masked())
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func prefixOf(a net.Addr) (netip.Prefix, bool) {
	n, ok := a.(*net.IPNet)
	if !ok {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

type program struct {
	path string // field path of the argv, e.g. groups[0].hooks.active
	argv []string
}

// programsOf lists every command a member runs for g: hooks, service
// commands, exec checks and exec driver commands.
func programsOf(g *Group, p string) []program {
	var out []program
	add := func(path string, argv []string) {
		if len(argv) > 0 && argv[0] != "" {
			out = append(out, program{path, argv})
		}
	}
	add(p+".hooks.active", g.Hooks.Active)
	add(p+".hooks.standby", g.Hooks.Standby)
	add(p+".hooks.fault", g.Hooks.Fault)
	add(p+".hooks.notify", g.Hooks.Notify)
	if s := g.Service; s != nil {
		add(p+".service.run", s.Run)
		add(p+".service.start", s.Start)
		add(p+".service.stop", s.Stop)
		add(p+".service.status", s.Status)
		add(p+".service.promote", s.Promote)
		add(p+".service.demote", s.Demote)
	}
	for j, ch := range g.Checks {
		if ch.Type == "exec" {
			add(fmt.Sprintf("%s.checks[%d].command", p, j), ch.Command)
		}
	}
	if d := g.Driver; d != nil && d.Type == "exec" {
		for _, op := range DriverOperations {
			add(p+".driver.commands."+op, d.Commands[op])
		}
	}
	return out
}

// checkProgram: an absolute program must be an executable file; a bare name
// must be found on PATH (there is no shell to find it later).
func checkProgram(name string) error {
	if !filepath.IsAbs(name) {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("%q is not on PATH (%s); use the program's absolute path", name, os.Getenv("PATH"))
		}
		return nil
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %v; write it (and chmod +x) before starting the agent, or remove the entry", name, pathErr(err))
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, not a program", name)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable; chmod +x %s", name, name)
	}
	return nil
}
