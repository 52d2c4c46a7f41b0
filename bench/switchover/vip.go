package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/proctest"
)

const vip = "10.77.0.100"

// vipTrials is the -vip variant: switchovers of a VIP in the namespace lab,
// measured by a client that connects every `every`.
func vipTrials(trials int, every time.Duration, keep bool) {
	benchkit.NeedRoot("network namespaces")
	dir, err := os.MkdirTemp("", "baton-bench-")
	benchkit.Check(err)
	if keep {
		fmt.Fprintf(os.Stderr, "switchover: logs stay in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	l, err := lab.New(lab.Options{Hosts: 3})
	benchkit.Check(err)
	defer l.Close()
	c, err := l.StartCluster(lab.ClusterSpec{Bin: bin, Dir: dir, Profile: "default", VIP: vip + "/24"})
	benchkit.Check(err)
	defer c.Stop()
	holder, err := c.WaitHolder(vip, "", 30*time.Second)
	benchkit.Check(err)
	pr, err := l.StartProber(vip+":8080", every)
	benchkit.Check(err)
	arp, err := l.StartARPWatch(vip, 10*time.Millisecond)
	benchkit.Check(err)
	time.Sleep(time.Second)

	var gaps []time.Duration
	var refused, timedOut, other int
	for i := 1; i <= trials; i++ {
		to := c.Members[0]
		if holder == to {
			to = c.Members[1]
		}
		asked := time.Now()
		benchkit.Check(c.Switchover(c.Witness, to))
		if _, err := c.WaitHolder(vip, to, 10*time.Second); err != nil {
			benchkit.Check(fmt.Errorf("trial %d: %w", i, err))
		}
		if !pr.WaitServed(to, asked, 10*time.Second) {
			benchkit.Check(fmt.Errorf("trial %d: the client was not served by %s within 10 s", i, to))
		}
		// Let the probes in flight finish (each ends within its timeout).
		time.Sleep(2 * probe.DefaultTimeout)
		t := switchGap(pr.Probes(), asked, holder, to)
		gaps = append(gaps, t.gap)
		refused += t.refused
		timedOut += t.timedOut
		other += t.other
		fmt.Fprintf(os.Stderr, "trial %d (asked %s): %s → %s: client gap %v (%d refused, %d timed out, %d other failures)\n",
			i, asked.Format("15:04:05.000"), holder, to, t.gap.Round(time.Millisecond/10), t.refused, t.timedOut, t.other)
		holder = to
		time.Sleep(500 * time.Millisecond)
	}
	pr.Stop()
	rep := arp.Stop()
	fmt.Printf("# switchover through a VIP (namespace lab), profile default, %d trials, client connecting every %v (timeout %v), %s\n\n",
		trials, every, probe.DefaultTimeout, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| measure | trials | p50 | p90 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|")
	row("client gap through the VIP", gaps)
	fmt.Printf("\nfailed connection attempts between: %d refused (TCP reset), %d timed out (SYN dropped), %d other; "+
		"ARP rounds %d, with two MACs answering: %d\n", refused, timedOut, other, rep.Rounds, rep.DualRounds)
}

type switchTrial struct {
	gap                      time.Duration
	refused, timedOut, other int
}

// switchGap is the client gap of one switchover from `from` to `to` asked at
// `asked`: the start of the first answer from `to` minus the start of the
// last answer from `from` before it, and how the attempts that started in
// between failed.
func switchGap(ps []probe.Probe, asked time.Time, from, to string) switchTrial {
	var lastOld, firstNew time.Time
	for _, p := range ps {
		if p.OK() && p.Who == to && !p.At.Before(asked) {
			firstNew = p.At
			break
		}
	}
	for _, p := range ps {
		if p.OK() && p.Who == from && p.At.Before(firstNew) {
			lastOld = p.At
		}
	}
	t := switchTrial{gap: firstNew.Sub(lastOld)}
	for _, p := range ps {
		if p.OK() || !p.At.After(lastOld) || !p.At.Before(firstNew) {
			continue
		}
		switch {
		case strings.Contains(p.Err, "connection refused"):
			t.refused++
		case strings.Contains(p.Err, "timeout"), strings.Contains(p.Err, "deadline exceeded"):
			t.timedOut++
		default:
			t.other++
		}
	}
	return t
}
