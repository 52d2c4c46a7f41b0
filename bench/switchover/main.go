// Command switchover measures planned switchovers on a real three-process
// cluster on 127.0.0.x (two members + witness): the gap between the old
// owner's standby hook and the new owner's active hook, and the gap a client
// sees through a real HAProxy that follows /v1/groups/web/active.
//
//	go run ./bench/switchover -trials 30
//
// With -vip it runs in the network-namespace lab instead (root): two members
// and a witness on a bridge, the group's VIP 10.77.0.100/24, and a client
// that opens a new TCP connection to VIP:8080 every 5 ms (50 ms timeout).
// Each trial is `baton switchover web --to OTHER`; it reports the client gap
// (last answer from the old owner → first answer from the new one), how the
// attempts in between failed (refused by a TCP reset, or silently dropped and
// timed out), and whether the ARP watch ever saw two hosts answer for the VIP.
//
//	go run ./bench/switchover -vip -trials 30
//
// The -vip table also goes to docs/bench/switchover-vip.md (see -out), which
// docs/benchmarks.md.tmpl includes.
package main

import (
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	trials := flag.Int("trials", 30, "switchovers")
	inter := flag.Duration("check-interval", 10*time.Millisecond, "HAProxy check interval")
	viaVIP := flag.Bool("vip", false, "switch over a VIP in the network-namespace lab (root) instead of HAProxy on loopback")
	every := flag.Duration("every", 5*time.Millisecond, "-vip: client connection interval")
	keep := flag.Bool("keep", false, "-vip: keep the agents' logs (the directory is printed)")
	out := flag.String("out", "docs", "-vip: write DIR/bench/switchover-vip.md (relative to the module root); \"\": write nothing")
	flag.Parse()
	if *viaVIP {
		vipTrials(*trials, *every, *keep, *out)
		return
	}
	dir, err := os.MkdirTemp("", "baton-bench-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default"})
	benchkit.Check(err)
	defer c.Stop()
	benchkit.Check(c.StartAll())
	svcPort := c.Port + 2
	for _, n := range []string{"n1", "n2"} {
		stop, err := proctest.Whoami(net.JoinHostPort(c.Addrs[n], fmt.Sprint(svcPort)), n)
		benchkit.Check(err)
		defer stop()
	}
	hp, err := c.StartHAProxy(net.JoinHostPort(c.Addrs["w1"], fmt.Sprint(c.ProxyPort)), []string{"n1", "n2"}, svcPort, *inter)
	benchkit.Check(err)
	defer hp.Stop()
	_, _, err = c.WaitOwner("w1", 20*time.Second)
	benchkit.Check(err)
	time.Sleep(time.Second)

	// A client through HAProxy, one request at a time, recording answers.
	type answer struct {
		at  time.Time
		who string
	}
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			who := hp.Get(client)
			mu.Lock()
			answers = append(answers, answer{time.Now(), who})
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()

	var hookGaps, clientGaps []time.Duration
	for i := 0; i < *trials; i++ {
		st, err := c.Status("w1")
		benchkit.Check(err)
		from := st.Groups[0].Owner
		to := "n1"
		if from == "n1" {
			to = "n2"
		}
		asked := time.Now()
		out, err := c.Baton("w1", "switchover", "web", "--to", to)
		if err != nil {
			benchkit.Check(fmt.Errorf("switchover: %v: %s", err, out))
		}
		standby, err := c.WaitHook(10*time.Second, func(e proctest.HookEvent) bool {
			return e.Node == from && e.Role == "standby" && e.At.After(asked)
		})
		benchkit.Check(err)
		active, err := c.WaitHook(10*time.Second, func(e proctest.HookEvent) bool {
			return e.Node == to && e.Role == "active" && e.At.After(asked)
		})
		benchkit.Check(err)
		hookGaps = append(hookGaps, active.At.Sub(standby.At))
		// Let HAProxy settle on the new owner, then measure the client gap:
		// last answer from the old owner → first answer from the new one.
		time.Sleep(600 * time.Millisecond)
		mu.Lock()
		var lastOld, firstNew time.Time
		for _, a := range answers {
			if a.at.Before(asked) {
				continue
			}
			if a.who == "I am "+from {
				lastOld = a.at
			}
			if a.who == "I am "+to && firstNew.IsZero() && !lastOld.IsZero() {
				firstNew = a.at
			}
		}
		mu.Unlock()
		if !lastOld.IsZero() && !firstNew.IsZero() {
			clientGaps = append(clientGaps, firstNew.Sub(lastOld))
		}
		fmt.Fprintf(os.Stderr, "trial %d: %s → %s: hooks gap %v, client gap through HAProxy %v\n", i+1, from, to,
			active.At.Sub(standby.At).Round(time.Millisecond/10), firstNew.Sub(lastOld).Round(time.Millisecond/10))
	}
	close(stop)
	<-done
	fmt.Printf("# switchover, profile default, %d trials, HAProxy check interval %v, %s\n\n", *trials, *inter, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| measure | trials | p50 | p90 | p99 | max |")
	fmt.Println("|---|---|---|---|---|---|")
	row("old standby hook → new active hook", hookGaps)
	row("client gap through HAProxy", clientGaps)
}

func row(name string, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	q := func(p float64) string {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return fmt.Sprintf("%.1f ms", float64(d[max(i, 0)].Microseconds())/1000)
	}
	if len(d) == 0 {
		fmt.Printf("| %s | 0 | - | - | - | - |\n", name)
		return
	}
	fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", name, len(d), q(0.5), q(0.9), q(0.99), q(1))
}
