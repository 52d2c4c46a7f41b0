package labtest

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
)

// TestReloadMovesTheVIP: a reload (SIGHUP on every agent) changes the
// group's VIP while h1 owns it: the new address comes up on h1 and the old
// one goes, under the same epoch, and no other host ever holds either. The
// fence guards the new address: when h1's agent is then killed, the address
// leaves h1 and h2 takes it over.
func TestReloadMovesTheVIP(t *testing.T) {
	const newVIP = "10.77.0.101"
	l, c := startLab(t, lab.Options{Hosts: 3}, lab.ClusterSpec{VIP: vip + "/24"})
	holders := func(addr string) []string {
		hs, err := c.HoldersOf(addr)
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(liveness)
		for !cond() {
			if time.Now().After(deadline) {
				o, e, _ := c.Owner(c.Witness)
				t.Fatalf("timed out waiting for %s: owner %s@%d, %s on %v, %s on %v", what, o, e, vip, holders(vip), newVIP, holders(newVIP))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("h1 to hold the VIP", func() bool { h := holders(vip); return len(h) == 1 && h[0] == "h1" })
	arpOld, err := l.StartARPWatch(vip, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	arpNew, err := l.StartARPWatch(newVIP, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Config, []byte(strings.Replace(string(b), vip+"/24", newVIP+"/24", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		if err := c.Agent(h).Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	wait("the new VIP on h1 alone and the old one gone", func() bool {
		h := holders(newVIP)
		return len(h) == 1 && h[0] == "h1" && len(holders(vip)) == 0
	})
	if o, e, err := c.Owner(c.Witness); err != nil || o != "h1" || e != 1 {
		t.Fatalf("after the reload: owner %s@%d (%v), want h1@1", o, e, err)
	}

	if err := c.KillAgent("h1"); err != nil {
		t.Fatal(err)
	}
	wait("h2 to take the new VIP over", func() bool { h := holders(newVIP); return len(h) == 1 && h[0] == "h2" })
	for name, w := range map[string]*lab.ARPWatch{vip: arpOld, newVIP: arpNew} {
		if rep := w.Stop(); rep.DualRounds > 0 || rep.MaxDistinctMACs > 1 {
			t.Errorf("two hosts answered ARP for %s in %d of %d rounds: %v", name, rep.DualRounds, rep.Rounds, rep.MACs)
		}
	}
}

// TestReloadAddsTheFirstVIP: a cluster without VIPs gets one by reload while
// h1 owns the group: the agent starts its fence then, and the address comes
// up on h1 alone, under the same epoch.
func TestReloadAddsTheFirstVIP(t *testing.T) {
	l, c := startLab(t, lab.Options{Hosts: 3}, lab.ClusterSpec{})
	deadline := time.Now().Add(liveness)
	for {
		if o, e, err := c.Owner(c.Witness); err == nil && o == "h1" && e == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("h1 did not become the owner")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	withVIP := string(b) + "    vips: [{address: " + vip + "/24, interface: " + l.Iface() + "}]\n"
	if err := os.WriteFile(c.Config, []byte(withVIP), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		if err := c.Agent(h).Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	for {
		hs, err := c.HoldersOf(vip)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 1 && hs[0] == "h1" {
			break
		}
		if time.Now().After(deadline.Add(liveness)) {
			t.Fatalf("the VIP added by reload is on %v, want h1 alone", hs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if o, e, err := c.Owner(c.Witness); err != nil || o != "h1" || e != 1 {
		t.Fatalf("after the reload: owner %s@%d (%v), want h1@1", o, e, err)
	}
}
