// Command killover measures kill -9 → successor's active hook on a real
// three-process cluster on 127.0.0.x (two members + witness), per profile,
// and the idle CPU and memory of one agent. It is a benchmark, not a test:
// run it on a quiet machine and read docs/benchmarks.md.
//
//	go run ./bench/killover -trials 30 -profiles default,fast
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	trials := flag.Int("trials", 30, "kill -9 trials per profile")
	profiles := flag.String("profiles", "default,fast", "comma-separated timing profiles")
	idle := flag.Duration("idle", 30*time.Second, "how long to sample idle CPU")
	flag.Parse()
	dir, err := os.MkdirTemp("", "baton-bench-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	fmt.Printf("# kill -9 → successor active hook; %d trials per profile; %s, %d CPUs, %s\n\n",
		*trials, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| profile | trials | owner was raft leader | p50 | p90 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, p := range strings.Split(*profiles, ",") {
		all, lead, notLead := run(bin, filepath.Join(dir, p), p, *trials)
		printRow(p, "any", all)
		printRow(p, "yes", lead)
		printRow(p, "no", notLead)
	}
	fmt.Println()
	idleUsage(bin, filepath.Join(dir, "idle"), *idle)
}

func printRow(profile, lead string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	q := func(p float64) string { // nearest rank
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return fmt.Sprintf("%d ms", d[max(i, 0)].Milliseconds())
	}
	fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", profile, len(d), lead, q(0.5), q(0.9), q(0.99), q(1))
}

const token = proctest.Token

func run(bin, dir string, profile string, trials int) (all, leader, notLeader []time.Duration) {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: profile,
		Extra: "  keep_leader_off_owners: false\n"})
	benchkit.Check(err)
	defer c.Stop()
	benchkit.Check(c.StartAll())
	for i := 0; i < trials; i++ {
		owner, _, err := c.WaitOwner("w1", 20*time.Second)
		benchkit.Check(err)
		// Every other trial, make the owner the quorum leader (the worst case:
		// an election runs in parallel with the lease hold); otherwise put
		// leadership on the witness, where Baton keeps it by default.
		if i%2 == 1 {
			moveLeadership(c, owner)
		} else {
			moveLeadership(c, "w1")
		}
		time.Sleep(700 * time.Millisecond)
		st, err := c.Status("w1")
		benchkit.Check(err)
		wasLeader := st.Leader == owner
		var other string
		for _, m := range st.Groups[0].Members {
			if m.Node != owner {
				other = m.Node
			}
		}
		killed := time.Now()
		benchkit.Check(c.Kill(owner))
		e, err := c.WaitHook(20*time.Second, func(e proctest.HookEvent) bool {
			return e.Node == other && e.Role == "active" && e.At.After(killed)
		})
		benchkit.Check(err)
		d := e.At.Sub(killed)
		all = append(all, d)
		if wasLeader {
			leader = append(leader, d)
		} else {
			notLeader = append(notLeader, d)
		}
		fmt.Fprintf(os.Stderr, "%s trial %d: owner %s (raft leader: %v) killed → %s active after %v\n",
			profile, i+1, owner, wasLeader, other, d.Round(time.Millisecond))
		benchkit.Check(c.Start(owner))
		_, err = c.WaitHook(20*time.Second, func(e proctest.HookEvent) bool {
			return e.Node == owner && e.Role == "standby" && e.At.After(killed)
		})
		benchkit.Check(err)
	}
	return all, leader, notLeader
}

func moveLeadership(c *proctest.Cluster, to string) {
	for try := 0; try < 20; try++ {
		st, err := c.Status("w1")
		if err == nil && st.Leader == to {
			return
		}
		if err == nil && st.Leader != "" {
			body, _ := json.Marshal(map[string]string{"to": to})
			req, _ := http.NewRequest("POST", "http://"+c.APIs[st.Leader]+"/v1/debug/transfer-leadership", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func idleUsage(bin, dir string, window time.Duration) {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default"})
	benchkit.Check(err)
	defer c.Stop()
	benchkit.Check(c.StartAll())
	_, _, err = c.WaitOwner("w1", 20*time.Second)
	benchkit.Check(err)
	time.Sleep(5 * time.Second)
	st, err := c.Status("w1")
	benchkit.Check(err)
	before := map[string]int64{}
	for n := range c.Addrs {
		before[n] = benchkit.CPUTicks(c.PID(n))
	}
	time.Sleep(window)
	fmt.Printf("# idle agents, profile default, %v window (CPU %% of one core; RSS)\n\n", window)
	fmt.Println("| node | role | CPU | RSS |")
	fmt.Println("|---|---|---|---|")
	hz := 100.0 // USER_HZ on Linux
	for _, n := range []string{"n1", "n2", "w1"} {
		ticks := benchkit.CPUTicks(c.PID(n)) - before[n]
		cpu := float64(ticks) / hz / window.Seconds() * 100
		role := "standby"
		if st.Groups[0].Owner == n {
			role = "owner"
		}
		if n == "w1" {
			role = "witness"
		}
		if st.Leader == n {
			role += ", raft leader"
		}
		fmt.Printf("| %s | %s | %.2f %% | %.1f MB |\n", n, role, cpu, float64(benchkit.RSSKB(c.PID(n)))/1024)
	}
}

var _ = syscall.SIGKILL
