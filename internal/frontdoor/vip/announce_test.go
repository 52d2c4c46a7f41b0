package vip

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// arpListener captures the ARP packets that reach vb in namespace ns.
func arpListener(t *testing.T, ns string) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	inNS(t, ns, func() {
		ifi, err := net.InterfaceByName("vb")
		if err != nil {
			t.Fatal(err)
		}
		if c, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_ARP, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	return c
}

type garpSeen struct{ requests, replies int }

// readGARPs reads what c captured until it has been quiet for 150 ms and counts the gratuitous ARPs for ip from
// macA; anything else about ip is an error.
func readGARPs(t *testing.T, c *packet.Conn, ip netip.Addr) garpSeen {
	t.Helper()
	var seen garpSeen
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		n, from, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return seen
		}
		if err != nil {
			t.Fatal(err)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if p.SenderIP != ip && p.TargetIP != ip {
			continue
		}
		if p.SenderIP != ip || p.TargetIP != ip || !bytes.Equal(p.SenderHardwareAddr, macA) ||
			!bytes.Equal(from.(*packet.Addr).HardwareAddr, macA) {
			t.Errorf("not a gratuitous ARP for %s from %s: %+v from %v", ip, macA, p, from)
			continue
		}
		switch p.Operation {
		case arp.OperationRequest:
			seen.requests++
		case arp.OperationReply:
			seen.replies++
		}
	}
}

func TestAnnounceIPv4(t *testing.T) {
	needRoot(t)
	t.Parallel()
	a, b := newPair(t)
	v := mustParse(t, "10.77.1.100/24", "va")
	peer := arpListener(t, b)

	m := NewManager(testLog(t))
	inNS(t, a, func() {
		if err := m.Add(v, 0); err != nil {
			t.Fatal(err)
		}
	})
	if got := readGARPs(t, peer, v.Addr()); got != (garpSeen{DefaultAnnounceCount, DefaultAnnounceCount}) {
		t.Errorf("Add sent %+v, want %d requests and replies", got, DefaultAnnounceCount)
	}

	const count, gap = 4, 30 * time.Millisecond
	var took time.Duration
	inNS(t, a, func() {
		start := time.Now()
		if err := m.Announce(v, count, gap); err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
	})
	// The lower bound is the spacing the code promises; the upper one is only
	// a generous liveness bound (this machine is shared and noisy).
	if took < (count-1)*gap || took > 2*time.Second {
		t.Errorf("Announce(%d, %v) took %v, want at least %v (and not seconds)", count, gap, took, (count-1)*gap)
	}
	if got := readGARPs(t, peer, v.Addr()); got != (garpSeen{count, count}) {
		t.Errorf("Announce sent %+v, want %d requests and replies", got, count)
	}

	// Nothing for an address this host gave up: that would pull its traffic away from the new owner.
	inNS(t, a, func() {
		if err := m.Remove(v); err != nil {
			t.Fatal(err)
		}
		if err := m.Announce(v, count, gap); !errors.Is(err, ErrNotPresent) {
			t.Errorf("Announce after Remove: %v, want ErrNotPresent", err)
		}
	})
	if got := readGARPs(t, peer, v.Addr()); got != (garpSeen{}) {
		t.Errorf("Announce after Remove sent %+v", got)
	}

	// Add sends the first round before it returns and the others later; a Remove in between stops them (the
	// gap is long so that the Remove certainly comes first).
	slow := NewManager(testLog(t))
	slow.AnnounceGap = 300 * time.Millisecond
	inNS(t, a, func() {
		if err := slow.Add(v, 0); err != nil {
			t.Fatal(err)
		}
		if err := slow.Remove(v); err != nil {
			t.Fatal(err)
		}
	})
	time.Sleep(time.Duration(DefaultAnnounceCount) * slow.AnnounceGap)
	if got := readGARPs(t, peer, v.Addr()); got != (garpSeen{1, 1}) {
		t.Errorf("Add then Remove sent %+v, want the first round only", got)
	}
}

func TestAnnounceIPv6(t *testing.T) {
	needRoot(t)
	t.Parallel()
	a, b := newPair(t)
	v := mustParse(t, "fd77:1::100/64", "va")

	var peer *ndp.Conn
	inNS(t, b, func() {
		ifi, err := net.InterfaceByName("vb")
		if err != nil {
			t.Fatal(err)
		}
		if peer, _, err = ndp.Listen(ifi, ndp.LinkLocal); err != nil {
			t.Fatal(err)
		}
	})
	defer peer.Close()
	// readNAs counts the unsolicited advertisements for v from macA until the link has been quiet for 150 ms.
	readNAs := func() int {
		n := 0
		for {
			peer.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			msg, cm, from, err := peer.ReadFrom()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n
			}
			if err != nil {
				t.Fatal(err)
			}
			na, ok := msg.(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != v.Addr() {
				continue
			}
			var lla net.HardwareAddr
			for _, o := range na.Options {
				if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
					lla = l.Addr
				}
			}
			if !na.Override || na.Solicited || na.Router || !bytes.Equal(lla, macA) || from.WithZone("") != v.Addr() {
				t.Errorf("not an unsolicited NA for %s at %s: %+v (target lla %v) from %s", v.Addr(), macA, na, lla, from)
				continue
			}
			if cm != nil && cm.Dst != nil && !cm.Dst.Equal(net.IPv6linklocalallnodes) {
				t.Errorf("NA sent to %v, want ff02::1", cm.Dst)
			}
			n++
		}
	}

	m := NewManager(testLog(t))
	m.AnnounceCount = 0
	inNS(t, a, func() {
		if err := m.Add(v, 0); err != nil {
			t.Fatal(err)
		}
	})
	if got := readNAs(); got != 0 {
		t.Errorf("Add with AnnounceCount 0 sent %d NAs", got)
	}
	const count, gap = 3, 30 * time.Millisecond
	inNS(t, a, func() {
		start := time.Now()
		if err := m.Announce(v, count, gap); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Announce(%d, %v) took %v", count, gap, took)
		}
	})
	if got := readNAs(); got != count {
		t.Errorf("Announce sent %d NAs, want %d", got, count)
	}
}

func TestPreflight(t *testing.T) {
	needRoot(t)
	t.Parallel()
	a, b := newPair(t)
	run(t, "ip", "-n", a, "link", "add", "down0", "type", "veth", "peer", "name", "down1")
	run(t, "ip", "-n", b, "addr", "add", "10.77.3.100/24", "dev", "vb")
	run(t, "ip", "-n", b, "addr", "add", "fd77:3::100/64", "dev", "vb", "nodad")

	for _, c := range []struct {
		address, iface string
		owned          bool
		want           string
	}{
		{"10.77.3.100/24", "eth9", false, `interface "eth9": no such interface on this host`},
		{"10.77.3.100/24", "down0", true, `interface "down0" is down (bring it up, e.g. ip link set down0 up)`},
		{"10.77.3.100/24", "va", false, "10.77.3.100 is already answered by 02:77:00:00:00:0b (a host outside the group?)"},
		{"fd77:3::100/64", "va", false, "fd77:3::100 is already answered by 02:77:00:00:00:0b (a host outside the group?)"},
		{"10.77.3.100/24", "va", true, ""}, // owned: no probe
		{"10.77.3.101/24", "va", false, ""},
		{"fd77:3::101/64", "va", false, ""},
	} {
		t.Run(c.address+" on "+c.iface, func(t *testing.T) {
			v := mustParse(t, c.address, c.iface)
			var err error
			var took time.Duration
			inNS(t, a, func() {
				start := time.Now()
				err = Preflight(v, c.owned)
				took = time.Since(start)
			})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Preflight: %v", err)
			case c.want != "" && (err == nil || err.Error() != c.want):
				t.Errorf("Preflight:\n got %v\nwant %s", err, c.want)
			}
			if c.want == "" && !c.owned && (took < probeFor || took > probeFor+2*time.Second) {
				t.Errorf("probing took %v, want about %v", took, probeFor)
			}
			if strings.Contains(c.want, "answered") && took > probeFor+time.Second {
				t.Errorf("an answer took %v: the probe should stop at the first", took)
			}
		})
	}
	if err := Preflight(VIP{Interface: "va"}, false); err == nil {
		t.Error("Preflight of the zero VIP succeeded")
	}
	// The agent tells a member holding the VIP from a stranger by asking who
	// answers for each member's address.
	inNS(t, a, func() {
		var ans *AnsweredError
		if err := Preflight(mustParse(t, "10.77.3.100/24", "va"), false); !errors.As(err, &ans) || ans.MAC != "02:77:00:00:00:0b" {
			t.Errorf("Preflight did not report the answering MAC: %v", err)
		}
		for addr, want := range map[string]string{"10.77.3.100": "02:77:00:00:00:0b", "fd77:3::100": "02:77:00:00:00:0b", "10.77.3.101": ""} {
			if who, err := WhoAnswers("va", netip.MustParseAddr(addr)); err != nil || who != want {
				t.Errorf("WhoAnswers(%s) = %q, %v; want %q", addr, who, err, want)
			}
		}
	})
}
