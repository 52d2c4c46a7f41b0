package labtest

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/ndp"

	"github.com/baton-ha/baton/internal/lab"
)

// TestIPv6VIP: an IPv6 VIP moves on kill -9 of the owner's agent, the new
// owner's unsolicited neighbour advertisements are seen from the client
// namespace, and the client is served over IPv6 again.
func TestIPv6VIP(t *testing.T) {
	const vip6 = "fd77::100"
	l, c := startLab(t, lab.Options{Hosts: 3, IPv6: true}, lab.ClusterSpec{VIP: vip6 + "/64"})
	waitHolder := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(liveness); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if h, _ := c.HoldersOf(vip6); len(h) == 1 && h[0] == want {
				return
			}
		}
		h, _ := c.HoldersOf(vip6)
		t.Fatalf("VIP %s on %v, want only %s", vip6, h, want)
	}
	waitHolder("h1")

	// Listen for neighbour advertisements in the client namespace.
	var conn *ndp.Conn
	if err := l.InNS(lab.Client, func() error {
		ifi, err := net.InterfaceByName(l.Iface())
		if err != nil {
			return err
		}
		conn, _, err = ndp.Listen(ifi, ndp.LinkLocal)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	type advert struct {
		target netip.Addr
		lladdr string
		over   bool
	}
	var mu sync.Mutex
	var seen []advert
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			m, _, _, err := conn.ReadFrom()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					select {
					case <-stop:
						return
					default:
						continue
					}
				}
				return
			}
			if na, ok := m.(*ndp.NeighborAdvertisement); ok {
				a := advert{target: na.TargetAddress, over: na.Override}
				for _, o := range na.Options {
					if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
						a.lladdr = lla.Addr.String()
					}
				}
				mu.Lock()
				seen = append(seen, a)
				mu.Unlock()
			}
		}
	}()
	pr, err := l.StartProber("["+vip6+"]:8080", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	t0 := time.Now()
	if err := c.KillAgent("h1"); err != nil {
		t.Fatal(err)
	}
	waitHolder("h2")
	served := false
	for deadline := time.Now().Add(liveness); time.Now().Before(deadline) && !served; time.Sleep(10 * time.Millisecond) {
		for _, p := range pr.Probes() {
			if p.At.After(t0) && p.Who == "h2" {
				served = true
				t.Logf("client served by h2 over IPv6 %v after kill -9 of h1's agent", p.At.Sub(t0).Round(time.Millisecond))
				break
			}
		}
	}
	pr.Stop()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	conn.Close()
	if !served {
		t.Fatal("client not served by h2 over IPv6")
	}
	want := l.MAC("h2").String()
	mu.Lock()
	defer mu.Unlock()
	for _, a := range seen {
		if a.target == netip.MustParseAddr(vip6) && a.lladdr == want && a.over {
			return
		}
	}
	t.Fatalf("no unsolicited NA for %s from h2 (%s) seen in the client namespace; saw %+v", vip6, want, seen)
}
