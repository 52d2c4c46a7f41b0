package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Defaults for how Add announces a new address. Three rounds 20 ms apart follow keepalived's habit of sending a
// few gratuitous ARPs in a burst (vrrp_garp_master_repeat 5): one lost frame must not leave a switch or a router
// pointing at the old owner, yet Add returns within 40 ms of the first announcement, which goes out at once. A
// caller that wants announcements spread over seconds (switches that drop frames while a port comes up) calls
// Announce again itself.
const (
	DefaultAnnounceCount = 3
	DefaultAnnounceGap   = 20 * time.Millisecond
)

// Manager adds, renews and removes VIPs in the network namespace of the calling thread: a caller serving another
// namespace locks its OS thread and enters the namespace first. A Manager holds no state besides its settings and
// is safe for concurrent use.
type Manager struct {
	// AnnounceCount and AnnounceGap are what Add passes to Announce after adding an address; 0 rounds announce
	// nothing. NewManager sets the defaults; change them before the Manager is used.
	AnnounceCount int
	AnnounceGap   time.Duration

	log   *slog.Logger
	addrs addrTable
	nft   func(script string) error // runs an nftables script (SetResets)
}

// NewManager returns a Manager that works on the kernel through netlink. log may be nil.
func NewManager(log *slog.Logger) *Manager {
	return newManager(log, netlinkTable{})
}

func newManager(log *slog.Logger, addrs addrTable) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{AnnounceCount: DefaultAnnounceCount, AnnounceGap: DefaultAnnounceGap, log: log, addrs: addrs, nft: runNFT}
}

// Add puts v on its interface with a kernel lifetime of lifetime rounded up to whole seconds (0: forever), then
// announces it (AnnounceCount rounds, AnnounceGap apart, so Add blocks for up to (AnnounceCount-1)·AnnounceGap).
// Adding an address that is already there refreshes its lifetime and announces it again. IPv6 addresses are added
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
		if err := m.Announce(v, m.AnnounceCount, m.AnnounceGap); err != nil {
			m.log.Warn("VIP added but not announced", "vip", v, "err", err)
		}
	}
	return nil
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
func (m *Manager) Remove(v VIP) error {
	if err := v.check(); err != nil {
		return err
	}
	if err := m.addrs.remove(v); err != nil {
		return fmt.Errorf("removing %s: %w", v, err)
	}
	return nil
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
