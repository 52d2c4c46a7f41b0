package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
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
func vipTrials(trials int, every time.Duration, keep bool, out string) {
	benchkit.NeedRoot("network namespaces")
	start, load := time.Now().UTC(), benchkit.LoadAvg()
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
	var refused, timedOut, reset, other int
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
		reset += t.reset
		other += t.other
		fmt.Fprintf(os.Stderr, "trial %d (asked %s): %s → %s: client gap %v (%d refused, %d connects timed out, %d reset after connecting, %d other failures)\n",
			i, asked.Format("15:04:05.000"), holder, to, t.gap.Round(time.Millisecond/10), t.refused, t.timedOut, t.reset, t.other)
		holder = to
		time.Sleep(500 * time.Millisecond)
	}
	pr.Stop()
	rep := arp.Stop()
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s, %d switchovers, client connecting every %v (timeout %v), load average %s at the start, %s at the end:\n\n",
		start.Format("2006-01-02 15:04 UTC"), trials, every, probe.DefaultTimeout, load, benchkit.LoadAvg())
	b.WriteString("```sh\n" + benchkit.Command("switchover") + "\n```\n\n")
	b.WriteString("| measure | trials | p50 | p90 | p99 | max | target p99 |\n|---|---|---|---|---|---|---|\n")
	p99 := quantile(gaps, 0.99)
	mark := "✅"
	if p99 > 50*time.Millisecond {
		mark = "❌"
	}
	fmt.Fprintf(&b, "| client gap through the VIP | %d | %s | %s | %s | %s | ≤ 50 ms %s |\n", len(gaps),
		msStr(quantile(gaps, 0.5)), msStr(quantile(gaps, 0.9)), msStr(p99), msStr(quantile(gaps, 1)), mark)
	fmt.Fprintf(&b, "\nConnection attempts that failed between the old owner's last answer and the new owner's first: %d refused "+
		"at once (TCP reset), %d connects timed out (a SYN dropped in silence), %d connected and then reset (accepted by the old "+
		"owner just before it left), %d other (e.g. accepted but not answered within the timeout on a stalled machine). "+
		"ARP watch: %d rounds, %d with two MACs answering.\n",
		refused, timedOut, reset, other, rep.Rounds, rep.DualRounds)
	fmt.Print(b.String())
	if out != "" {
		root, err := proctest.ModuleRoot()
		benchkit.Check(err)
		path := filepath.Join(root, out, "bench", "switchover-vip.md")
		benchkit.Check(os.WriteFile(path, []byte(b.String()), 0o644))
		fmt.Fprintf(os.Stderr, "switchover: wrote %s\n", path)
	}
}

// quantile is the nearest-rank q-quantile of d (0 for none).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

type switchTrial struct {
	gap                             time.Duration
	refused, timedOut, reset, other int
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
		case strings.HasPrefix(p.Err, "dial") && (strings.Contains(p.Err, "timeout") || strings.Contains(p.Err, "deadline exceeded")):
			t.timedOut++
		case strings.Contains(p.Err, "connection reset"):
			t.reset++
		default:
			t.other++
		}
	}
	return t
}
