// Command scale measures Baton with many groups on real agent processes on
// 127.0.x.y (no root): the idle CPU and memory of every agent for 3 nodes ×
// 1 group and for 7 nodes × 200 groups, how long the 200 groups take to all
// have an acting owner after a cold start, and, after kill -9 of the node
// owning the most groups, the client-visible outage of each of its groups.
// As root it also measures keepalived (advert_int 0.1, in the namespace lab)
// in the same window as the 3 × 1 cluster, the reference column. It is a
// benchmark, not a test: run it on a quiet machine and read
// docs/benchmarks.md.
//
//	go run ./bench/scale -idle 20s
//	go run ./bench/scale -rev main -idle 20s -small-only   # the same on a commit, for a before/after
//
// The client of a group is an HTTP prober (internal/probe) on each member's
// role endpoint GET /v1/groups/{g}/active, which answers 200 only on the
// acting owner — what HAProxy or a cloud load balancer checks. A probe of
// the group succeeds when any member answers 200; the outage is the longest
// run of failed probes after the kill (probe.Worst).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	idle := flag.Duration("idle", 20*time.Second, "how long to sample idle CPU")
	groups := flag.Int("groups", 200, "groups of the large cluster")
	rev := flag.String("rev", "", "build this commit instead of the working tree")
	smallOnly := flag.Bool("small-only", false, "measure only the 3 × 1 cluster")
	every := flag.Duration("probe", 20*time.Millisecond, "probe interval per member and group after the kill")
	withKeepalived := flag.Bool("keepalived", true, "measure keepalived (advert_int 0.1, namespace lab, root) beside the 3 × 1 cluster")
	flag.Parse()
	dir, err := os.MkdirTemp("", "baton-scale-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, from, err := proctest.BuildRev(dir, *rev)
	benchkit.Check(err)
	h := benchkit.ThisHost()
	fmt.Printf("# %s\n\nBuilt from %s; %d CPUs (%s), Linux %s, %s; load average before: %s\n\n",
		benchkit.Command("scale"), from, h.NProc, h.CPU, h.Kernel, h.Go, h.LoadAvg)

	small := proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default"}
	c := start(bin, filepath.Join(dir, "small"), small)
	waitActing(c, []string{"web"}, 30*time.Second)
	var refs []reference
	stopRefs := func() {}
	if *withKeepalived {
		refs, stopRefs = startKeepalived(dir)
	}
	time.Sleep(3 * time.Second)
	fmt.Printf("## idle, 3 nodes × 1 group, %v window (keepalived, the reference, in the same window)\n\n", *idle)
	usage(c, *idle, refs...)
	stopRefs()
	c.Stop()
	if *smallOnly {
		return
	}

	members := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	var more strings.Builder
	names := []string{"web"}
	for i := 1; i < *groups; i++ {
		g := fmt.Sprintf("service-%03d", i)
		names = append(names, g)
		fmt.Fprintf(&more, "  - {name: %s, members: [{node: %s, priority: 200}, {node: %s, priority: 100}, {node: %s, priority: 50}]}\n",
			g, members[i%6], members[(i+1)%6], members[(i+2)%6])
	}
	big := proctest.Spec{Members: members, Witness: "w1", Profile: "default", MoreGroups: more.String()}
	c = start(bin, filepath.Join(dir, "big"), big)
	defer c.Stop()
	t0 := time.Now()
	owner := waitActing(c, names, 60*time.Second)
	fmt.Printf("## 7 nodes (6 members + witness) × %d groups\n\n", *groups)
	fmt.Printf("All %d groups had an acting owner %v after the agents were started (target: within 10 s).\n\n",
		len(names), time.Since(t0).Round(10*time.Millisecond))
	time.Sleep(3 * time.Second)
	fmt.Printf("Idle, %v window:\n\n", *idle)
	usage(c, *idle)

	count := map[string][]string{}
	for g, n := range owner {
		count[n] = append(count[n], g)
	}
	victim := slices.MaxFunc(members, func(a, b string) int { return len(count[a]) - len(count[b]) })
	lost := count[victim]
	cfgMembers := membersOf(names, members)
	type groupProbers struct {
		group string
		ps    []*probe.Prober
	}
	var all []groupProbers
	for _, g := range lost {
		gp := groupProbers{group: g}
		for _, m := range cfgMembers[g] {
			p, err := probe.Start(probe.Spec{Kind: probe.HTTP, Target: "http://" + c.APIs[m] + "/v1/groups/" + g + "/active",
				Every: *every, Timeout: 50 * time.Millisecond})
			benchkit.Check(err)
			gp.ps = append(gp.ps, p)
		}
		all = append(all, gp)
	}
	time.Sleep(time.Second)
	killAt := time.Now()
	benchkit.Check(c.Kill(victim))
	time.Sleep(5 * time.Second)
	lists := make([][][]probe.Probe, len(all))
	var wg sync.WaitGroup
	for i, gp := range all {
		for _, p := range gp.ps {
			wg.Add(1)
			lists[i] = append(lists[i], nil)
			go func(j int) { defer wg.Done(); lists[i][j] = p.Stop() }(len(lists[i]) - 1)
		}
	}
	wg.Wait()
	taken := 0
	for n := range c.Addrs {
		if n == victim {
			continue
		}
		if st, err := c.Status(n); err == nil {
			for _, g := range st.Groups {
				if g.Owner == n && g.Role == core.RoleActive && slices.Contains(lost, g.Name) {
					taken++
				}
			}
		}
	}
	if dir := os.Getenv("SCALE_KEEP"); dir != "" {
		_ = os.CopyFS(dir, os.DirFS(c.Dir))
	}
	var outages []time.Duration
	var ongoing int
	for i := range all {
		o := probe.Worst(anyAnswered(lists[i], *every), killAt)
		if o.Ongoing {
			ongoing++
		}
		outages = append(outages, o.Duration)
	}
	slices.Sort(outages)
	q := func(p float64) time.Duration { return outages[min(len(outages)-1, int(p*float64(len(outages))))] }
	fmt.Printf("kill -9 of %s, the owner of %d groups; client-visible outage per group (a probe every %v on each member's role endpoint):\n\n",
		victim, len(lost), *every)
	fmt.Println("| groups | p50 | p99 | max | still down after 5 s |")
	fmt.Println("|---|---|---|---|---|")
	fmt.Printf("| %d | %d ms | %d ms | %d ms | %d |\n\n", len(outages), q(0.5).Milliseconds(), q(0.99).Milliseconds(),
		outages[len(outages)-1].Milliseconds(), ongoing)
	fmt.Printf("5 s after the kill, %d of the %d groups were acting on a survivor (their own status).\n\n", taken, len(lost))
	fmt.Printf("Load average after: %s\n", benchkit.LoadAvg())
}

func start(bin, dir string, spec proctest.Spec) *proctest.Cluster {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	c, err := proctest.New(bin, dir, spec)
	benchkit.Check(err)
	benchkit.Check(c.StartAll())
	return c
}

// waitActing waits until every group has a node that acts for it (its own
// status says owner and active) and returns group → that node.
func waitActing(c *proctest.Cluster, groups []string, limit time.Duration) map[string]string {
	deadline := time.Now().Add(limit)
	for {
		owner := map[string]string{}
		for n := range c.Addrs {
			st, err := c.Status(n)
			if err != nil {
				continue
			}
			for _, g := range st.Groups {
				if g.Owner == n && g.Role == core.RoleActive {
					owner[g.Name] = n
				}
			}
		}
		if len(owner) == len(groups) {
			return owner
		}
		if time.Now().After(deadline) {
			if dir := os.Getenv("SCALE_KEEP"); dir != "" {
				_ = os.CopyFS(dir, os.DirFS(c.Dir))
			}
			benchkit.Check(fmt.Errorf("after %v only %d of %d groups have an acting owner", limit, len(owner), len(groups)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// membersOf repeats the member rule of the generated config.
func membersOf(names, members []string) map[string][]string {
	out := map[string][]string{"web": {"n1", "n2", "n3", "n4", "n5", "n6"}}
	for i := 1; i < len(names); i++ {
		out[names[i]] = []string{members[i%6], members[(i+1)%6], members[(i+2)%6]}
	}
	return out
}

// anyAnswered merges per-member probe lists into one list for the group: a
// slot (one probe interval) is answered when any member answered in it.
func anyAnswered(lists [][]probe.Probe, every time.Duration) []probe.Probe {
	type slot struct {
		at  time.Time
		ok  bool
		who string
	}
	slots := map[int64]*slot{}
	for _, l := range lists {
		for _, p := range l {
			k := p.At.UnixNano() / int64(every)
			s := slots[k]
			if s == nil {
				s = &slot{at: p.At}
				slots[k] = s
			}
			if p.OK() && !s.ok {
				s.ok, s.who = true, p.Who
			}
		}
	}
	var out []probe.Probe
	for _, s := range slots {
		p := probe.Probe{At: s.at, Who: s.who}
		if !s.ok {
			p.Err = "no member answered 200"
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b probe.Probe) int { return a.At.Compare(b.At) })
	return out
}

// usage prints every agent's CPU (% of one core) and RSS over window, and
// the reference processes' in the same window.
func usage(c *proctest.Cluster, window time.Duration, refs ...reference) {
	st, err := c.Status(firstNode(c))
	benchkit.Check(err)
	owns := map[string]int{}
	for _, g := range st.Groups {
		owns[g.Owner]++
	}
	nodes := make([]string, 0, len(c.Addrs))
	for n := range c.Addrs {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	before := map[string]int64{}
	for _, n := range nodes {
		before[n] = benchkit.CPUTicks(c.PID(n))
	}
	refTicks := func(r reference) (ticks, rss int64) {
		for _, pid := range r.pids() {
			ticks += benchkit.CPUTicks(pid)
			rss += benchkit.RSSKB(pid)
		}
		return ticks, rss
	}
	refBefore := make([]int64, len(refs))
	for i, r := range refs {
		refBefore[i], _ = refTicks(r)
	}
	time.Sleep(window)
	fmt.Println("| node | role | CPU (% of one core) | RSS |")
	fmt.Println("|---|---|---|---|")
	hz := 100.0 // USER_HZ on Linux
	pct := func(ticks int64) float64 { return float64(ticks) / hz / window.Seconds() * 100 }
	for _, n := range nodes {
		ticks := benchkit.CPUTicks(c.PID(n)) - before[n]
		role := fmt.Sprintf("owns %d", owns[n])
		if owns[n] == 0 {
			role = "standby"
		}
		if strings.HasPrefix(n, "w") {
			role = "witness"
		}
		if st.Leader == n {
			role += ", raft leader"
		}
		fmt.Printf("| %s | %s | %.2f %% | %.1f MB |\n", n, role, pct(ticks), float64(benchkit.RSSKB(c.PID(n)))/1024)
	}
	for i, r := range refs {
		ticks, rss := refTicks(r)
		fmt.Printf("| %s | %s | %.2f %% | %.1f MB |\n", r.name, r.role, pct(ticks-refBefore[i]), float64(rss)/1024)
	}
	fmt.Println()
}

func firstNode(c *proctest.Cluster) string {
	for n := range c.Addrs {
		if strings.HasPrefix(n, "w") {
			return n
		}
	}
	return "n1"
}
