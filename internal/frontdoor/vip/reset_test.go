package vip

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestResetTable(t *testing.T) {
	if got := ResetTable("prod-eu.1", "n1"); got != "baton_vip_prod_eu_1_n1" {
		t.Errorf("ResetTable = %q", got)
	}
}

func TestResetScript(t *testing.T) {
	var got []string
	m := newManager(nil, nil)
	m.nft = func(s string) error { got = append(got, s); return nil }
	vips := []VIP{
		mustParse(t, "10.0.0.100/24", "eth0"),
		mustParse(t, "10.0.0.101/24", "eth0"),
		mustParse(t, "10.0.0.100/24", "eth0"), // twice: one element
		mustParse(t, "fd00::100/64", "eth0"),
		mustParse(t, "192.168.1.5/24", "bond0.7"),
	}
	if err := m.SetResets("baton_vip_t", vips); err != nil {
		t.Fatal(err)
	}
	want := `table inet baton_vip_t
delete table inet baton_vip_t
table inet baton_vip_t {
	chain deposed {
		type filter hook prerouting priority filter; policy accept;
		iifname "eth0" ip daddr { 10.0.0.100, 10.0.0.101 } fib daddr type != local meta l4proto tcp reject with tcp reset
		iifname "eth0" ip6 daddr { fd00::100 } fib daddr type != local meta l4proto tcp reject with tcp reset
		iifname "bond0.7" ip daddr { 192.168.1.5 } fib daddr type != local meta l4proto tcp reject with tcp reset
	}
}
`
	if len(got) != 1 || got[0] != want {
		t.Errorf("SetResets ran %q, want\n%s", got, want)
	}

	got = nil
	if err := m.SetResets("baton_vip_t", nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "table inet baton_vip_t\ndelete table inet baton_vip_t\n" {
		t.Errorf("SetResets(nil) ran %q, want the table deleted", got)
	}

	if err := m.SetResets("baton_vip_t", []VIP{{Interface: "eth0"}}); err == nil || !strings.Contains(err.Error(), "has no address") {
		t.Errorf("SetResets of a zero VIP: %v, want it refused", err)
	}

	m.nft = func(string) error { return ErrNoNFT }
	err := m.SetResets("baton_vip_t", vips[:1])
	if !errors.Is(err, ErrNoNFT) || !strings.Contains(err.Error(), "inet baton_vip_t") || !strings.Contains(err.Error(), "apt-get install nftables") {
		t.Errorf("SetResets without nft: %v, want ErrNoNFT naming the table and the fix", err)
	}
}

// TestResets checks the kernel side, for IPv4 and IPv6: a client whose ARP cache still points at this host is served while the VIP
// is here, refused at once (a TCP reset) when it is gone, and, without the rule, left to time out; the host never
// answers ARP for the address it gave up.
func TestResets(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("SKIPPED: needs the nft command (apt-get install nftables)")
	}
	t.Run("IPv4", func(t *testing.T) { testResets(t, "tcp4", "10.77.2.11/24", "10.77.2.2/24", "10.77.2.100/24") })
	t.Run("IPv6", func(t *testing.T) { testResets(t, "tcp6", "fd77:2::11/64", "fd77:2::2/64", "fd77:2::100/64") })
}

func testResets(t *testing.T, network, hostA, hostB, vipAddr string) {
	t.Parallel()
	a, b := newPair(t)
	run(t, "ip", "-n", a, "addr", "add", hostA, "dev", "va", "nodad")
	run(t, "ip", "-n", b, "addr", "add", hostB, "dev", "vb", "nodad")
	v := mustParse(t, vipAddr, "va")
	// The client's cache says the VIP is at a, as it does right after a handed the VIP over.
	run(t, "ip", "-n", b, "neigh", "replace", v.Addr().String(), "lladdr", macA.String(), "dev", "vb", "nud", "permanent")

	m := NewManager(testLog(t))
	var ln net.Listener
	inNS(t, a, func() {
		var err error
		if ln, err = net.Listen(network, ":0"); err != nil {
			t.Fatal(err)
		}
		if err := m.SetResets(ResetTable("lab", "a"), []VIP{v}); err != nil {
			t.Fatal(err)
		}
		if err := m.Add(v, 0); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	target := net.JoinHostPort(v.Addr().String(), strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	dial := func() error {
		return <-goInNS(b, func() error {
			c, err := net.DialTimeout(network, target, 500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
	}

	// Served: a new address (and, for IPv6, the hosts' own) is usable only a moment after it was added (IPv6
	// finishes adding it from a work queue, even without DAD); meanwhile the rule refuses, as it should.
	served := func() error {
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if err = dial(); err == nil {
				return nil
			}
		}
		return err
	}
	if err := served(); err != nil {
		t.Fatalf("while the VIP is here: %v", err)
	}
	// A connection accepted while the VIP is here, whose client waits for an answer that the server has not
	// sent yet: Remove resets it, or the client would wait for its own timeout.
	var silent net.Listener
	inNS(t, a, func() {
		var err error
		if silent, err = net.Listen(network, ":0"); err != nil {
			t.Fatal(err)
		}
	})
	held := make(chan net.Conn, 1)
	go func() {
		c, err := silent.Accept()
		if err == nil {
			held <- c // kept open, never written to
		}
		close(held)
	}()
	waiting := goInNS(b, func() error {
		c, err := net.DialTimeout(network, net.JoinHostPort(v.Addr().String(), strconv.Itoa(silent.Addr().(*net.TCPAddr).Port)), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	})
	c := <-held
	silent.Close()
	if c == nil {
		t.Fatal("the waiting connection was not accepted")
	}
	defer c.Close()
	start := time.Now()
	inNS(t, a, func() {
		if err := m.Remove(v); err != nil {
			t.Fatal(err)
		}
	})
	if err := <-waiting; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("a client waiting on a connection to the VIP got %v when the VIP left, want a reset", err)
	} else if took := time.Since(start); took > time.Second {
		t.Errorf("the waiting client was reset only after %v", took)
	}
	start = time.Now()
	if err := dial(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the VIP left: %v, want connection refused (a TCP reset)", err)
	} else if took := time.Since(start); took > 400*time.Millisecond {
		t.Errorf("refused only after %v", took)
	}
	var who string
	inNS(t, b, func() {
		var err error
		if who, err = WhoAnswers("vb", v.Addr()); err != nil {
			t.Fatal(err)
		}
	})
	if who != "" {
		t.Errorf("%s answers ARP for the VIP it gave up", who)
	}

	// Back again: the rule steps aside while the address is local.
	inNS(t, a, func() {
		if err := m.Add(v, 0); err != nil {
			t.Fatal(err)
		}
	})
	if err := served(); err != nil {
		t.Errorf("with the VIP back: %v", err)
	}

	inNS(t, a, func() {
		if err := m.Remove(v); err != nil {
			t.Fatal(err)
		}
		for range 2 { // deleting a table that is gone is not an error
			if err := m.ClearResets(ResetTable("lab", "a")); err != nil {
				t.Fatal(err)
			}
		}
	})
	var nerr net.Error
	if err := dial(); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("without the rule: %v, want a timeout (the SYN dropped in silence)", err)
	}
}

// TestKeepConnections: a VIP with tcp_reset: false. Remove leaves a waiting connection alone (its client hears
// nothing until its own timeout or a retransmission reaches the next owner), and without the rule a new
// connection's SYN goes unanswered: nothing refuses a client that backs off after a refused dial.
func TestKeepConnections(t *testing.T) {
	needRoot(t)
	a, b := newPair(t)
	run(t, "ip", "-n", a, "addr", "add", "10.77.3.11/24", "dev", "va", "nodad")
	run(t, "ip", "-n", b, "addr", "add", "10.77.3.2/24", "dev", "vb", "nodad")
	v := mustParse(t, "10.77.3.100/24", "va")
	run(t, "ip", "-n", b, "neigh", "replace", v.Addr().String(), "lladdr", macA.String(), "dev", "vb", "nud", "permanent")

	m := NewManager(testLog(t))
	m.KeepConnections([]netip.Addr{v.Addr()})
	var ln net.Listener
	inNS(t, a, func() {
		var err error
		if ln, err = net.Listen("tcp4", ":0"); err != nil {
			t.Fatal(err)
		}
		if err := m.Add(v, 0); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c // kept open, never written to
		}
		close(held)
	}()
	target := net.JoinHostPort(v.Addr().String(), strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	var waiting <-chan error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// The address is usable a moment after it was added.
		connected := make(chan struct{})
		waiting = goInNS(b, func() error {
			c, err := net.DialTimeout("tcp4", target, 200*time.Millisecond)
			if err != nil {
				return err
			}
			close(connected)
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = c.Read(make([]byte, 1))
			return err
		})
		select {
		case <-connected:
		case err := <-waiting:
			if time.Now().After(deadline) {
				t.Fatalf("while the VIP is here: %v", err)
			}
			continue
		}
		break
	}
	c := <-held
	if c == nil {
		t.Fatal("the waiting connection was not accepted")
	}
	defer c.Close()
	inNS(t, a, func() {
		if err := m.Remove(v); err != nil {
			t.Fatal(err)
		}
	})
	var nerr net.Error
	if err := <-waiting; !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("a client waiting on a connection to a VIP with tcp_reset off got %v when the VIP left, want its own read timeout", err)
	}
	if err := <-goInNS(b, func() error {
		c, err := net.DialTimeout("tcp4", target, 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err
	}); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("dialing the VIP after it left: %v, want a timeout (no rule, the SYN dropped in silence)", err)
	}
}
