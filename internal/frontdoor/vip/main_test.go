package vip

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/testkit"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vip: NOT ROOT: the tests that need network namespaces (most of them) will be SKIPPED")
	}
	goleak.VerifyTestMain(m)
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// The lab: every test that touches the kernel runs in network namespaces it creates (and deletes), with
// addresses from 10.77.0.0/16 and fd77::/16 on veth interfaces inside them. Nothing touches the host's
// own interfaces.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to create network namespaces (run the tests as root to cover the kernel side)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("SKIPPED: needs the ip command (apt-get install iproute2)")
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

var nsSeq atomic.Int64

// newNS creates a network namespace with lo up and IPv6 duplicate address detection off (so link-local addresses
// are usable at once), and deletes it when the test ends.
func newNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("bvip%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	run(t, "ip", "netns", "exec", name, "sysctl", "-qw",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// newSolo returns a namespace with an up interface d0: one end of a veth pair whose other end, d1, is in the same
// namespace (this kernel may have no dummy driver).
func newSolo(t *testing.T) string {
	ns := newNS(t)
	run(t, "ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	run(t, "ip", "-n", ns, "link", "set", "d0", "up")
	run(t, "ip", "-n", ns, "link", "set", "d1", "up")
	return ns
}

var (
	macA = net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x0b}
)

// newPair returns two namespaces joined by a veth pair: va (MAC macA) in a, vb (macB) in b.
func newPair(t *testing.T) (a, b string) {
	a, b = newNS(t), newNS(t)
	run(t, "ip", "-n", a, "link", "add", "va", "address", macA.String(), "type", "veth",
		"peer", "name", "vb", "address", macB.String(), "netns", b)
	run(t, "ip", "-n", a, "link", "set", "va", "up")
	run(t, "ip", "-n", b, "link", "set", "vb", "up")
	waitLinkLocal(t, a, "va")
	waitLinkLocal(t, b, "vb")
	return a, b
}

func waitLinkLocal(t *testing.T, ns, ifname string) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "a usable link-local address on "+ifname+" in "+ns, func() bool {
		out, err := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", ifname, "scope", "link").CombinedOutput()
		return err == nil && strings.Contains(string(out), "inet6 fe80") && !strings.Contains(string(out), "tentative")
	})
}

// enterNS moves the calling goroutine, locked to its thread, into namespace name; restore moves it back.
func enterNS(name string) (restore func(), err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return nil, err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return nil, err
	}
	return func() {
		defer orig.Close()
		if netns.Set(orig) != nil {
			return // the thread stays locked, and the runtime retires it with its goroutine
		}
		runtime.UnlockOSThread()
	}, nil
}

// inNS runs fn on the test's goroutine inside namespace name.
func inNS(t testing.TB, name string, fn func()) {
	t.Helper()
	restore, err := enterNS(name)
	if err != nil {
		t.Fatalf("entering %s: %v", name, err)
	}
	defer restore()
	fn()
}

// goInNS runs fn in a new goroutine inside namespace name and sends its error on the returned channel.
func goInNS(name string, fn func() error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		restore, err := enterNS(name)
		if err != nil {
			errc <- fmt.Errorf("entering %s: %w", name, err)
			return
		}
		defer restore()
		errc <- fn()
	}()
	return errc
}

func mustParse(t testing.TB, address, iface string) VIP {
	t.Helper()
	v, err := Parse(address, iface)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
