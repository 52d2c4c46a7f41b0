package labtest

import (
	"os"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
)

const (
	aaVIP0 = "10.77.0.100"
	aaVIP1 = "10.77.0.101"
)

// An active-active group with two VIPs on two members: each member holds
// one; kill -9 of one member's agent moves its VIP to the survivor while the
// other VIP is served throughout, and no VIP is ever answered by two MACs.
func TestActiveActiveVIPs(t *testing.T) {
	l, err := lab.New(lab.Options{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	c, err := l.StartCluster(lab.ClusterSpec{Bin: bin, Dir: dir, GroupExtra: "    mode: active-active\n    vips:\n" +
		"      - {address: " + aaVIP0 + "/24, interface: eth0}\n      - {address: " + aaVIP1 + "/24, interface: eth0}\n"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Stop()
		if t.Failed() {
			for _, h := range l.Hosts() {
				b, _ := os.ReadFile(dir + "/" + h + ".log")
				t.Logf("=== %s.log (tail) ===\n%s", h, tail(string(b), 3000))
			}
		}
	}()
	// Spread: slot 0 is at home on h1 (highest priority), slot 1 on h2.
	if _, err := c.WaitHolder(aaVIP0, "h1", liveness); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHolder(aaVIP1, "h2", liveness); err != nil {
		t.Fatal(err)
	}
	p0, err := l.StartProber(aaVIP0+":8080", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := l.StartProber(aaVIP1+":8080", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w0, err := l.StartARPWatch(aaVIP0, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := l.StartARPWatch(aaVIP1, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	if err := c.KillAgent("h1"); err != nil {
		t.Fatal(err)
	}
	if !p0.WaitServed("h2", killed, liveness) {
		t.Fatalf("%s not served by h2 after h1 died", aaVIP0)
	}
	if _, err := c.WaitHolder(aaVIP0, "h2", liveness); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	moved := probe.Worst(p0.Stop(), killed).Duration
	untouched := probe.Outages(p1.Stop(), killed)
	r0, r1 := w0.Stop(), w1.Stop()
	t.Logf("moved VIP outage %v; untouched VIP outages %d; ARP dual rounds %d/%d", moved.Round(time.Millisecond), len(untouched), r0.DualRounds, r1.DualRounds)
	if len(untouched) != 0 {
		t.Errorf("the VIP h2 already held had outages when h1 died: %+v", untouched)
	}
	if r0.DualRounds != 0 || r1.DualRounds != 0 {
		t.Errorf("two MACs answered for a VIP: %d and %d rounds", r0.DualRounds, r1.DualRounds)
	}
	// h1 returns; without failback the VIPs stay where they are.
	if err := c.StartAgent("h1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for _, v := range []string{aaVIP0, aaVIP1} {
		if h, err := c.HoldersOf(v); err != nil || len(h) != 1 || h[0] != "h2" {
			t.Errorf("%s on %v after h1 returned (failback: false), want h2 alone", v, h)
		}
	}
}
