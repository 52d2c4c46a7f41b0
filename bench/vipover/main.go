// Command vipover measures the client-visible outage of a VIP failover in
// the network-namespace lab (root): two members and a witness on a bridge, a
// client connecting to VIP:8080 every 5 ms from its own namespace, and the
// owner's link pulled or its agent killed with kill -9.
//
//	go run ./bench/vipover -trials 20 -profiles default,fast
//
// With -mode active-active the group has two VIPs, one on each member
// (failback on, so the killed member gets its VIP back between trials); the
// fault hits the holder of the first, and the table also counts outages of
// the second VIP, which should have none.
//
//	go run ./bench/vipover -mode active-active -trials 20 -profiles default,fast
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/drill"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/proctest"
)

const (
	vip  = "10.77.0.100"
	vip2 = "10.77.0.101" // active-active: the second VIP
)

var activeActive bool

func main() {
	trials := flag.Int("trials", 20, "trials per fault and profile")
	profiles := flag.String("profiles", "default,fast", "timing profiles")
	faults := flag.String("faults", "linkdown,kill9", "faults: linkdown, kill9")
	mode := flag.String("mode", "active-passive", "group mode: active-passive (one VIP) or active-active (two VIPs, one per member)")
	flag.Parse()
	activeActive = *mode == "active-active"
	benchkit.NeedRoot("network namespaces")
	dir, err := os.MkdirTemp("", "baton-vipover-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	fmt.Printf("# VIP failover (%s), client-visible outage (last answer before → first answer after), %s\n\n", *mode, time.Now().UTC().Format("2006-01-02"))
	if activeActive {
		fmt.Println("| profile | fault | trials | p50 | p90 | p99 | max | ARP rounds with two MACs | outages of the other VIP |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|")
	} else {
		fmt.Println("| profile | fault | trials | p50 | p90 | p99 | max | ARP rounds with two MACs |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
	}
	for _, p := range strings.Split(*profiles, ",") {
		for _, f := range strings.Split(*faults, ",") {
			d, dual, other := run(bin, filepath.Join(dir, p+"-"+f), p, f, *trials)
			row(p, f, d, dual, other)
		}
	}
}

func run(bin, dir, profile, fault string, trials int) (_ []time.Duration, dual, otherOutages int) {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	l, err := lab.New(lab.Options{Hosts: 3})
	benchkit.Check(err)
	defer l.Close()
	spec := lab.ClusterSpec{Bin: bin, Dir: dir, Profile: profile, VIP: vip + "/24"}
	if activeActive {
		spec.VIP, spec.Failback = "", true
		spec.GroupExtra = "    mode: active-active\n    vips:\n      - {address: " + vip + "/24, interface: eth0}\n" +
			"      - {address: " + vip2 + "/24, interface: eth0}\n"
	}
	c, err := l.StartCluster(spec)
	benchkit.Check(err)
	defer c.Stop()
	holder := waitSingleHolder(c, "")
	pr, err := l.StartProber(vip+":8080", 5*time.Millisecond)
	benchkit.Check(err)
	arp, err := l.StartARPWatch(vip, 20*time.Millisecond)
	benchkit.Check(err)
	var pr2 *probe.Prober
	var arp2 *lab.ARPWatch
	if activeActive {
		_, err := c.WaitHolder(vip2, "", 30*time.Second)
		benchkit.Check(err)
		pr2, err = l.StartProber(vip2+":8080", 5*time.Millisecond)
		benchkit.Check(err)
		arp2, err = l.StartARPWatch(vip2, 20*time.Millisecond)
		benchkit.Check(err)
	}
	if fault != "linkdown" && fault != "kill9" {
		benchkit.Check(fmt.Errorf("-faults: unknown fault %q (want linkdown or kill9)", fault))
	}
	loop := drill.FailoverLoop{
		Members: [2]string{"h1", "h2"},
		Prober:  pr,
		Settle:  1500 * time.Millisecond,
		Fault: func(holder string) error {
			if fault == "linkdown" {
				return l.LinkDown(holder)
			}
			return c.KillAgent(holder)
		},
		Repair: func(holder string) error {
			if fault == "linkdown" {
				return l.Heal()
			}
			return c.StartAgent(holder)
		},
		Next: func(holder, other string) (string, error) {
			if activeActive {
				// Failback returns the first VIP to its home member: same
				// start for every trial, and the other VIP stays put.
				return c.WaitHolder(vip, holder, 30*time.Second)
			}
			return c.WaitHolder(vip, other, 30*time.Second)
		},
		Observe: func(t drill.FailoverTrial) {
			if pr2 != nil {
				time.Sleep(200 * time.Millisecond)
				otherOutages += len(probe.Outages(pr2.Probes(), t.T0))
			}
		},
		Label:    profile + " " + fault,
		Progress: os.Stderr,
	}
	ts, err := loop.Run(holder, trials)
	benchkit.Check(err)
	out := drill.Durations(ts)
	pr.Stop()
	dual = arp.Stop().DualRounds
	if pr2 != nil {
		pr2.Stop()
		dual += arp2.Stop().DualRounds
	}
	return out, dual, otherOutages
}

func waitSingleHolder(c *lab.Cluster, want string) string {
	h, err := c.WaitHolder(vip, want, 30*time.Second)
	benchkit.Check(err)
	return h
}

func row(profile, fault string, d []time.Duration, dual, other int) {
	q := func(p float64) string { return fmt.Sprintf("%d ms", drill.Quantile(d, p).Milliseconds()) }
	fmt.Printf("| %s | %s | %d | %s | %s | %s | %s | %d |", profile, fault, len(d), q(0.5), q(0.9), q(0.99), q(1), dual)
	if activeActive {
		fmt.Printf(" %d |", other)
	}
	fmt.Println()
}
