package vip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

var (
	ethernetBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ethernetZero      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// lookupInterface returns the interface called name and whether it takes part in address resolution: it has an
// Ethernet address and no IFF_NOARP (loopback, dummy, tun and WireGuard interfaces have none to announce or probe).
func lookupInterface(name string) (*net.Interface, bool, error) {
	l, err := linkByName(name)
	if err != nil {
		return nil, false, err
	}
	ifi, err := net.InterfaceByIndex(l.Attrs().Index)
	if err != nil {
		return nil, false, fmt.Errorf("interface %q: %w", name, err)
	}
	resolves := len(ifi.HardwareAddr) == 6 && l.Attrs().RawFlags&unix.IFF_NOARP == 0
	return ifi, resolves, nil
}

// Announce tells the LAN that v's address is now at this host: count rounds, the first at once, the next ones gap
// apart, so it returns within (count-1)·gap plus the time of the sends. For IPv4 a round is a gratuitous ARP
// request (RFC 5227's ARP announcement, what keepalived sends) and a gratuitous ARP reply (RFC 2002), both from the
// interface's MAC to the Ethernet broadcast address, because some hosts and switches only update their caches on
// one of the two. For IPv6 it is an unsolicited neighbour advertisement to all nodes (ff02::1) with the Override
// flag and the target link-layer address (RFC 4861 section 7.2.6), sent from the address itself.
//
// Announce sends nothing for an address that is not on its interface, and checks again before every round: a
// gratuitous ARP for an address this host gave up would pull its traffic away from the new owner. It then
// returns an error wrapping ErrNotPresent. On an interface without address resolution (no MAC, or NOARP) there
// is nothing to announce, and Announce returns nil.
func (m *Manager) Announce(v VIP, count int, gap time.Duration) error {
	if err := v.check(); err != nil {
		return err
	}
	if count <= 0 {
		return nil
	}
	m.mu.Lock()
	gen := m.removals[v.Addr()]
	m.mu.Unlock()
	a, err := m.openAnnouncer(v)
	if err != nil || a == nil {
		return err
	}
	defer a.Close()
	for i := range count {
		if i > 0 {
			time.Sleep(gap)
		}
		if err := m.announceRound(v, a, gen); errors.Is(err, errRemoved) {
			return fmt.Errorf("announcing %s: %w", v, ErrNotPresent)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// errRemoved: Remove was called for the address since its announcements began.
var errRemoved = errors.New("removed since the announcement began")

// openAnnouncer opens the socket that announces v, once v is known to be on its interface (the IPv6 socket is
// bound to the address); nil, nil when the interface has no address resolution.
func (m *Manager) openAnnouncer(v VIP) (announcer, error) {
	ifi, resolves, err := lookupInterface(v.Interface)
	if err != nil {
		return nil, fmt.Errorf("announcing %s: %w", v, err)
	}
	if !resolves {
		m.log.Debug("interface has no address resolution; nothing to announce", "vip", v)
		return nil, nil
	}
	ok, err := m.addrs.present(v)
	if err != nil {
		return nil, fmt.Errorf("announcing %s: %w", v, err)
	}
	if !ok {
		return nil, fmt.Errorf("announcing %s: %w", v, ErrNotPresent)
	}
	var a announcer
	if v.Addr().Is4() {
		a, err = newGARP(ifi, v.Addr())
	} else {
		a, err = newUnsolicitedNA(ifi, v.Addr())
	}
	if err != nil {
		return nil, fmt.Errorf("announcing %s: %w", v, err)
	}
	return a, nil
}

// announceRound sends one round for v unless Remove was called for it since the count gen was read (errRemoved)
// or the address is gone (ErrNotPresent). The check and the send happen under m.mu, which Remove takes too.
func (m *Manager) announceRound(v VIP, a announcer, gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.removals[v.Addr()] != gen {
		return errRemoved
	}
	ok, err := m.addrs.present(v)
	if err != nil {
		return fmt.Errorf("announcing %s: %w", v, err)
	}
	if !ok {
		return fmt.Errorf("announcing %s: %w", v, ErrNotPresent)
	}
	if err := a.send(); err != nil {
		return fmt.Errorf("announcing %s: %w", v, err)
	}
	return nil
}

// announcer sends one round of announcements.
type announcer interface {
	send() error
	Close() error
}

type garp struct {
	c        *packet.Conn
	req, rep []byte
}

func newGARP(ifi *net.Interface, ip netip.Addr) (*garp, error) {
	mac := ifi.HardwareAddr
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip, ethernetZero, ip)
	if err != nil {
		return nil, err
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, ip, mac, ip)
	if err != nil {
		return nil, err
	}
	g := &garp{}
	if g.req, err = req.MarshalBinary(); err != nil {
		return nil, err
	}
	if g.rep, err = rep.MarshalBinary(); err != nil {
		return nil, err
	}
	// A datagram socket: the kernel writes the Ethernet header (our MAC, the destination, ETH_P_ARP).
	if g.c, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_ARP, nil); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *garp) send() error {
	for _, b := range [][]byte{g.req, g.rep} {
		if _, err := g.c.WriteTo(b, &packet.Addr{HardwareAddr: ethernetBroadcast}); err != nil {
			return err
		}
	}
	return nil
}

func (g *garp) Close() error { return g.c.Close() }

type unsolicitedNA struct {
	c  *ndp.Conn
	na *ndp.NeighborAdvertisement
}

func newUnsolicitedNA(ifi *net.Interface, ip netip.Addr) (*unsolicitedNA, error) {
	// Bound to the VIP itself, so the kernel refuses to send once the address is gone (it checks the source).
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return nil, err
	}
	return &unsolicitedNA{c: c, na: &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}}, nil
}

func (u *unsolicitedNA) send() error {
	return u.c.WriteTo(u.na, nil, netip.IPv6LinkLocalAllNodes())
}

func (u *unsolicitedNA) Close() error { return u.c.Close() }

// Probing, for Preflight: is anyone on the link already using the address?

// probeFor is how long Preflight listens for an answer. 200 ms is longer than any LAN round trip, yet short enough
// to probe every VIP at agent start without the operator noticing. RFC 5227 waits seconds because it runs on every
// DHCP lease; this is a check for a misconfiguration (a VIP that some other host holds), not a guarantee.
const (
	probeFor    = 200 * time.Millisecond
	probeRounds = 3 // a lost probe or answer must not hide the other host
)

// probeARP sends RFC 5227 ARP probes (sender address 0.0.0.0, so no cache learns anything from them) for ip and
// returns the MAC of a host that answers, or that sends ARP from ip itself; nil when nobody does.
func probeARP(ifi *net.Interface, ip netip.Addr) (string, error) {
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, netip.IPv4Unspecified(), ethernetZero, ip)
	if err != nil {
		return "", err
	}
	probe, err := p.MarshalBinary()
	if err != nil {
		return "", err
	}
	c, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_ARP, nil)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, max(ifi.MTU, 1500))
	return probeLoop(c.SetReadDeadline,
		func() error { _, err := c.WriteTo(probe, &packet.Addr{HardwareAddr: ethernetBroadcast}); return err },
		func() (string, error) {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return "", err
			}
			var a arp.Packet
			if a.UnmarshalBinary(buf[:n]) != nil || a.SenderIP != ip || bytes.Equal(a.SenderHardwareAddr, ifi.HardwareAddr) {
				return "", nil
			}
			return a.SenderHardwareAddr.String(), nil
		})
}

// probeNDP sends neighbour solicitations for ip from the interface's link-local address and returns the MAC of a
// host that answers. An interface without a usable link-local address cannot ask; then nobody is reported.
func probeNDP(ifi *net.Interface, ip netip.Addr) (string, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		// No link-local address, or one still in duplicate address detection (bind fails on it).
		if errors.Is(err, unix.EADDRNOTAVAIL) || !hasLinkLocal(ifi) {
			return "", nil
		}
		return "", err
	}
	defer c.Close()
	snm, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return "", err
	}
	ns := &ndp.NeighborSolicitation{
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}},
	}
	return probeLoop(c.SetReadDeadline,
		func() error { return c.WriteTo(ns, nil, snm) },
		func() (string, error) {
			msg, _, from, err := c.ReadFrom()
			if err != nil {
				return "", err
			}
			na, ok := msg.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != ip {
				return "", nil
			}
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
					if bytes.Equal(lla.Addr, ifi.HardwareAddr) {
						return "", nil // our own kernel, which holds the address
					}
					return lla.Addr.String(), nil
				}
			}
			return from.String(), nil
		})
}

func hasLinkLocal(ifi *net.Interface) bool {
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// probeLoop sends probeRounds probes spread over probeFor and reads answers until probeFor has passed; read
// returns "" for a packet that is no answer.
func probeLoop(setReadDeadline func(time.Time) error, send func() error, read func() (string, error)) (string, error) {
	start := time.Now()
	end := start.Add(probeFor)
	sent := 0
	for {
		now := time.Now()
		if !now.Before(end) {
			return "", nil
		}
		next := end
		if sent < probeRounds {
			at := start.Add(time.Duration(sent) * probeFor / probeRounds)
			if !now.Before(at) {
				if err := send(); err != nil {
					return "", err
				}
				sent++
				continue
			}
			next = at
		}
		if err := setReadDeadline(next); err != nil {
			return "", err
		}
		who, err := read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil || who != "" {
			return who, err
		}
	}
}

// Preflight checks, at agent start, that v can be used on this host: its interface exists and is up, and, when
// this node does not own v (owned is false), that no other host answers for the address. It probes for about
// 200 ms: ARP probes for IPv4, neighbour solicitations from the link-local address for IPv6. A host that answers
// is outside Baton's control (the owner, if any, is this node or a member whose agent is running); Baton would
// fight it for the address, so the agent should refuse to start.
func Preflight(v VIP, owned bool) error {
	if err := v.check(); err != nil {
		return err
	}
	ifi, resolves, err := lookupInterface(v.Interface)
	if err != nil {
		return err
	}
	if ifi.Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %q is down (bring it up, e.g. ip link set %s up)", v.Interface, v.Interface)
	}
	if owned || !resolves {
		return nil
	}
	var who string
	if v.Addr().Is4() {
		who, err = probeARP(ifi, v.Addr())
	} else {
		who, err = probeNDP(ifi, v.Addr())
	}
	if err != nil {
		return fmt.Errorf("probing for %s on %q: %w", v.Addr(), v.Interface, err)
	}
	if who != "" {
		return &AnsweredError{Addr: v.Addr(), MAC: who}
	}
	return nil
}

// AnsweredError is Preflight's finding that another host answers for a VIP.
type AnsweredError struct {
	Addr netip.Addr
	MAC  string
}

func (e *AnsweredError) Error() string {
	return fmt.Sprintf("%s is already answered by %s (a host outside the group?)", e.Addr, e.MAC)
}

// WhoAnswers returns the link-layer address of the host that answers for
// addr on iface ("" if none answers within about 200 ms): an ARP probe for
// IPv4, a neighbour solicitation for IPv6.
func WhoAnswers(iface string, addr netip.Addr) (string, error) {
	ifi, _, err := lookupInterface(iface)
	if err != nil {
		return "", err
	}
	if addr.Is4() {
		return probeARP(ifi, addr)
	}
	return probeNDP(ifi, addr)
}
