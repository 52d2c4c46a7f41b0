// Command redisover measures Redis failover in the network-namespace lab
// (root), under Baton and under Redis Sentinel, with the same client, faults
// and checks (internal/redislab): a client in the client namespace writes
// SET k<i> i, one command at a time (through Baton's VIP, or to the master a
// go-redis FailoverClient finds through the sentinels); the primary's link
// goes down, or the primary is cut off from its peers while the client still
// reaches it; the trial ends once the other member is primary and
// acknowledges writes. Per system, sync mode and fault it reports the write
// outage (longest gap between acknowledgements), the acknowledged writes and
// how many of them are missing on the new primary. Then planned
// switchovers: the client's write pause and what it lost.
//
//	go run ./bench/redisover -trials 10 -switchovers 30
//	go run ./bench/redisover -from docs/bench/redisover.json   # re-render, no root needed
//
// Systems: baton (built from -rev; default profile) in sync on (the client
// follows every SET with WAIT 1 1000 and counts only confirmed writes) and
// sync off (no WAIT), and sentinel (Debian's redis-sentinel, three
// sentinels, quorum 2, down-after-milliseconds 1000, failover-timeout 10 s;
// the client does not WAIT: Sentinel promotes without regard to it).
//
// It writes DIR/bench/NAME.json and DIR/bench/NAME.md (the table as a
// fragment for docs/benchmarks.md.tmpl) with -out DIR (default docs) and
// -name NAME (default redisover).
//
//	go run ./bench/redisover -systems baton -trials 0 -switchovers 30 -name redisswitch
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/redislab"
)

// Results is the content of redisover.json.
type Results struct {
	Measured time.Time
	Took     string
	Command  string
	Baton    string
	Settings map[string]string
	Machine  Machine
	Errors   []string
	Trials   []Trial
}

// Machine is what the numbers were measured on.
type Machine struct {
	benchkit.Host
	Redis string
}

// Trial is one fault against the primary, or one switchover.
type Trial struct {
	System, Mode, Fault string
	N                   int
	From, To            string
	OutageMs            float64
	KeptOutageMs        float64
	Acked, Lost         int
	LostSample          []int64 `json:",omitempty"`
	// LostFromMs, LostToMs: when the first and the last lost write was acknowledged, relative to the fault.
	LostFromMs, LostToMs float64 `json:",omitempty"`
}

type env interface {
	WaitReady(owner string, limit time.Duration) (string, string, error)
	Trial(fault, owner string, limit time.Duration) (redislab.Result, error)
	Switchover(to string, limit time.Duration) (redislab.Result, error)
	Logs(n int) string
	Close()
}

func main() {
	systems := flag.String("systems", "baton,baton-reset,sentinel", "systems: baton (VIP tcp_reset: false, as the driver README advises for go-redis clients), baton-reset (tcp_reset: true, the default), sentinel")
	modes := flag.String("modes", "on,off", "Baton's sync modes: on, off")
	faults := flag.String("faults", "linkdown,partition", "faults: linkdown, partition")
	trials := flag.Int("trials", 10, "trials per system, mode and fault")
	switchovers := flag.Int("switchovers", 30, "planned switchovers per system (Baton: in each mode)")
	out := flag.String("out", "docs", "write DIR/bench/NAME.{json,md}; \"\": write nothing")
	name := flag.String("name", "redisover", "base name of the files -out writes (e.g. redisswitch for a switchover-only run)")
	rev := flag.String("rev", "HEAD", "build baton from this commit; \"\": the working tree")
	from := flag.String("from", "", "re-render from this redisover.json")
	verbose := flag.Bool("v", false, "print the tail of the logs when a trial fails")
	flag.Parse()

	if *from != "" {
		b, err := os.ReadFile(*from)
		benchkit.Check(err)
		var res Results
		benchkit.Check(json.Unmarshal(b, &res))
		fmt.Print(fragment(res))
		if *out != "" {
			benchkit.Check(publish(*out, *name, res, false))
		}
		return
	}
	benchkit.NeedRoot("network namespaces")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := Results{Measured: time.Now().UTC().Truncate(time.Second), Command: benchkit.Command("redisover"), Machine: machine(), Settings: map[string]string{}}
	dir, err := os.MkdirTemp("", "baton-redisover-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	type cellRun struct {
		system, mode string
		start        func() (env, error)
	}
	var runs []cellRun
	var bin string
	for _, name := range benchkit.Split(*systems) {
		switch name {
		case "baton", "baton-reset":
			if bin == "" {
				bin, res.Baton, err = proctest.BuildRev(dir, *rev)
				benchkit.Check(err)
			}
			reset := name == "baton-reset"
			res.Settings[name] = fmt.Sprintf("profile default, redis driver, VIP tcp_reset: %v", reset)
			for _, m := range benchkit.Split(*modes) {
				runs = append(runs, cellRun{name, m, func() (env, error) { return redislab.Start(bin, m, "", reset) }})
			}
		case "sentinel":
			if m := redislab.SentinelMissing(); m != "" {
				benchkit.Check(fmt.Errorf("%s", m))
			}
			res.Settings["sentinel"] = fmt.Sprintf("3 sentinels, quorum 2, down-after-milliseconds %d, failover-timeout 10000", redislab.DownAfterMs)
			runs = append(runs, cellRun{"sentinel", "-", func() (env, error) { return redislab.StartSentinel() }})
		default:
			benchkit.Check(fmt.Errorf("-systems: unknown system %q", name))
		}
	}
	for _, r := range runs {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "redisover: %s sync %s (%s)\n", r.system, r.mode, time.Since(res.Measured).Round(time.Second))
		ts, errs := runCell(ctx, r.system, r.mode, r.start, benchkit.Split(*faults), *trials, *switchovers, *verbose)
		res.Trials = append(res.Trials, ts...)
		res.Errors = append(res.Errors, errs...)
	}
	res.Took = time.Since(res.Measured).Round(time.Second).String()
	res.Machine.LoadAvgEnd = benchkit.LoadAvg()
	fmt.Print(fragment(res))
	if *out != "" && ctx.Err() == nil {
		benchkit.Check(publish(*out, *name, res, true))
	}
	if len(res.Errors) > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
}

// runCell runs n trials of every fault (alternating), then the switchovers,
// against one system in one mode; a failed trial is recorded and the group
// starts afresh (at most twice).
func runCell(ctx context.Context, system, mode string, start func() (env, error), faults []string, n, switchovers int, verbose bool) ([]Trial, []string) {
	var out []Trial
	var errs []string
	var e env
	var owner string
	limit, ready := 30*time.Second, 90*time.Second
	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s sync %s: %s: %v", system, mode, what, err)
		fmt.Fprintf(os.Stderr, "redisover: %s\n", msg)
		if verbose && e != nil {
			fmt.Fprintln(os.Stderr, e.Logs(6000))
		}
		errs = append(errs, msg)
		if e != nil {
			e.Close()
			e = nil
		}
	}
	defer func() {
		if e != nil {
			e.Close()
		}
	}()
	restarts := 0
	ensure := func() bool {
		if e != nil {
			return true
		}
		if restarts > 2 {
			return false
		}
		restarts++
		var err error
		if e, err = start(); err != nil {
			fail("start", err)
			return false
		}
		if owner, _, err = e.WaitReady("", ready); err != nil {
			fail("start", err)
			return false
		}
		return true
	}
	record := func(kind string, i int, r redislab.Result) {
		t := Trial{System: system, Mode: mode, Fault: kind, N: i, From: r.From, To: r.To, OutageMs: benchkit.Ms(r.Outage),
			KeptOutageMs: benchkit.Ms(r.KeptOutage), Acked: r.Acked, Lost: len(r.Lost), LostSample: r.Lost[:min(5, len(r.Lost))],
			LostFromMs: benchkit.Ms(r.LostFirst), LostToMs: benchkit.Ms(r.LostAfter)}
		out = append(out, t)
		when := ""
		if t.Lost > 0 && kind != "switchover" {
			when = fmt.Sprintf(" (acknowledged %.0f to %.0f ms after the fault)", t.LostFromMs, t.LostToMs)
		}
		fmt.Fprintf(os.Stderr, "redisover:   %s sync %s %s #%d: %s → %s, outage %.0f ms, %d acked, %d lost%s\n",
			system, mode, kind, i, r.From, r.To, t.OutageMs, t.Acked, t.Lost, when)
	}
	for i := 1; i <= n; i++ {
		for _, f := range faults {
			if ctx.Err() != nil || !ensure() {
				return out, errs
			}
			r, err := e.Trial(f, owner, limit)
			if err != nil {
				fail(fmt.Sprintf("%s trial %d", f, i), err)
				continue
			}
			record(f, i, r)
			if owner, _, err = e.WaitReady(r.To, ready); err != nil {
				fail(fmt.Sprintf("after %s trial %d", f, i), err)
			}
		}
	}
	for i := 1; i <= switchovers; i++ {
		if ctx.Err() != nil || !ensure() {
			return out, errs
		}
		r, err := e.Switchover(redislab.Other(owner), limit)
		if err != nil {
			fail(fmt.Sprintf("switchover %d", i), err)
			continue
		}
		record("switchover", i, r)
		if owner, _, err = e.WaitReady(r.To, ready); err != nil {
			fail(fmt.Sprintf("after switchover %d", i), err)
		}
	}
	return out, errs
}

type cell struct{ system, mode, fault string }

func fragment(res Results) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "Measured %s (the run took %s) on %s × %d cores, Linux %s, %s; %s; load average %s at the start, %s at the end.\n",
		res.Measured.Format("2006-01-02 15:04 UTC"), res.Took, m.CPU, m.NProc, m.Kernel, m.Go, m.Redis, m.LoadAvg, m.LoadAvgEnd)
	var facts []string
	if res.Baton != "" {
		facts = append(facts, fmt.Sprintf("Baton built from %s.", res.Baton))
	}
	var names []string
	for k := range res.Settings {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		facts = append(facts, fmt.Sprintf("%s: %s.", k, res.Settings[k]))
	}
	b.WriteString(strings.Join(facts, " "))
	b.WriteString("\n\nSetup: lab hosts h1 and h2 run redis-server, h3 is Baton's witness (or the third sentinel; the others run " +
		"on h1 and h2); a client in the client namespace writes `SET k<i> i`, one command at a time, with a 500 ms read " +
		"and dial timeout and no retries: to Baton's VIP 10.77.0.100:6379, or to the master a go-redis `FailoverClient` " +
		"finds through the three sentinels. In Baton's sync on the client follows every SET with `WAIT 1 1000` and counts " +
		"a write acknowledged only when a replica confirmed it (what the driver README says a client must do for zero " +
		"loss); in sync off and under Sentinel a SET's OK is the acknowledgement. Faults, against the primary: its link goes " +
		"down, or it is cut off from the other member and the witness / third sentinel while the client still reaches it. " +
		"A trial ends once the other member is primary and has acknowledged a write, at least 2 s after the fault (sync " +
		"on: the fault is healed as soon as the takeover is seen, since WAIT 1 needs the old primary back as a replica); " +
		"then the fault is healed and the next trial waits until the group is whole again. Switchover: Baton's " +
		"`POST /v1/groups/web/switchover`, Sentinel's `SENTINEL FAILOVER`, under the same writer. The go-redis client has " +
		"PoolSize 1, and go-redis dials only once a second after PoolSize dials in a row failed: `baton` gives the VIP " +
		"`tcp_reset: false`, as the driver README advises for such clients (the old owner leaves the client's packets " +
		"unanswered and its retransmission reaches the new owner), `baton-reset` keeps the default `tcp_reset: true` " +
		"(the old owner refuses the reconnect at once, also before the new owner holds the VIP). Produced by:\n\n")
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", res.Command)
	b.WriteString("| system | sync | event | trials | write outage p50 | p90 | p99 | max | acknowledged writes | lost | trials with loss |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	rows := map[cell][]Trial{}
	var order []cell
	for _, t := range res.Trials {
		c := cell{t.System, t.Mode, t.Fault}
		if _, ok := rows[c]; !ok {
			order = append(order, c)
		}
		rows[c] = append(rows[c], t)
	}
	rank := map[string]int{redislab.LinkDown: 0, redislab.Partition: 1, "switchover": 2}
	slices.SortStableFunc(order, func(a, b cell) int {
		return cmp.Or(cmp.Compare(rank[a.fault], rank[b.fault]), cmp.Compare(a.system, b.system), cmp.Compare(a.mode, b.mode))
	})
	for _, c := range order {
		ts := rows[c]
		var outage []float64
		acked, lost, lossy := 0, 0, 0
		for _, t := range ts {
			outage = append(outage, t.OutageMs)
			acked += t.Acked
			lost += t.Lost
			if t.Lost > 0 {
				lossy++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s | %s | %d | %d | %d |\n", c.system, c.mode, eventName(c.fault), len(ts),
			benchkit.FormatMs(benchkit.Quantile(outage, 0.5)), benchkit.FormatMs(benchkit.Quantile(outage, 0.9)), benchkit.FormatMs(benchkit.Quantile(outage, 0.99)), benchkit.FormatMs(benchkit.Quantile(outage, 1)), acked, lost, lossy)
	}
	b.WriteString("\nWrite outage: the longest gap between two acknowledged writes after the fault (or the switchover request), as " +
		"the client saw it; for a switchover, the client-visible write pause. Lost: acknowledged writes missing on the new " +
		"primary. Quantiles are nearest-rank (with fewer than 100 trials p99 is the maximum).\n")
	if len(res.Errors) > 0 {
		b.WriteString("\nTrials that failed (not in the table):\n\n")
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

func eventName(f string) string {
	switch f {
	case redislab.LinkDown:
		return "link down"
	case redislab.Partition:
		return "primary cut off from its peers"
	}
	return f
}

func publish(out, name string, res Results, withJSON bool) error {
	root, err := proctest.ModuleRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, out, "bench")
	if filepath.IsAbs(out) {
		dir = filepath.Join(out, "bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if withJSON {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(fragment(res)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "redisover: wrote %s\n", filepath.Join(dir, name+".md"))
	return nil
}

func machine() Machine {
	m := Machine{Host: benchkit.ThisHost()}
	if b, err := exec.Command(redislab.Server, "--version").Output(); err == nil {
		if f := strings.Fields(string(b)); len(f) > 2 {
			m.Redis = "Redis " + strings.TrimPrefix(f[2], "v=")
		}
	}
	return m
}
