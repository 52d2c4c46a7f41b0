// Package labtest runs Baton with real VIPs in the network-namespace lab
// (root only): members and a witness on a bridge, and a client namespace that
// probes VIP:port every 5 ms and watches ARP for a second owner. It covers the
// faults (kill -9, SIGSTOP, link down, partitions, packet loss that must not
// cause a failover) over IPv4 and IPv6, a VIP moved by a live reload,
// active-active VIP spreading, a PostgreSQL group's acknowledged writes across
// a failover, `baton demo --vip`, and the README's quick start run from its
// own text blocks.
package labtest

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/proctest"
)

const (
	vip      = "10.77.0.100"
	liveness = 20 * time.Second
)

var bin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "\n*** SKIPPING the namespace lab suite: it needs root (ip netns, nftables). Run scripts/test as root. ***")
		os.Exit(0)
	}
	os.Exit(proctest.RunWithBinary(m, &bin))
}

type env struct {
	t   *testing.T
	l   *lab.Lab
	c   *lab.Cluster
	pr  *probe.Prober
	arp *lab.ARPWatch
	dir string
}

func setup(t *testing.T, profile string) *env {
	t.Helper()
	l, err := lab.New(lab.Options{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e := &env{t: t, l: l, dir: t.TempDir()}
	e.c, err = l.StartCluster(lab.ClusterSpec{Bin: bin, Dir: e.dir, Profile: profile, VIP: vip + "/24"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.c.Stop()
		if t.Failed() {
			for _, h := range l.Hosts() {
				b, _ := os.ReadFile(e.dir + "/" + h + ".log")
				t.Logf("=== %s.log (head) ===\n%s\n=== (tail) ===\n%s", h, head(string(b), 2500), tail(string(b), 2500))
			}
		}
	})
	e.waitOwner("h1")
	e.pr, err = l.StartProber(vip+":8080", 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	e.arp, err = l.StartARPWatch(vip, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	return e
}

// startLab builds a lab with opts and starts spec's cluster on it (Bin and Dir
// filled in); both are stopped at the end of the test, which logs the tail of
// every agent's log if it failed.
func startLab(t *testing.T, opts lab.Options, spec lab.ClusterSpec) (*lab.Lab, *lab.Cluster) {
	t.Helper()
	l, err := lab.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	spec.Bin, spec.Dir = bin, t.TempDir()
	c, err := l.StartCluster(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, h := range l.Hosts() {
				b, _ := os.ReadFile(spec.Dir + "/" + h + ".log")
				t.Logf("=== %s.log (tail) ===\n%s", h, tail(string(b), 3000))
			}
		}
	})
	return l, c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitOwner waits until `want` owns the group, holds the VIP alone, and the
// client gets answers from it.
func (e *env) waitOwner(want string) {
	e.t.Helper()
	deadline := time.Now().Add(liveness)
	for time.Now().Before(deadline) {
		owner, _, err := e.c.Owner(e.c.Witness)
		holders, herr := e.c.HoldersOf(vip)
		if err == nil && herr == nil && owner == want && len(holders) == 1 && holders[0] == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	owner, epoch, err := e.c.Owner(e.c.Witness)
	holders, _ := e.c.HoldersOf(vip)
	e.t.Fatalf("want %s to own the group and hold the VIP alone; owner %s@%d (%v), VIP on %v", want, owner, epoch, err, holders)
}

// served waits until the prober gets an answer from `who` after t0.
func (e *env) served(who string, t0 time.Time) time.Duration {
	e.t.Helper()
	deadline := time.Now().Add(liveness)
	for time.Now().Before(deadline) {
		for _, p := range e.pr.Probes() {
			if p.At.After(t0) && p.Who == who {
				return p.At.Sub(t0)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("the client was not served by %s after the fault", who)
	return 0
}

// finish stops the observers and checks: never two MACs answering ARP for
// the VIP, and exactly one owner, holding the VIP, agreed on by every node.
func (e *env) finish() lab.ARPReport {
	e.t.Helper()
	rep := e.arp.Stop()
	e.pr.Stop()
	if rep.DualRounds > 0 || rep.MaxDistinctMACs > 1 {
		e.t.Errorf("two hosts answered ARP for the VIP in %d of %d rounds: %v", rep.DualRounds, rep.Rounds, rep.MACs)
	}
	var owners []string
	for _, h := range e.l.Hosts() {
		o, _, err := e.c.Owner(h)
		if err != nil {
			e.t.Errorf("%s: %v", h, err)
			continue
		}
		owners = append(owners, o)
	}
	holders, _ := e.c.HoldersOf(vip)
	if len(holders) != 1 || owners[0] == "" || holders[0] != owners[0] || strings.Count(strings.Join(owners, ","), owners[0]) != len(owners) {
		e.t.Errorf("after heal: owners seen by h1..h3 = %v, VIP on %v; want exactly one owner holding it", owners, holders)
	}
	return rep
}

func TestKill9Owner(t *testing.T) {
	e := setup(t, "default")
	t0 := time.Now()
	if err := e.c.KillAgent("h1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("client served by h2 %v after kill -9 of h1's agent", e.served("h2", t0).Round(time.Millisecond))
	e.waitOwner("h2")
	if err := e.c.StartAgent("h1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	e.finish()
}

func TestSIGSTOPOwner(t *testing.T) {
	e := setup(t, "default")
	t0 := time.Now()
	if err := e.c.Agent("h1").Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Logf("client served by h2 %v after SIGSTOP of h1's agent", e.served("h2", t0).Round(time.Millisecond))
	e.waitOwner("h2")
	time.Sleep(time.Second)
	if err := e.c.Agent("h1").Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	e.finish()
}

func TestOwnerLinkDown(t *testing.T) {
	e := setup(t, "default")
	t0 := time.Now()
	if err := e.l.LinkDown("h1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("client served by h2 %v after h1's link went down", e.served("h2", t0).Round(time.Millisecond))
	time.Sleep(time.Second)
	if err := e.l.Heal(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	e.finish()
}

// TestOwnerPartitioned: the owner is cut off from both peers but the client
// still reaches it — the case where keepalived ends with two masters.
func TestOwnerPartitioned(t *testing.T) {
	e := setup(t, "default")
	t0 := time.Now()
	if err := e.l.Partition([]string{"h1"}, []string{"h2", "h3"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("client served by h2 %v after h1 was partitioned", e.served("h2", t0).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	if holders, _ := e.c.HoldersOf(vip); len(holders) != 1 || holders[0] != "h2" {
		t.Errorf("during the partition the VIP is on %v, want only h2", holders)
	}
	if err := e.l.Heal(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	e.finish()
}

func TestWitnessCutOffNoFailover(t *testing.T) {
	e := setup(t, "default")
	if err := e.l.Partition([]string{"h3"}, []string{"h1", "h2"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	if err := e.l.Heal(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, epoch, _ := e.c.Owner("h3"); epoch != 1 {
		t.Errorf("epoch %d after the witness was cut off: a failover happened", epoch)
	}
	// A probe can time out (50 ms) on a loaded machine; a failover would
	// cost the client ≥ 400 ms, so only longer gaps count.
	for _, o := range probe.Outages(e.pr.Probes(), time.Time{}) {
		if o.Duration > 250*time.Millisecond {
			t.Errorf("client outage of %v while only the witness was cut off: %+v", o.Duration, o)
		}
	}
	e.finish()
}

func TestTenPercentLossNoFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s loss run skipped in -short mode")
	}
	e := setup(t, "default")
	if err := e.l.Loss(e.l.Hosts(), 10); err != nil {
		t.Fatal(err)
	}
	time.Sleep(60 * time.Second)
	if err := e.l.Heal(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, epoch, _ := e.c.Owner("h3"); epoch != 1 {
		t.Errorf("epoch %d after 60 s of 10%% loss: false failover", epoch)
	}
	e.finish()
}

func head(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
