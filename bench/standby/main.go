// Command standby measures the client-visible outage of a failover (kill -9
// of the owner's agent) in the network-namespace lab (root) for each standby
// mode — hot, warm, cold — with a demo service whose start-up takes 0, 1 or
// 5 seconds. The service is Baton's own `demo-service`, supervised by the
// agent; the group's tcp check gates the takeover.
//
//	go run ./bench/standby -trials 10
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
	"github.com/baton-ha/baton/internal/proctest"
)

const vip = "10.77.0.100"

func main() {
	trials := flag.Int("trials", 10, "trials per mode and delay")
	modes := flag.String("modes", "hot,warm,cold", "standby modes")
	delays := flag.String("delays", "0s,1s,5s", "service start-up delays")
	profile := flag.String("profile", "default", "timing profile")
	flag.Parse()
	benchkit.NeedRoot("network namespaces")
	dir, err := os.MkdirTemp("", "baton-standby-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	bin, err := proctest.Build(dir)
	benchkit.Check(err)
	fmt.Printf("# kill -9 of the owner's agent → client served again, by standby mode and service start-up time; profile %s, %s\n\n",
		*profile, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| mode | start-up | trials | p50 | p90 | max |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, m := range strings.Split(*modes, ",") {
		for _, ds := range strings.Split(*delays, ",") {
			d, err := time.ParseDuration(ds)
			benchkit.Check(err)
			out := run(bin, filepath.Join(dir, m+"-"+ds), *profile, m, d, *trials)
			row(m, ds, out)
		}
	}
}

func run(bin, dir, profile, mode string, delay time.Duration, trials int) []time.Duration {
	benchkit.Check(os.MkdirAll(dir, 0o755))
	l, err := lab.New(lab.Options{Hosts: 3})
	benchkit.Check(err)
	defer l.Close()
	promote := ""
	if mode == "warm" {
		promote = `, promote: ["/bin/true"], demote: ["/bin/true"]`
	}
	extra := fmt.Sprintf(`    standby: %s
    service: {run: [%q, "demo-service", "--listen", ":8080", "--delay", %q], start_timeout: 30s, stop_timeout: 2s%s}
    checks: [{type: tcp, address: "127.0.0.1:8080", interval: 20ms, timeout: 20ms, fall: 2, rise: 1}]
`, mode, bin, delay.String(), promote)
	c, err := l.StartCluster(lab.ClusterSpec{Bin: bin, Dir: dir, Profile: profile, VIP: vip + "/24", GroupExtra: extra, NoWhoami: true})
	benchkit.Check(err)
	defer c.Stop()
	holder := waitReady(c, "", mode, delay)
	pr, err := l.StartProber(vip+":8080", 5*time.Millisecond)
	benchkit.Check(err)
	loop := drill.FailoverLoop{
		Members: [2]string{"h1", "h2"},
		Prober:  pr,
		Fault:   c.KillAgent,
		Repair:  c.StartAgent,
		Next: func(_, other string) (string, error) {
			return waitReady(c, other, mode, delay), nil
		},
		Label:    fmt.Sprintf("%s start-up %v", mode, delay),
		Progress: os.Stderr,
	}
	ts, err := loop.Run(holder, trials)
	benchkit.Check(err)
	out := drill.Durations(ts)
	pr.Stop()
	return out
}

// waitReady waits until exactly one host holds the VIP and, for hot and warm,
// the standby's service is up again (healthy), so the next trial has a
// standby in the mode being measured.
func waitReady(c *lab.Cluster, want, mode string, delay time.Duration) string {
	holder, err := c.WaitHolder(vip, want, 60*time.Second)
	benchkit.Check(err)
	standby := "h1"
	if holder == "h1" {
		standby = "h2"
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var st struct {
			Groups []struct{ Healthy bool }
		}
		if err := c.Status(standby, &st); err == nil && len(st.Groups) > 0 && st.Groups[0].Healthy {
			time.Sleep(time.Second)
			return holder
		}
	}
	benchkit.Check(fmt.Errorf("standby %s never became ready (%s)", standby, mode))
	return ""
}

func row(mode, delay string, d []time.Duration) {
	q := func(p float64) string { return fmt.Sprintf("%d ms", drill.Quantile(d, p).Milliseconds()) }
	fmt.Printf("| %s | %s | %d | %s | %s | %s |\n", mode, delay, len(d), q(0.5), q(0.9), q(1))
}
