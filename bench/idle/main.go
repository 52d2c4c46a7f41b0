// Command idle measures the idle CPU and memory of each agent of a real
// cluster on 127.0.0.x (two members + witness, profile default), over several
// windows, and can write a CPU profile of every agent for the first window.
// With -compare REV it runs a second cluster built from that commit side by
// side, measured in the same windows, so that the machine's other load falls
// on both alike. It is a benchmark, not a test: it prints the range over the
// windows.
//
//	go run ./bench/idle -windows 3 -window 20s [-groups 1] [-compare REV] [-pprof DIR]
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
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/proctest"
)

var nodes = []string{"n1", "n2", "w1"}

// side is one cluster under measurement.
type side struct {
	label string
	c     *proctest.Cluster
	cpu   map[string][]float64
	rss   map[string][]float64
	roles map[string]string
	pprof map[string]string // node → pprof listen address
}

func main() {
	windows := flag.Int("windows", 3, "measurement windows")
	window := flag.Duration("window", 20*time.Second, "length of one window")
	groups := flag.Int("groups", 1, "groups (all on the two members)")
	settle := flag.Duration("settle", 5*time.Second, "wait after every group has an owner before measuring")
	compare := flag.String("compare", "", "also run a cluster built from this git revision, side by side")
	pprofDir := flag.String("pprof", "", "write a CPU profile of each agent over the first window into this directory")
	flag.Parse()
	dir, err := os.MkdirTemp("", "baton-idle-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	revs := []string{""}
	if *compare != "" {
		revs = append([]string{*compare}, revs...)
	}
	var sides []*side
	for i, rev := range revs {
		d := filepath.Join(dir, fmt.Sprint(i))
		benchkit.Check(os.MkdirAll(d, 0o755))
		bin, from, err := proctest.BuildRev(d, rev)
		benchkit.Check(err)
		c, err := proctest.New(bin, d, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default", Groups: *groups})
		benchkit.Check(err)
		defer c.Stop()
		s := &side{label: from, c: c, cpu: map[string][]float64{}, rss: map[string][]float64{}, roles: map[string]string{}, pprof: map[string]string{}}
		if len(from) > 12 {
			s.label = from[:12]
		}
		for j, n := range nodes {
			if *pprofDir != "" {
				s.pprof[n] = fmt.Sprintf("%s:%d", c.Addrs[n], c.Port+10+j)
				c.Env[n] = []string{"BATON_PPROF=" + s.pprof[n]}
			}
			benchkit.Check(c.Start(n))
		}
		sides = append(sides, s)
	}
	for _, s := range sides {
		waitOwned(s.c, *groups, 60*time.Second)
	}
	time.Sleep(*settle)
	fmt.Printf("# idle agents: 2 members + witness, profile default, %d group(s); %d windows of %v; %s, %d CPUs, %s\n\n",
		*groups, *windows, *window, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"))
	for w := 0; w < *windows; w++ {
		if w == 0 && *pprofDir != "" {
			benchkit.Check(os.MkdirAll(*pprofDir, 0o755))
			done := make(chan struct{})
			count := 0
			for i, s := range sides {
				for _, n := range nodes {
					count++
					go func() {
						defer func() { done <- struct{}{} }()
						profile(s.pprof[n], *window, filepath.Join(*pprofDir, fmt.Sprintf("%d-%s.pprof", i, n)))
					}()
				}
			}
			defer func() {
				for range count {
					<-done
				}
			}()
		}
		before := map[*side]map[string]int64{}
		for _, s := range sides {
			before[s] = map[string]int64{}
			for _, n := range nodes {
				before[s][n] = benchkit.CPUTicks(s.c.PID(n))
			}
		}
		start := time.Now()
		time.Sleep(*window)
		el := time.Since(start).Seconds()
		for _, s := range sides {
			for _, n := range nodes {
				ticks := benchkit.CPUTicks(s.c.PID(n)) - before[s][n]
				s.cpu[n] = append(s.cpu[n], float64(ticks)/100/el*100) // USER_HZ = 100
				s.rss[n] = append(s.rss[n], float64(benchkit.RSSKB(s.c.PID(n)))/1024)
			}
			s.noteRoles()
			fmt.Fprintf(os.Stderr, "window %d, %s: %v\n", w+1, s.label, s.cpu)
		}
	}
	fmt.Println("| build | node | role | CPU (% of one core), min–max | RSS, max |")
	fmt.Println("|---|---|---|---|---|")
	for _, s := range sides {
		for _, n := range nodes {
			fmt.Printf("| %s | %s | %s | %.2f–%.2f %% | %.1f MB |\n", s.label, n, s.roles[n], slices.Min(s.cpu[n]), slices.Max(s.cpu[n]), slices.Max(s.rss[n]))
		}
	}
}

// noteRoles records each node's role, and a change since the last window.
func (s *side) noteRoles() {
	st, err := s.c.Status("w1")
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
		if old := s.roles[n]; old != "" && !strings.HasSuffix(old, r) {
			r = old + " → " + r
		} else if old != "" {
			r = old
		}
		s.roles[n] = r
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
