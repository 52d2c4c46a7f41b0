// Command idle measures the idle CPU and memory of each agent of a real
// cluster on 127.0.0.x (two members + witness, profile default), over several
// windows, and can write a CPU profile of every agent for one window. It is a
// benchmark, not a test: the machine's other load shows in the numbers, so it
// prints the range over the windows.
//
//	go run ./bench/idle -windows 3 -window 20s [-groups 1] [-pprof DIR]
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	windows := flag.Int("windows", 3, "measurement windows")
	window := flag.Duration("window", 20*time.Second, "length of one window")
	groups := flag.Int("groups", 1, "groups (all on the two members)")
	settle := flag.Duration("settle", 5*time.Second, "wait after every group has an owner before measuring")
	pprofDir := flag.String("pprof", "", "write a CPU profile of each agent over the first window into this directory")
	flag.Parse()
	dir, err := os.MkdirTemp("", "baton-idle-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default", Groups: *groups})
	benchkit.Check(err)
	defer c.Stop()
	nodes := []string{"n1", "n2", "w1"}
	pprofAddr := map[string]string{}
	for i, n := range nodes {
		if *pprofDir != "" {
			pprofAddr[n] = fmt.Sprintf("%s:%d", c.Addrs[n], c.Port+10+i)
			c.Env[n] = []string{"BATON_PPROF=" + pprofAddr[n]}
		}
		benchkit.Check(c.Start(n))
	}
	waitOwned(c, *groups, 60*time.Second)
	time.Sleep(*settle)
	fmt.Printf("# idle agents: 2 members + witness, profile default, %d group(s); %d windows of %v; %s, %d CPUs, %s\n\n",
		*groups, *windows, *window, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	cpu := map[string][]float64{}
	rss := map[string][]float64{}
	roles := map[string]string{}
	for w := 0; w < *windows; w++ {
		if w == 0 && *pprofDir != "" {
			benchkit.Check(os.MkdirAll(*pprofDir, 0o755))
			done := make(chan struct{})
			for _, n := range nodes {
				go func() {
					defer func() { done <- struct{}{} }()
					profile(pprofAddr[n], *window, filepath.Join(*pprofDir, n+".pprof"))
				}()
			}
			defer func() {
				for range nodes {
					<-done
				}
			}()
		}
		before := map[string]int64{}
		for _, n := range nodes {
			before[n] = cpuTicks(c.PID(n))
		}
		start := time.Now()
		time.Sleep(*window)
		el := time.Since(start).Seconds()
		for _, n := range nodes {
			ticks := cpuTicks(c.PID(n)) - before[n]
			cpu[n] = append(cpu[n], float64(ticks)/100/el*100) // USER_HZ = 100
			rss[n] = append(rss[n], float64(rssKB(c.PID(n)))/1024)
		}
		st, err := c.Status("w1")
		benchkit.Check(err)
		for _, n := range nodes {
			r := "standby"
			for _, g := range st.Groups {
				if g.Owner == n {
					r = "owner"
				}
			}
			if n == "w1" {
				r = "witness"
			}
			if st.Leader == n {
				r += ", raft leader"
			}
			if roles[n] != "" && roles[n] != r {
				r = roles[n] + " → " + r
			}
			roles[n] = r
		}
		fmt.Fprintf(os.Stderr, "window %d: %v\n", w+1, cpu)
	}
	fmt.Println("| node | role | CPU (% of one core), min–max | RSS, max |")
	fmt.Println("|---|---|---|---|")
	for _, n := range nodes {
		fmt.Printf("| %s | %s | %.2f–%.2f %% | %.1f MB |\n", n, roles[n], slices.Min(cpu[n]), slices.Max(cpu[n]), slices.Max(rss[n]))
	}
}

// waitOwned waits until the witness reports an owner for every group.
func waitOwned(c *proctest.Cluster, groups int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, err := c.Status("w1"); err == nil && len(st.Groups) == max(groups, 1) {
			owned := 0
			for _, g := range st.Groups {
				if g.Owner != "" {
					owned++
				}
			}
			if owned == len(st.Groups) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	benchkit.Check(fmt.Errorf("not every group got an owner within %v", d))
}

func profile(addr string, d time.Duration, out string) {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
	benchkit.Check(err)
	defer resp.Body.Close()
	f, err := os.Create(out)
	benchkit.Check(err)
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	benchkit.Check(err)
}

func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	benchkit.Check(err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	k, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + k
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	benchkit.Check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}
