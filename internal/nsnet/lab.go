// Package nsnet builds a throw-away network of Linux network namespaces — the
// namespace lab — for `baton demo --vip`, end-to-end tests, benchmarks and
// drills: a namespace "bridge" holding a Linux bridge, N host namespaces
// h1..hN and a client namespace, each wired to the bridge by a veth pair,
// addressed from 10.77.0.0/24 (and fd77::/64). It starts processes inside host
// namespaces, runs Baton on them (StartCluster), serves an in-process "who am
// I" service and observes the result from the client: a prober
// (internal/probe, dialling from the client namespace) that measures
// client-visible outages and an ARP watcher that counts how many MACs answer
// for one address.
//
// It is product code, linked into the baton binary for `baton demo --vip`.
// Fault injection (link down, nftables partitions, packet loss) is test-only
// and lives in internal/lab, which builds on this package.
//
// The lab is closed off by construction: the namespaces have no default route
// and no link to the root namespace, so traffic generated inside them cannot
// leave. The observers additionally refuse targets outside the lab prefixes.
//
// Everything the lab creates lives inside its own namespaces (veths, the
// bridge, what OnClose hooks clean up), so deleting the namespaces removes it
// all. Close does that, and also runs on SIGINT/SIGTERM; a lab whose process
// died without Close is swept by the next New (see sweepStale).
//
// New needs root and the `ip` command.
package nsnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/baton-ha/baton/internal/demo"
	"github.com/baton-ha/baton/internal/probe"
)

// The lab's address plan. Test traffic must stay inside these prefixes (or
// loopback); the observers enforce it.
var (
	Prefix4 = netip.MustParsePrefix("10.77.0.0/24")
	Prefix6 = netip.MustParsePrefix("fd77::/64")
)

// Namespace roles that are not hosts.
const (
	Client = "client"
	Bridge = "bridge"
)

// MaxHosts is the largest Options.Hosts: host i gets 10.77.0.<10+i>.
const MaxHosts = 200

const (
	ifaceName   = "eth0"
	bridgeName  = "br0"
	clientOctet = 2
	hostBase    = 10
	runDir      = "/run/batonlab" // marker files: one per live lab, holding the owner's pid
	cmdTimeout  = 30 * time.Second
)

var (
	// ErrNotRoot is returned by New when the process is not root.
	ErrNotRoot = errors.New("lab: must run as root (creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("lab: closed")
	// ErrTimeout is returned by Proc.Wait when the process is still running.
	ErrTimeout = errors.New("lab: timed out")
)

// Options configures New.
type Options struct {
	Hosts int          // number of hosts h1..hN, 1..MaxHosts
	IPv6  bool         // also give every namespace an fd77::/64 address
	Log   *slog.Logger // nil: discard
}

// Lab is a running namespace lab. Its methods may be called concurrently.
type Lab struct {
	opts   Options
	log    *slog.Logger
	prefix string   // e.g. "bl123-9f3a"; every namespace name starts with prefix+"-"
	hosts  []string // h1..hN

	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	ns      map[string]netns.NsHandle   // role → namespace handle
	nl      map[string]*netlink.Handle  // role → netlink handle in that namespace
	created []string                    // roles whose namespace exists, in creation order
	macs    map[string]net.HardwareAddr // role → MAC of its eth0
	procs   map[*Proc]struct{}
	onClose []func() error // run first by Close, newest first
	whoami  map[string]*demo.WhoamiServer
	probers map[*probe.Prober]struct{}
	watches map[*ARPWatch]struct{}
}

// New builds the lab. On error everything created so far is removed again.
func New(opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab: the \"ip\" command is required (apt-get install iproute2): %w", err)
	}
	if opts.Hosts < 1 || opts.Hosts > MaxHosts {
		return nil, fmt.Errorf("lab: Options.Hosts = %d, want 1..%d", opts.Hosts, MaxHosts)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("bl%d-%s", os.Getpid()%1000, hex.EncodeToString(rnd[:]))
	l := &Lab{
		opts:    opts,
		log:     log.With("component", "lab", "lab", prefix),
		prefix:  prefix,
		ns:      map[string]netns.NsHandle{},
		nl:      map[string]*netlink.Handle{},
		macs:    map[string]net.HardwareAddr{},
		procs:   map[*Proc]struct{}{},
		whoami:  map[string]*demo.WhoamiServer{},
		probers: map[*probe.Prober]struct{}{},
		watches: map[*ARPWatch]struct{}{},
	}
	for i := 1; i <= opts.Hosts; i++ {
		l.hosts = append(l.hosts, "h"+strconv.Itoa(i))
	}
	sweepStale(l.log)
	if err := writeMarker(prefix); err != nil {
		return nil, err
	}
	register(l)
	start := time.Now()
	if err := l.build(); err != nil {
		err = fmt.Errorf("lab: build: %w", err)
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	l.log.Info("lab up", "hosts", opts.Hosts, "ipv6", opts.IPv6, "took", time.Since(start))
	return l, nil
}

// build creates the namespaces, the bridge and one veth pair per host and the
// client.
func (l *Lab) build() error {
	roles := append([]string{Bridge, Client}, l.hosts...)
	for _, role := range roles {
		if err := l.addNS(role); err != nil {
			return err
		}
	}
	br := l.nl[Bridge]
	// The bridge namespace carries frames only; without IPv6 its ports stay
	// silent (no router solicitations or MLD reports in captures).
	if err := l.inNSRole(Bridge, func() error {
		return writeSysctls(map[string]string{
			"net/ipv6/conf/default/disable_ipv6": "1",
			"net/ipv6/conf/all/disable_ipv6":     "1",
		}, true)
	}); err != nil {
		return err
	}
	off := false
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName}, MulticastSnooping: &off}
	if err := br.LinkAdd(bridge); err != nil {
		return fmt.Errorf("add %s: %w", bridgeName, err)
	}
	if err := l.setUp(Bridge, bridgeName); err != nil {
		return err
	}
	if err := l.setUp(Bridge, "lo"); err != nil {
		return err
	}
	for _, role := range roles[1:] {
		if err := l.wire(role); err != nil {
			return fmt.Errorf("%s: %w", role, err)
		}
	}
	return nil
}

func (l *Lab) addNS(role string) error {
	name := l.nsName(role)
	if out, err := runCmd("ip", "netns", "add", name); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
	}
	l.mu.Lock()
	l.created = append(l.created, role)
	l.mu.Unlock()
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return fmt.Errorf("netlink in %s: %w", name, err)
	}
	l.mu.Lock()
	l.ns[role] = h
	l.nl[role] = nh
	l.mu.Unlock()
	return nil
}

// wire connects role's namespace to the bridge: veth "v<role>" in the bridge
// namespace, peer "eth0" inside role's namespace with a fixed MAC and the
// role's addresses.
func (l *Lab) wire(role string) error {
	// accept_dad=0 on "default" before the peer arrives, so eth0 (and its
	// link-local address) never sits in tentative state.
	sysctls := map[string]string{
		"net/ipv6/conf/default/accept_dad": "0",
		"net/ipv6/conf/all/accept_dad":     "0",
	}
	if err := l.inNSRole(role, func() error { return writeSysctls(sysctls, true) }); err != nil {
		return err
	}
	octet := l.octet(role)
	mac := net.HardwareAddr{0x02, 0x77, 0, 0, 0, byte(octet)}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: bridgePort(role)},
		PeerName:         ifaceName,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(int(l.ns[role])),
	}
	br, in := l.nl[Bridge], l.nl[role]
	if err := br.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", veth.Name, err)
	}
	port, err := br.LinkByName(veth.Name)
	if err != nil {
		return err
	}
	master, err := br.LinkByName(bridgeName)
	if err != nil {
		return err
	}
	if err := br.LinkSetMaster(port, master); err != nil {
		return fmt.Errorf("enslave %s: %w", veth.Name, err)
	}
	if err := br.LinkSetUp(port); err != nil {
		return err
	}
	if err := l.setUp(role, "lo"); err != nil {
		return err
	}
	eth, err := in.LinkByName(ifaceName)
	if err != nil {
		return err
	}
	addrs := []string{fmt.Sprintf("10.77.0.%d/24", octet)}
	if l.opts.IPv6 {
		addrs = append(addrs, fmt.Sprintf("fd77::%d/64", octet))
	}
	for _, a := range addrs {
		nla, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if nla.IP.To4() == nil {
			nla.Flags = syscall.IFA_F_NODAD
		}
		if err := in.AddrAdd(eth, nla); err != nil {
			return fmt.Errorf("addr add %s: %w", a, err)
		}
	}
	if err := in.LinkSetUp(eth); err != nil {
		return err
	}
	l.mu.Lock()
	l.macs[role] = mac
	l.mu.Unlock()
	return nil
}

func (l *Lab) setUp(role, ifname string) error {
	h, err := l.nlHandle(role)
	if err != nil {
		return err
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", role, ifname, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: %s up: %w", role, ifname, err)
	}
	return nil
}

// Close runs the OnClose hooks, stops every observer and whoami server, kills
// every process started with Start (whole process group), deletes the veths
// and the namespaces. It is idempotent: a call while another is in progress (the
// signal handler's, say) waits for it, so a test's cleanup cannot return and
// let the process exit with the lab half removed. Later calls return nil.
func (l *Lab) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.close() })
	return err
}

func (l *Lab) close() error {
	l.mu.Lock()
	l.closed = true
	probers := mapKeys(l.probers)
	watches := mapKeys(l.watches)
	procs := mapKeys(l.procs)
	servers := make([]*demo.WhoamiServer, 0, len(l.whoami))
	for _, s := range l.whoami {
		servers = append(servers, s)
	}
	l.whoami = map[string]*demo.WhoamiServer{}
	hooks := slices.Clone(l.onClose)
	l.mu.Unlock()

	var errs []error
	for _, f := range slices.Backward(hooks) {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range probers {
		p.Stop()
	}
	for _, w := range watches {
		w.Stop()
	}
	// Sockets keep a namespace alive after `ip netns del`; close them first.
	for _, s := range servers {
		s.Close()
	}
	for _, p := range procs {
		if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("kill %s: %w", p.name, err))
		}
	}
	l.mu.Lock()
	created := slices.Clone(l.created)
	br := l.nl[Bridge]
	l.mu.Unlock()
	if br != nil {
		for _, role := range created {
			if role == Bridge {
				continue
			}
			if link, err := br.LinkByName(bridgePort(role)); err == nil {
				if err := br.LinkDel(link); err != nil {
					errs = append(errs, fmt.Errorf("delete veth %s: %w", bridgePort(role), err))
				}
			}
		}
	}
	l.mu.Lock()
	for role, h := range l.nl {
		h.Close()
		delete(l.nl, role)
	}
	for role, h := range l.ns {
		h.Close()
		delete(l.ns, role)
	}
	l.mu.Unlock()
	for _, role := range slices.Backward(created) {
		name := l.nsName(role)
		if out, err := runCmd("ip", "netns", "del", name); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", name, err, out))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(markerPath(l.prefix))
	}
	unregister(l)
	l.log.Info("lab closed", "errors", len(errs))
	return errors.Join(errs...)
}

// Holders lists those of hosts whose eth0 carries addr (an address without
// prefix, e.g. a VIP), by asking `ip addr` in each namespace: what the kernel
// has, not what an agent reports.
func (l *Lab) Holders(addr string, hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		b, err := l.Run(h, "ip", "-o", "addr", "show", "dev", ifaceName)
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(b), " "+addr+"/") {
			out = append(out, h)
		}
	}
	return out, nil
}

// Hosts returns the host names "h1".."hN".
func (l *Lab) Hosts() []string { return slices.Clone(l.hosts) }

// Addr returns the IPv4 address of a host or of the client, "" if unknown.
func (l *Lab) Addr(host string) string {
	o := l.octet(host)
	if o == 0 {
		return ""
	}
	return fmt.Sprintf("10.77.0.%d", o)
}

// Addr6 returns the IPv6 address of a host or of the client ("fd77::<octet>"
// with the same digits as the IPv4 octet), "" if unknown or IPv6 is off.
func (l *Lab) Addr6(host string) string {
	o := l.octet(host)
	if o == 0 || !l.opts.IPv6 {
		return ""
	}
	return fmt.Sprintf("fd77::%d", o)
}

// Iface is the name of the lab interface inside every host namespace and the
// client namespace.
func (l *Lab) Iface() string { return ifaceName }

// NS returns the namespace name of a host, "client" or "bridge" (usable with
// `ip netns exec`), "" if unknown.
func (l *Lab) NS(host string) string {
	if host != Bridge && l.octet(host) == 0 {
		return ""
	}
	return l.nsName(host)
}

// MAC returns the MAC address of eth0 in a host's (or the client's)
// namespace, nil if unknown. MACs are fixed: 02:77:00:00:00:<octet>.
func (l *Lab) MAC(host string) net.HardwareAddr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.macs[host])
}

// octet is the last IPv4 octet of a host or the client, 0 if unknown.
func (l *Lab) octet(role string) int {
	if role == Client {
		return clientOctet
	}
	if !strings.HasPrefix(role, "h") {
		return 0
	}
	i, err := strconv.Atoi(role[1:])
	if err != nil || i < 1 || i > len(l.hosts) || "h"+strconv.Itoa(i) != role {
		return 0
	}
	return hostBase + i
}

func (l *Lab) nsName(role string) string { return l.prefix + "-" + role }

// bridgePort names the bridge-side veth of role (≤ 15 bytes: "v" + role).
func bridgePort(role string) string { return "v" + role }

// handle returns role's namespace handle; any host, the client or the bridge.
func (l *Lab) handle(role string) (netns.NsHandle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return -1, ErrClosed
	}
	h, ok := l.ns[role]
	if !ok {
		return -1, fmt.Errorf("lab: unknown host %q", role)
	}
	return h, nil
}

// nlHandle returns the netlink handle inside role's namespace.
func (l *Lab) nlHandle(role string) (*netlink.Handle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	h, ok := l.nl[role]
	if !ok {
		return nil, fmt.Errorf("lab: unknown host %q", role)
	}
	return h, nil
}

// checkHost accepts a host name or "client".
func (l *Lab) checkHost(host string) error {
	if l.octet(host) == 0 {
		return fmt.Errorf("lab: unknown host %q (want h1..h%d or %q)", host, len(l.hosts), Client)
	}
	return nil
}

func (l *Lab) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// The accessors below are for internal/lab's faults, which act on the
// namespaces this package built.

// OnClose registers f to run at the start of Close (hooks run newest first),
// before processes are killed and namespaces deleted; its error is part of
// Close's. It returns ErrClosed if the lab is already closed.
func (l *Lab) OnClose(f func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.onClose = append(l.onClose, f)
	return nil
}

// Closed reports whether Close has begun.
func (l *Lab) Closed() bool { return l.isClosed() }

// CheckHost accepts a host name or "client", and says which names exist
// otherwise.
func (l *Lab) CheckHost(host string) error { return l.checkHost(host) }

// Netlink returns the netlink handle inside role's namespace (any host,
// "client" or "bridge").
func (l *Lab) Netlink(role string) (*netlink.Handle, error) { return l.nlHandle(role) }

// BridgePort names the bridge-side end of role's veth (in the "bridge"
// namespace): setting it down is a pulled cable for role.
func BridgePort(role string) string { return bridgePort(role) }

// SetUp sets interface ifname in role's namespace up.
func (l *Lab) SetUp(role, ifname string) error { return l.setUp(role, ifname) }

// Log is the lab's logger, tagged with the lab's prefix.
func (l *Lab) Log() *slog.Logger { return l.log }

// CmdTimeout bounds every command the lab runs (ip, and nft in internal/lab).
const CmdTimeout = cmdTimeout

func runCmd(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func mapKeys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ---- crash safety: marker files and signals ----

func markerPath(prefix string) string { return runDir + "/" + prefix }

func writeMarker(prefix string) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return os.WriteFile(markerPath(prefix), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// sweepStale removes labs whose owning process is gone (killed -9, or a test
// binary that hit its -timeout before cleanup ran): every lab writes a marker
// file named after its namespace prefix holding its pid, so only namespaces
// created by this package are ever touched.
func sweepStale(log *slog.Logger) {
	entries, err := os.ReadDir(runDir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range entries {
		b, err := os.ReadFile(markerPath(e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if names == nil {
			out, err := runCmd("ip", "netns", "list")
			if err != nil {
				return
			}
			for line := range strings.Lines(string(out)) {
				if f := strings.Fields(line); len(f) > 0 {
					names = append(names, f[0])
				}
			}
		}
		for _, n := range names {
			if !strings.HasPrefix(n, e.Name()+"-") {
				continue
			}
			if out, err := runCmd("ip", "netns", "pids", n); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if p, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			_, _ = runCmd("ip", "netns", "del", n)
		}
		_ = os.Remove(markerPath(e.Name()))
		log.Warn("swept stale lab", "prefix", e.Name(), "pid", pid)
	}
}
