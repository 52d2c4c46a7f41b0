package vip

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/internal/testkit"
)

// kernelEntry reads v's entry back from the kernel (in the current namespace).
func kernelEntry(t testing.TB, v VIP) (netlink.Addr, bool) {
	t.Helper()
	l, err := netlink.LinkByName(v.Interface)
	if err != nil {
		t.Fatal(err)
	}
	es, err := entries(l, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) > 1 {
		t.Fatalf("%s is on %s %d times: %v", v.Addr(), v.Interface, len(es), es)
	}
	if len(es) == 0 {
		return netlink.Addr{}, false
	}
	return es[0], true
}

func TestManager(t *testing.T) {
	needRoot(t)
	for _, address := range []string{"10.77.0.100/24", "fd77::100/64"} {
		t.Run(address, func(t *testing.T) {
			t.Parallel()
			ns := newSolo(t)
			v := mustParse(t, address, "d0")
			m := NewManager(testLog(t))
			inNS(t, ns, func() {
				present := func() bool {
					ok, err := m.Present(v)
					if err != nil {
						t.Fatal(err)
					}
					return ok
				}
				lifetime := func() (valid, preferred int) {
					e, ok := kernelEntry(t, v)
					if !ok {
						t.Fatalf("%s is not on d0", v.Addr())
					}
					if e.IPNet.String() != v.Prefix.String() {
						t.Errorf("kernel has %s, want %s", e.IPNet, v.Prefix)
					}
					if v.Addr().Is6() && e.Flags&unix.IFA_F_NODAD == 0 {
						t.Errorf("IPv6 VIP added without nodad (flags %#x)", e.Flags)
					}
					return e.ValidLft, e.PreferedLft
				}

				if present() {
					t.Fatal("present before Add")
				}
				if err := m.Renew(v, 3*time.Second); !errors.Is(err, ErrNotPresent) {
					t.Fatalf("Renew before Add: %v, want ErrNotPresent", err)
				}
				for range 2 { // idempotent
					if err := m.Add(v, 2500*time.Millisecond); err != nil {
						t.Fatal(err)
					}
				}
				if !present() {
					t.Fatal("not present after Add")
				}
				if valid, pref := lifetime(); valid < 1 || valid > 3+1 || pref < 1 || pref > 3+1 {
					t.Errorf("after Add(2.5s): valid_lft %d, preferred_lft %d; want ceil(2.5s)=3 (±1)", valid, pref)
				}
				for range 2 {
					if err := m.Renew(v, 20*time.Second); err != nil {
						t.Fatal(err)
					}
				}
				if valid, pref := lifetime(); valid < 18 || valid > 21 || pref < 18 || pref > 21 {
					t.Errorf("after Renew(20s): valid_lft %d, preferred_lft %d", valid, pref)
				}
				if err := m.Renew(v, 300*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				if valid, _ := lifetime(); valid < 0 || valid > 1 { // never 0 = forever for a short lifetime
					t.Errorf("after Renew(300ms): valid_lft %d, want 1", valid)
				}
				if err := m.Renew(v, 0); err != nil {
					t.Fatal(err)
				}
				if valid, pref := lifetime(); valid != 0xFFFFFFFF || pref != 0xFFFFFFFF {
					t.Errorf("after Renew(0): valid_lft %d, preferred_lft %d; want forever", valid, pref)
				}
				if err := m.Renew(v, -time.Second); err == nil {
					t.Error("Renew with a negative lifetime succeeded")
				}

				for range 2 { // idempotent
					if err := m.Remove(v); err != nil {
						t.Fatal(err)
					}
				}
				if present() {
					t.Fatal("present after Remove")
				}
				if err := m.Renew(v, time.Second); !errors.Is(err, ErrNotPresent) {
					t.Errorf("Renew after Remove: %v, want ErrNotPresent (Renew must not bring the address back)", err)
				}
				if present() {
					t.Fatal("Renew brought the address back")
				}
				if err := m.Announce(v, 1, 0); !errors.Is(err, ErrNotPresent) {
					t.Errorf("Announce of an absent address: %v, want ErrNotPresent", err)
				}

				// Remove takes the address off whatever prefix length it has.
				other := VIP{Prefix: netip.PrefixFrom(v.Addr(), v.Addr().BitLen()), Interface: "d0"}
				if err := m.Add(other, 0); err != nil {
					t.Fatal(err)
				}
				if !present() {
					t.Fatal("Present ignores an entry with another prefix length")
				}
				if err := m.Remove(v); err != nil {
					t.Fatal(err)
				}
				if present() {
					t.Fatal("Remove left the entry with another prefix length")
				}
			})
		})
	}
}

func TestManagerNoInterface(t *testing.T) {
	needRoot(t)
	ns := newNS(t)
	m := NewManager(testLog(t))
	v := mustParse(t, "10.77.0.100/24", "eth9")
	const want = `interface "eth9": no such interface on this host`
	inNS(t, ns, func() {
		if _, err := m.Present(v); !errors.Is(err, ErrNoInterface) || err.Error() != want {
			t.Errorf("Present: %v", err)
		}
		if err := m.Remove(v); err != nil {
			t.Errorf("Remove: %v, want nil (no interface, no address)", err)
		}
		if err := m.Add(v, 0); !errors.Is(err, ErrNoInterface) || err.Error() != "adding 10.77.0.100/24 on eth9: "+want {
			t.Errorf("Add: %v", err)
		}
		if err := m.Renew(v, 0); !errors.Is(err, ErrNoInterface) {
			t.Errorf("Renew: %v", err)
		}
		if err := m.Add(VIP{Interface: "eth9"}, 0); err == nil {
			t.Error("Add of the zero VIP succeeded")
		}
	})
}

// TestKernelLifetime checks the last line of defence: an address nobody renews goes away by itself.
func TestKernelLifetime(t *testing.T) {
	needRoot(t)
	for _, address := range []string{"10.77.0.101/24", "fd77::101/64"} {
		t.Run(address, func(t *testing.T) {
			t.Parallel()
			ns := newSolo(t)
			v := mustParse(t, address, "d0")
			m := NewManager(testLog(t))
			inNS(t, ns, func() {
				if err := m.Add(v, time.Second); err != nil {
					t.Fatal(err)
				}
				took := testkit.WaitFor(t, 5*time.Second, "the kernel to expire the VIP", func() bool {
					ok, err := m.Present(v)
					return err == nil && !ok
				})
				t.Logf("the kernel removed %s %v after Add with a 1 s lifetime", v, took.Round(time.Millisecond))
			})
		})
	}
}

func TestRemoveStale(t *testing.T) {
	needRoot(t)
	ns := newSolo(t)
	owned := mustParse(t, "10.77.4.1/24", "d0")
	stale := mustParse(t, "10.77.4.2/24", "d0")
	stale6 := mustParse(t, "fd77:4::2/64", "d0")
	absent := mustParse(t, "10.77.4.3/24", "d0")
	noIface := mustParse(t, "10.77.4.4/24", "nope0")
	m := NewManager(testLog(t))
	inNS(t, ns, func() {
		for _, v := range []VIP{owned, stale, stale6} {
			if err := m.Add(v, 0); err != nil {
				t.Fatal(err)
			}
		}
		removed, err := RemoveStale([]VIP{owned, stale, absent, noIface, stale6}, func(v VIP) bool { return v == owned })
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(removed, []VIP{stale, stale6}) {
			t.Errorf("removed %v, want %v", removed, []VIP{stale, stale6})
		}
		for v, want := range map[VIP]bool{owned: true, stale: false, stale6: false, absent: false} {
			if ok, err := m.Present(v); err != nil || ok != want {
				t.Errorf("%s present: %v, %v; want %v", v, ok, err, want)
			}
		}
	})
}

// TestSharedSubnet: removing one VIP must not take another VIP of the same subnet with it (the kernel does that to
// the secondaries of a primary address unless promote_secondaries is on, which Add turns on).
func TestSharedSubnet(t *testing.T) {
	needRoot(t)
	ns := newSolo(t)
	first := mustParse(t, "10.77.6.1/24", "d0")
	second := mustParse(t, "10.77.6.2/24", "d0")
	m := NewManager(testLog(t))
	inNS(t, ns, func() {
		const sysctl = "/proc/sys/net/ipv4/conf/d0/promote_secondaries"
		if err := os.WriteFile(sysctl, []byte("0\n"), 0o644); err != nil { // as in a fresh namespace without systemd
			t.Fatal(err)
		}
		for _, v := range []VIP{first, second} {
			if err := m.Add(v, 0); err != nil {
				t.Fatal(err)
			}
		}
		if b, err := os.ReadFile(sysctl); err != nil || string(b) != "1\n" {
			t.Errorf("promote_secondaries after Add: %q, %v", b, err)
		}
		if err := m.Remove(first); err != nil {
			t.Fatal(err)
		}
		if ok, err := m.Present(second); err != nil || !ok {
			t.Errorf("removing %s took %s along (present %v, %v)", first, second, ok, err)
		}
	})
}
