package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults for how Add announces a new address. Three rounds 20 ms apart follow keepalived's habit of sending a
// few gratuitous ARPs in a burst (vrrp_garp_master_repeat 5): one lost frame must not leave a switch or a router
// pointing at the old owner. The first round goes out before Add returns, the others follow in the background, so
// the caller (the agent's loop, the active hook) does not wait the 40 ms. A caller that wants announcements spread
// over seconds (switches that drop frames while a port comes up) calls Announce again itself.
const (
	DefaultAnnounceCount = 3
	DefaultAnnounceGap   = 20 * time.Millisecond
)

// Manager adds, renews and removes VIPs in the network namespace of the calling thread: a caller serving another
// namespace locks its OS thread and enters the namespace first. A Manager is safe for concurrent use; besides its
// settings it only remembers which addresses it removed, so that announcement rounds still to come for them are
// not sent.
type Manager struct {
	// AnnounceCount and AnnounceGap are what Add passes to Announce after adding an address; 0 rounds announce
	// nothing. NewManager sets the defaults; change them before the Manager is used.
	AnnounceCount int
	AnnounceGap   time.Duration

	log   *slog.Logger
	addrs addrTable
	nft   func(script string) error // runs an nftables script (SetResets)

	// mu is held across each announcement round's presence check and send, and by Remove while it counts the
	// removal, so that no round of an address starts after Remove began: a late gratuitous ARP from a host that
	// gave the address up would pull its traffic away from the new owner. removals counts Remove calls per
	// address; a background round whose count changed since its Add stops.
	mu       sync.Mutex
	removals map[netip.Addr]uint64
	// keep are the addresses whose TCP connections Remove leaves alone (a VIP with tcp_reset: false).
	keep map[netip.Addr]bool
}

// NewManager returns a Manager that works on the kernel through netlink. log may be nil.
func NewManager(log *slog.Logger) *Manager {
	return newManager(log, netlinkTable{})
}

func newManager(log *slog.Logger, addrs addrTable) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{AnnounceCount: DefaultAnnounceCount, AnnounceGap: DefaultAnnounceGap, log: log, addrs: addrs, nft: runNFT,
		removals: map[netip.Addr]uint64{}}
}

// Add puts v on its interface with a kernel lifetime of lifetime rounded up to whole seconds (0: forever), then
// announces it: AnnounceCount rounds, AnnounceGap apart, the first before Add returns and the others from a
// goroutine of their own, each only while the address is on the interface and Remove has not been called for it
// since. Adding an address that is already there refreshes its lifetime and announces it again. IPv6 addresses are added
// without duplicate address detection: the quorum, not DAD, decides who may hold the address, and DAD would keep
// it unusable for a second.
//
// Add returns an error only when the address could not be added; a failed announcement is logged, because the
// address is up and serves the hosts that ask for it.
//
// The agent must have sent the fence a hold for the group before it calls Add (see RunFence).
func (m *Manager) Add(v VIP, lifetime time.Duration) error {
	secs, err := lifetimeSeconds(lifetime)
	if err != nil {
		return err
	}
	if err := v.check(); err != nil {
		return err
	}
	if changed, err := m.addrs.prepare(v); err != nil {
		m.log.Warn("cannot set promote_secondaries: removing another address in this VIP's subnet may take it along",
			"vip", v, "err", err)
	} else if changed {
		m.log.Info("set promote_secondaries, so that removing one address of a subnet does not remove the others",
			"interface", v.Interface)
	}
	if err := m.addrs.replace(v, secs); err != nil {
		return fmt.Errorf("adding %s: %w", v, err)
	}
	if m.AnnounceCount > 0 {
		m.announceAdded(v)
	}
	return nil
}

// announceAdded sends the first announcement round for an address Add just added and starts the others.
func (m *Manager) announceAdded(v VIP) {
	m.mu.Lock()
	gen := m.removals[v.Addr()]
	m.mu.Unlock()
	a, err := m.openAnnouncer(v)
	if err == nil && a != nil {
		err = m.announceRound(v, a, gen)
	}
	if err != nil {
		if a != nil {
			a.Close()
		}
		m.log.Warn("VIP added but not announced", "vip", v, "err", err)
		return
	}
	if a == nil { // nothing to announce on this interface
		return
	}
	if m.AnnounceCount == 1 {
		a.Close()
		return
	}
	// The later rounds check the address in this thread's namespace, like the rest of the Manager.
	ns, err := netns.Get()
	if err != nil {
		a.Close()
		m.log.Warn("VIP announced once, not repeated: cannot tell this thread's network namespace", "vip", v, "err", err)
		return
	}
	go func() {
		defer a.Close()
		defer ns.Close()
		// Locked and never unlocked: the thread ends with the goroutine, so it never serves another one in a
		// namespace that may not be its own.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			m.log.Warn("VIP announced once, not repeated: cannot enter the network namespace", "vip", v, "err", err)
			return
		}
		for range m.AnnounceCount - 1 {
			time.Sleep(m.AnnounceGap)
			if err := m.announceRound(v, a, gen); err != nil {
				if !errors.Is(err, errRemoved) && !errors.Is(err, ErrNotPresent) {
					m.log.Warn("repeating the announcement of a VIP failed", "vip", v, "err", err)
				}
				return
			}
		}
	}()
}

// Renew sets v's kernel lifetime to lifetime (rounded up to whole seconds, 0: forever) again. It is cheap (two
// netlink round trips) and meant to be called by the owner about once a second.
//
// Renew does not bring back an address that is gone: it returns an error wrapping ErrNotPresent. The fence may
// have removed it because the hold ran out while the agent was frozen, and an agent that resumes and renews before
// it notices that its lease has ended must not re-add the address another node may hold by now. An owner that
// still holds its lease and finds the address gone (removed by hand, or flushed with the interface) calls Add,
// which also announces it. (The check and the refresh are two system calls; the fence closes the gap between them,
// see RunFence.)
func (m *Manager) Renew(v VIP, lifetime time.Duration) error {
	secs, err := lifetimeSeconds(lifetime)
	if err != nil {
		return err
	}
	if err := v.check(); err != nil {
		return err
	}
	ok, err := m.addrs.present(v)
	if err != nil {
		return fmt.Errorf("renewing %s: %w", v, err)
	}
	if !ok {
		return fmt.Errorf("renewing %s: %w", v, ErrNotPresent)
	}
	if err := m.addrs.replace(v, secs); err != nil {
		return fmt.Errorf("renewing %s: %w", v, err)
	}
	return nil
}

// Remove takes v's address off its interface, whatever prefix length it was added with. An address (or an
// interface) that is not there is not an error.
//
// Just before, it ends every TCP connection whose local address is v's (not listening sockets) with a reset:
// once the address is gone this host can send nothing more on them (the kernel routes nothing from an address
// that is not its own), so a client waiting for an answer, e.g. on a connection accepted a moment before, would
// otherwise wait out its own timeout. Packets that still arrive for the address afterwards are answered by
// SetResets' rule. Ending them needs a kernel with CONFIG_INET_DIAG_DESTROY (Debian's has it); a failure is
// logged and the address is removed all the same. Addresses named in KeepConnections are removed without it.
func (m *Manager) Remove(v VIP) error {
	if err := v.check(); err != nil {
		return err
	}
	m.mu.Lock() // waits for a round being sent; the rounds after it see the count and stop
	m.removals[v.Addr()]++
	keep := m.keep[v.Addr()]
	m.mu.Unlock()
	if keep {
		// tcp_reset: false; the connections' packets go unanswered until their client's retransmission reaches
		// the next owner, which resets them.
	} else if n, err := m.addrs.abort(v); err != nil {
		m.log.Warn("cannot reset the connections to a VIP before removing it; their clients wait for their own timeouts",
			"vip", v, "err", err)
	} else if n > 0 {
		m.log.Info("reset the connections to a VIP before removing it", "vip", v, "connections", n)
	}
	if err := m.addrs.remove(v); err != nil {
		return fmt.Errorf("removing %s: %w", v, err)
	}
	return nil
}

// KeepConnections sets the addresses whose TCP connections Remove does not reset (VIPs with tcp_reset: false),
// replacing the earlier set.
func (m *Manager) KeepConnections(addrs []netip.Addr) {
	keep := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
	}
	m.mu.Lock()
	m.keep = keep
	m.mu.Unlock()
}

// Present reports whether v's address is on v's interface (with any prefix length). A missing interface is an
// error wrapping ErrNoInterface.
func (m *Manager) Present(v VIP) (bool, error) {
	if err := v.check(); err != nil {
		return false, err
	}
	return m.addrs.present(v)
}

// RemoveStale runs at agent start, before the agent owns anything: it removes each of vips that is on its
// interface and that keep says this node does not own (left behind by an agent that died with both its fence and
// before the kernel lifetime ran out, or added by hand). It returns the VIPs it removed; a VIP whose interface
// does not exist is not on it (Preflight reports the interface).
func RemoveStale(vips []VIP, keep func(VIP) bool) ([]VIP, error) {
	m := NewManager(nil)
	var removed []VIP
	var errs []error
	for _, v := range vips {
		ok, err := m.Present(v)
		switch {
		case errors.Is(err, ErrNoInterface):
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		case !ok || keep(v):
			continue
		}
		if err := m.Remove(v); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, v)
	}
	return removed, errors.Join(errs...)
}

// lifetimeSeconds turns a lifetime into the kernel's whole seconds, rounding up: the kernel lifetime is the last
// fence, and the agent sizes it from the lease, so it must not be shorter than asked, and must not be 0 (which
// netlink would read as forever) for a lifetime under a second. 0 stays 0, meaning forever.
func lifetimeSeconds(d time.Duration) (uint32, error) {
	if d < 0 {
		return 0, fmt.Errorf("lifetime %v is negative (use 0 for an address that does not expire)", d)
	}
	s := (d + time.Second - 1) / time.Second
	if s >= math.MaxUint32 { // the kernel's "infinity"
		return 0, nil
	}
	return uint32(s), nil
}

// addrTable is the kernel's address table as the Manager and the fence use it: netlinkTable is the real one, the
// tests of the fence's timing run against an in-memory twin under testing/synctest. Every method works on the
// network namespace of the calling thread.
type addrTable interface {
	// prepare readies v's interface for v before it is added, and reports whether it changed anything.
	prepare(v VIP) (changed bool, err error)
	// replace adds v, or refreshes it when it is there, with valid and preferred lifetime secs (0: forever).
	replace(v VIP, secs uint32) error
	// remove deletes v's address from v's interface whatever its prefix length; nil when it is not there.
	remove(v VIP) error
	// present reports whether v's address is on v's interface.
	present(v VIP) (bool, error)
	// abort ends the TCP connections whose local address is v's with a reset and says how many it ended.
	abort(v VIP) (int, error)
	// watch reports the addresses already in the namespace, then every address added to it, until done is
	// closed. The channel is closed when the watch ends, because of done or because it failed (e.g. the kernel
	// dropped notifications on an overflowing socket). After closing done the caller drains the channel until it
	// is closed, which is when every goroutine of the watch has ended.
	watch(done <-chan struct{}, log *slog.Logger) (<-chan netip.Addr, error)
}

type netlinkTable struct{}

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, noInterface(name)
	}
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", name, err)
	}
	return l, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// prepare turns on promote_secondaries on an IPv4 VIP's interface. Without it, removing the first address the
// kernel added in a subnet (the primary) removes every other address in that subnet too: with two groups whose
// VIPs share a subnet on an interface without an address of its own there, dropping one group would drop the other
// group's VIP. systemd turns it on everywhere (sysctl.d/50-default.conf); this is for hosts without that.
func (netlinkTable) prepare(v VIP) (bool, error) {
	if !v.Addr().Is4() {
		return false, nil
	}
	// The name is checked (no '/', not "." or ".."); /proc/sys/net shows the calling thread's namespace.
	p := "/proc/sys/net/ipv4/conf/" + v.Interface + "/promote_secondaries"
	b, err := os.ReadFile(p)
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(b)) != "0" {
		return false, nil
	}
	return true, os.WriteFile(p, []byte("1\n"), 0o644)
}

func (netlinkTable) replace(v VIP, secs uint32) error {
	l, err := linkByName(v.Interface)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: ipNet(v.Prefix), ValidLft: int(secs), PreferedLft: int(secs)}
	if v.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return netlink.AddrReplace(l, a)
}

// entries lists the entries of v's address on l: usually one, more if someone added it with other prefix lengths.
func entries(l netlink.Link, v VIP) ([]netlink.Addr, error) {
	var list []netlink.Addr
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried; it is cheap
		list, err = netlink.AddrList(l, family(v.Addr()))
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var out []netlink.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == v.Addr() {
			out = append(out, a)
		}
	}
	return out, nil
}

func (netlinkTable) present(v VIP) (bool, error) {
	l, err := linkByName(v.Interface)
	if err != nil {
		return false, err
	}
	es, err := entries(l, v)
	return len(es) > 0, err
}

func (netlinkTable) remove(v VIP) error {
	l, err := linkByName(v.Interface)
	if errors.Is(err, ErrNoInterface) {
		return nil // the address went with the interface
	}
	if err != nil {
		return err
	}
	es, err := entries(l, v)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range es {
		err := netlink.AddrDel(l, &netlink.Addr{IPNet: e.IPNet})
		// Gone in the meantime (the kernel lifetime, the fence, the interface): that is what we wanted.
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// abort dumps the TCP sockets of v's family (sock_diag), and destroys (SOCK_DESTROY, which sends a reset) each one
// whose local address is v's, except listening sockets (a service listening on the address itself keeps its socket
// for the next time this host holds it) and closed or time-wait ones, which hold no connection. All in-process
// netlink calls: the fence runs this at the deadline too, where it must not take long.
func (netlinkTable) abort(v VIP) (int, error) {
	fam := uint8(unix.AF_INET)
	if v.Addr().Is6() {
		fam = unix.AF_INET6
	}
	socks, err := netlink.SocketDiagTCP(fam)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0, fmt.Errorf("listing TCP sockets: %w", err)
	}
	n := 0
	var errs []error
	for _, s := range socks {
		if ip, ok := netip.AddrFromSlice(s.ID.Source); !ok || ip.Unmap() != v.Addr() {
			continue
		}
		switch s.State {
		case netlink.TCP_LISTEN, netlink.TCP_TIME_WAIT, netlink.TCP_CLOSE:
			continue
		}
		if err := destroySocket(fam, s.ID); err != nil {
			if !errors.Is(err, unix.ENOENT) { // gone in the meantime
				errs = append(errs, err)
			}
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("ending %d connection(s): %w", len(errs), errs[0])
	}
	return n, nil
}

// destroyRequest is struct inet_diag_req_v2 for SOCK_DESTROY (netlink's own SocketDestroy knows only IPv4).
type destroyRequest struct {
	family uint8
	id     netlink.SocketID
}

func (r *destroyRequest) Len() int { return 56 }

func (r *destroyRequest) Serialize() []byte {
	b := make([]byte, r.Len())
	b[0], b[1] = r.family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], 0xfff) // any state
	binary.BigEndian.PutUint16(b[8:], r.id.SourcePort)
	binary.BigEndian.PutUint16(b[10:], r.id.DestinationPort)
	src, dst := r.id.Source.To16(), r.id.Destination.To16()
	if r.family == unix.AF_INET {
		src, dst = r.id.Source.To4(), r.id.Destination.To4()
	}
	copy(b[12:28], src)
	copy(b[28:44], dst)
	binary.NativeEndian.PutUint32(b[44:], r.id.Interface)
	binary.NativeEndian.PutUint32(b[48:], r.id.Cookie[0])
	binary.NativeEndian.PutUint32(b[52:], r.id.Cookie[1])
	return b
}

func destroySocket(family uint8, id netlink.SocketID) error {
	req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
	req.AddData(&destroyRequest{family: family, id: id})
	_, err := req.Execute(unix.NETLINK_INET_DIAG, 0)
	return err
}

func (netlinkTable) watch(done <-chan struct{}, log *slog.Logger) (<-chan netip.Addr, error) {
	updates := make(chan netlink.AddrUpdate, 64)
	err := netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case <-done: // the socket was closed on purpose
			default:
				log.Debug("address watch", "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	out := make(chan netip.Addr)
	go func() {
		defer close(out)
		// netlink closes updates when its socket fails or, after done, is closed; until then it blocks on
		// sending, so this keeps draining after done.
		for u := range updates {
			if !u.NewAddr {
				continue
			}
			ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			select {
			case out <- ip.Unmap():
			case <-done:
			}
		}
	}()
	return out, nil
}
