package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
)

// Files baton init writes, relative to --dir; the config names the secret
// and the token relative to itself, so the three stay together wherever they
// are copied.
const (
	initConfigFile = "baton.yaml"
	initSecretFile = "secret"
	initTokenFile  = "api-token"
	// initSecretBytes of randomness in the cluster secret and the API token
	// (base64: 44 characters), at least the 32 bytes the agent asks for.
	initSecretBytes = 32
	// ExampleMarker is on the first line of the example config the packages
	// install as /etc/baton/baton.yaml: init replaces a file that has it
	// without --force (it holds no cluster yet).
	ExampleMarker = "# baton: example config"
	// initRemoteDir is where the printed commands put the files on every
	// node: where the systemd unit and the CLI look by default.
	initRemoteDir = "/etc/baton"
)

// initSpec is what the flags of baton init describe.
type initSpec struct {
	Cluster, Group, Profile string
	Nodes, Witnesses        []initNode
	VIPs                    []initVIP
	Checks                  []initCheck
}

type initNode struct {
	Flag          string // "--node n1=10.0.0.11", for messages
	Name, Address string
	Witness       bool
}

type initVIP struct {
	Flag, Prefix, Interface string
}

type initCheck struct {
	Flag, Type, Target string // Type http (Target: URL) or tcp (Target: host:port)
}

func newInitCmd() *cobra.Command {
	var (
		spec                   initSpec
		nodes, witnesses, vips []string
		checks                 []string
		dir, owner             string
		force                  bool
	)
	cmd := &cobra.Command{
		Use:   "init --cluster NAME --node NAME=ADDRESS... [--witness NAME=ADDRESS] [--vip CIDR@IFACE] [--check URL]",
		Short: "Write the config, secret and API token for a new cluster, and say how to start it",
		Long: `Write a commented cluster config (baton.yaml), a random cluster secret
(secret, 32 random bytes, mode 0600) and an API token (api-token, mode 0600)
into --dir, then print the exact commands that copy them to every node,
check them there and start the agents.

--node names a service node (a member of the group, in order of preference:
the first gets the highest priority); --witness a node that only votes. A
quorum needs at least three voting nodes: two service nodes and a witness is
the smallest cluster. --vip adds a virtual IP that moves with the group's
owner (ADDRESS/PREFIX@INTERFACE); --check a health check the owner must pass
(an http:// or https:// URL, or tcp://HOST:PORT).

What it writes passes 'baton check-config'. The host-local checks (the node's
address is on this host, the VIP's interface exists, data_dir is writable)
can only pass on each node: run 'baton check-config --node NAME' there.`,
		Example: `  baton init --cluster prod --node n1=10.0.0.11 --node n2=10.0.0.12 \
    --witness w1=10.0.0.13 --vip 10.0.0.100/24@eth0 --check http://127.0.0.1:8080/healthz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := spec.parse(nodes, witnesses, vips, checks); err != nil {
				return err
			}
			uid, gid, ownerName, err := initOwner(owner, cmd.Flags().Changed("owner"))
			if err != nil {
				return err
			}
			if err := writeInit(dir, spec, force, uid, gid); err != nil {
				return err
			}
			printInitNext(cmd.OutOrStdout(), dir, spec, ownerName)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Cluster, "cluster", "", "cluster name (lowercase letters, digits and '-')")
	f.StringArrayVar(&nodes, "node", nil, "a service node, NAME=ADDRESS (repeat; first = preferred owner)")
	f.StringArrayVar(&witnesses, "witness", nil, "a vote-only node, NAME=ADDRESS (repeat)")
	f.StringArrayVar(&vips, "vip", nil, "a virtual IP of the group, ADDRESS/PREFIX@INTERFACE (repeat)")
	f.StringArrayVar(&checks, "check", nil, "a health check of the group: http(s)://... URL or tcp://HOST:PORT (repeat)")
	f.StringVar(&spec.Group, "group", "web", "name of the group (the service that fails over)")
	f.StringVar(&spec.Profile, "profile", "default", "timing profile: default, fast or wan")
	f.StringVar(&dir, "dir", initRemoteDir, "directory to write baton.yaml, secret and api-token into")
	f.StringVar(&owner, "owner", "", "user that owns the secret and the token, the one the agent runs as (default: you; the packaged unit runs it as root)")
	f.BoolVar(&force, "force", false, "overwrite files that already exist in --dir")
	return cmd
}

// parse checks the flags and fills spec; every refusal names the flag.
func (s *initSpec) parse(nodes, witnesses, vips, checks []string) error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if s.Cluster == "" {
		bad("--cluster: missing; name the cluster, e.g. --cluster prod")
	}
	if len(nodes) == 0 {
		bad("--node: give the service nodes, e.g. --node n1=10.0.0.11 --node n2=10.0.0.12")
	}
	names, addrs := map[string]string{}, map[netip.Addr]string{}
	parseNode := func(flag, v string, witness bool) {
		full := flag + " " + v
		name, addr, ok := strings.Cut(v, "=")
		if !ok || name == "" || addr == "" {
			bad("%s: want NAME=ADDRESS, e.g. %s n1=10.0.0.11", full, flag)
			return
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			bad("%s: %q is not an IP address", full, addr)
			return
		}
		if prev, dup := names[name]; dup {
			bad("%s: node name %q is given twice (also %s)", full, name, prev)
			return
		}
		if prev, dup := addrs[ip]; dup {
			bad("%s: address %s is given twice (also %s); every node needs its own", full, ip, prev)
			return
		}
		names[name], addrs[ip] = full, full
		n := initNode{Flag: full, Name: name, Address: ip.String(), Witness: witness}
		if witness {
			s.Witnesses = append(s.Witnesses, n)
		} else {
			s.Nodes = append(s.Nodes, n)
		}
	}
	for _, v := range nodes {
		parseNode("--node", v, false)
	}
	for _, v := range witnesses {
		parseNode("--witness", v, true)
	}
	if voters := len(s.Nodes) + len(s.Witnesses); len(errs) == 0 && voters < 3 {
		hint := "add --witness w1=ADDRESS (a node that only votes)"
		if len(s.Nodes) < 2 {
			hint = "add --node or --witness"
		}
		bad("only %d voting node(s): a quorum needs at least 3 (two voters cannot decide a partition); %s", voters, hint)
	}
	for _, v := range vips {
		full := "--vip " + v
		prefix, iface, ok := strings.Cut(v, "@")
		if !ok || iface == "" {
			bad("%s: name the interface the VIP goes on, e.g. --vip %s@eth0", full, prefix)
			continue
		}
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			bad("%s: %q is not ADDRESS/PREFIX (e.g. 10.0.0.100/24, the prefix length as on the interface)", full, prefix)
			continue
		}
		if prev, dup := addrs[p.Addr()]; dup {
			bad("%s: %s is also a node's address (%s); a VIP must be an address of its own", full, p.Addr(), prev)
			continue
		}
		s.VIPs = append(s.VIPs, initVIP{Flag: full, Prefix: p.String(), Interface: iface})
	}
	for _, v := range checks {
		full := "--check " + v
		u, err := url.Parse(v)
		switch {
		case err != nil:
			bad("%s: want an http:// or https:// URL (e.g. http://127.0.0.1:8080/healthz) or tcp://HOST:PORT (%v)", full, err)
		case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
			s.Checks = append(s.Checks, initCheck{Flag: full, Type: "http", Target: v})
		case u.Scheme == "tcp" && u.Host != "" && u.Port() != "" && (u.Path == "" || u.Path == "/"):
			s.Checks = append(s.Checks, initCheck{Flag: full, Type: "tcp", Target: u.Host})
		default:
			bad("%s: want an http:// or https:// URL (e.g. http://127.0.0.1:8080/healthz) or tcp://HOST:PORT", full)
		}
	}
	if len(errs) > 0 {
		return usageError("init: %s", strings.Join(errs, "\ninit: "))
	}
	return nil
}

// render is the commented cluster file for s.
func (s *initSpec) render() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	// l writes a line with its comment in the column of the others.
	l := func(text, comment string) {
		if comment == "" {
			b.WriteString(text + "\n")
			return
		}
		fmt.Fprintf(&b, "%-38s # %s\n", text, comment)
	}
	w(`# Baton cluster %q, written by baton init. Every node runs the agent with this same
# file and picks its own entry with --node NAME (default: the entry named like the host).
# Check it on each node with: baton check-config --config %s/%s --node NAME
# Every setting, explained: man baton, and internal/config/testdata/example.yaml in the source.
version: 1

cluster:
`, s.Cluster, initRemoteDir, initConfigFile)
	l("  name: "+s.Cluster, "")
	l("  secret_file: "+initSecretFile, "relative to this file; the same 0600 file on every node")
	l("  profile: "+s.Profile, "default (LAN, sub-second) | fast (quiet LAN) | wan (cross-zone)")
	l(fmt.Sprintf("  port: %d", config.DefaultPort), "UDP heartbeats and TCP quorum traffic, on every node's address")
	w(`
# Every node votes in the quorum; a witness votes but never owns a group. Each node's HTTP API
# and metrics listen on <address>:%d; its data lives in /var/lib/baton/%s/<node>.
nodes:
`, config.DefaultAPIPort, s.Cluster)
	for _, n := range append(append([]initNode{}, s.Nodes...), s.Witnesses...) {
		if n.Witness {
			l(fmt.Sprintf("  - {name: %s, address: %s, witness: true}", n.Name, n.Address), "")
		} else {
			l(fmt.Sprintf("  - {name: %s, address: %s}", n.Name, n.Address), "")
		}
	}
	w("\napi:\n")
	l("  token_file: "+initTokenFile, "switchover and maintenance need it; the CLI reads it from here")
	w("\ngroups:\n")
	l("  - name: "+s.Group, "the service that fails over")
	l("    members:", "the healthy member with the highest priority owns the group")
	for i, n := range s.Nodes {
		l(fmt.Sprintf("      - {node: %s, priority: %d}", n.Name, max(150-10*i, 1)), "")
	}
	l("    failback: false", "true: hand the group back to a returning higher-priority member")
	if len(s.Checks) > 0 {
		l("    checks:", "a member whose checks fail gives the group up")
		for _, c := range s.Checks {
			if c.Type == "http" {
				l(fmt.Sprintf("      - {type: http, url: %q, interval: 1s, timeout: 500ms, fall: 3, rise: 2}", c.Target), "")
			} else {
				l(fmt.Sprintf("      - {type: tcp, address: %q, interval: 1s, timeout: 500ms, fall: 3, rise: 2}", c.Target), "")
			}
		}
	} else {
		l(`    # checks: [{type: http, url: "http://127.0.0.1:8080/healthz", interval: 1s}]`, "")
	}
	if len(s.VIPs) > 0 {
		l("    vips:", "addresses that move with the owner")
		for _, v := range s.VIPs {
			l(fmt.Sprintf("      - {address: %s, interface: %s}", v.Prefix, v.Interface), "")
		}
	} else {
		l("    # vips: [{address: 10.0.0.100/24, interface: eth0}]", "")
	}
	w(`    # Hooks run on every change of role (argv, no shell), with BATON_GROUP, BATON_ROLE, BATON_EPOCH, ...:
    # hooks: {active: [/etc/baton/on-active], standby: [/etc/baton/on-standby]}
`)
	return b.String()
}

// writeInit writes the three files into dir. It writes them into a fresh
// directory beside them first and loads the config from there, so that a
// config check-config would refuse is never left behind, then moves them in.
func writeInit(dir string, s initSpec, force bool, uid, gid int) error {
	if !force {
		for _, f := range []string{initConfigFile, initSecretFile, initTokenFile} {
			if f == initConfigFile && isExampleConfig(filepath.Join(dir, f)) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				return &exitError{code: exitRefused, msg: fmt.Sprintf("init: %s already exists; not overwriting a cluster's files (move them away, or pass --force)", filepath.Join(dir, f))}
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("init: --dir: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".baton-init-")
	if err != nil {
		return fmt.Errorf("init: --dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	secret, err := randomToken()
	if err != nil {
		return err
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	files := []struct {
		name    string
		data    string
		mode    os.FileMode
		private bool
	}{
		{initConfigFile, s.render(), 0o644, false},
		{initSecretFile, secret + "\n", 0o600, true},
		{initTokenFile, token + "\n", 0o600, true},
	}
	for _, f := range files {
		p := filepath.Join(tmp, f.name)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // whatever the umask
			return fmt.Errorf("init: %w", err)
		}
		if f.private && uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				return fmt.Errorf("init: giving %s to the agent's user: %w", f.name, err)
			}
		}
	}
	if _, err := config.Load(filepath.Join(tmp, initConfigFile)); err != nil {
		return usageError("init: the config written from these flags does not pass check-config:\n%v", s.blame(err))
	}
	for _, f := range files {
		if err := os.Rename(filepath.Join(tmp, f.name), filepath.Join(dir, f.name)); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	return nil
}

// isExampleConfig reports whether path is the packages' example config
// (its first line is ExampleMarker), which init may replace.
func isExampleConfig(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, len(ExampleMarker))
	_, err = io.ReadFull(f, b)
	return err == nil && string(b) == ExampleMarker
}

// blame prefixes each config problem with the flag it came from.
func (s *initSpec) blame(err error) string {
	var es config.Errors
	if !errors.As(err, &es) {
		return err.Error()
	}
	flags := map[string]string{"cluster.name": "--cluster " + s.Cluster, "cluster.profile": "--profile " + s.Profile, "groups[0].name": "--group " + s.Group}
	for i, n := range append(append([]initNode{}, s.Nodes...), s.Witnesses...) {
		flags[fmt.Sprintf("nodes[%d]", i)] = n.Flag
	}
	for i, v := range s.VIPs {
		flags[fmt.Sprintf("groups[0].vips[%d]", i)] = v.Flag
	}
	for i, c := range s.Checks {
		flags[fmt.Sprintf("groups[0].checks[%d]", i)] = c.Flag
	}
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
		for p, flag := range flags {
			if e.Path == p || strings.HasPrefix(e.Path, p+".") {
				lines[i] = flag + ": " + e.Error()
				break
			}
		}
	}
	return strings.Join(lines, "\n")
}

// randomToken is initSecretBytes from the system's CSPRNG, base64.
func randomToken() (string, error) {
	b := make([]byte, initSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("init: reading random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// initOwner is who gets the secret and the token: --owner (for an agent
// run as another user through a unit drop-in), else the caller (uid -1: no
// chown). The packaged unit runs the agent as root.
func initOwner(name string, given bool) (uid, gid int, owner string, err error) {
	if !given {
		return -1, -1, "", nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, "", usageError("init: --owner %s: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, name, nil
}

// printInitNext prints what to run next: copy the files to every node, check
// them there, start the agents.
func printInitNext(out io.Writer, dir string, s initSpec, owner string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	all := append(append([]initNode{}, s.Nodes...), s.Witnesses...)
	cfg := filepath.Join(abs, initConfigFile)
	sec, tok := filepath.Join(abs, initSecretFile), filepath.Join(abs, initTokenFile)
	who := "you"
	if owner != "" {
		who = owner
	}
	fmt.Fprintf(out, "wrote %s, %s (mode 0600, owner %s) and %s (mode 0600, owner %s)\n\n", cfg, sec, who, tok, who)
	fmt.Fprintf(out, "0. Install baton on every node (the .deb or .rpm: the binary, the systemd unit, the man pages).\n\n")
	fmt.Fprintf(out, "1. Copy them to %s on every node (scp -p keeps the secret's mode 0600: the agent refuses a secret others can read):\n", initRemoteDir)
	local := localAddrs()
	for _, n := range all {
		if local[n.Address] {
			if abs != initRemoteDir {
				fmt.Fprintf(out, "   # %s is this host:\n", n.Name)
				fmt.Fprintf(out, "   install -d -m 755 %s && install -m 644 %s %s/ && install -m 600 %s %s %s/\n", initRemoteDir, cfg, initRemoteDir, sec, tok, initRemoteDir)
			} else {
				fmt.Fprintf(out, "   # %s is this host: nothing to copy\n", n.Name)
			}
			continue
		}
		fmt.Fprintf(out, "   ssh root@%s install -d -m 755 %s\n", n.Address, initRemoteDir)
		fmt.Fprintf(out, "   scp -p %s %s %s root@%s:%s/\n", cfg, sec, tok, sshHost(n.Address), initRemoteDir)
	}
	fmt.Fprintf(out, "\n2. Check the config on each node (this also checks what only that host can tell: its address, the VIP's interface, data_dir):\n")
	for _, n := range all {
		fmt.Fprintf(out, "   ssh root@%s baton check-config --config %s/%s --node %s\n", n.Address, initRemoteDir, initConfigFile, n.Name)
	}
	fmt.Fprintf(out, "\n3. Start the agents (--no-block: an agent is ready only once a quorum has formed, so the first one waits for the second):\n")
	for _, n := range all {
		fmt.Fprintf(out, "   ssh root@%s systemctl enable --now --no-block baton\n", n.Address)
	}
	fmt.Fprintf(out, "   (without systemd: baton agent --config %s/%s --node NAME on each node)\n", initRemoteDir, initConfigFile)
	fmt.Fprintf(out, "   If a node's host name is not its node name, add --node NAME to the unit first: systemctl edit baton\n")
	fmt.Fprintf(out, "\n4. Watch it: baton status (on any node), baton history, http://%s:%d/ui/\n", sshHost(all[0].Address), config.DefaultAPIPort)
}

// sshHost brackets an IPv6 address for scp and URLs.
func sshHost(addr string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]"
	}
	return addr
}

// localAddrs are this host's interface addresses.
func localAddrs() map[string]bool {
	m := map[string]bool{}
	as, err := net.InterfaceAddrs()
	if err != nil {
		return m
	}
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr().String()] = true
		}
	}
	return m
}
