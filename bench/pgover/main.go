// Command pgover measures PostgreSQL failover in the network-namespace lab
// (root), under Baton and under Patroni, with the same client, faults and
// checks (internal/pglab): a client in the client namespace inserts
// sequential integers through the VIP, one transaction each; the primary's
// link goes down, or the primary is cut off from its peers while the client
// still reaches it; the trial ends once the other member is primary and
// acknowledges writes. Per system, sync mode and fault it reports the write
// outage (longest gap between acknowledgements), the acknowledged writes and
// how many of them are missing on the new primary.
//
//	go run ./bench/pgover -systems baton,patroni -modes on,off -faults linkdown,partition -trials 10
//	go run ./bench/pgover -systems baton,patroni,patroni-fast -trials 10 -trials-for patroni=5,patroni-fast=3
//	go run ./bench/pgover -from docs/bench/pgover.json        # re-render, no root needed
//	go run ./bench/pgover -systems baton -modes on -merge docs/bench/pgover.json   # re-measure some cells
//
// With -merge FILE the cells (system, sync mode, fault) this run measured
// replace those in FILE's trials, the others are kept, and the table says
// which rows were measured when, with which command.
//
// Systems: baton (built from -rev with proctest.Build; default profile),
// patroni (Debian's Patroni with its default timings: ttl 30, loop_wait 10,
// retry_timeout 10) and patroni-fast (ttl 10, loop_wait 2, retry_timeout 4).
// Modes: on (Baton sync: on, Patroni synchronous_mode), strict (Baton
// strict, Patroni synchronous_mode_strict) and off (asynchronous).
//
// Patroni, etcd and arping come from Debian: apt-get install -y patroni
// etcd-server iputils-arping.
//
// It writes DIR/bench/pgover.json (every trial, the date, the machine and
// the versions) and DIR/bench/pgover.md (the table as a fragment for
// docs/benchmarks.md.tmpl) with -out DIR (default docs, relative to the
// module root; -out "" writes nothing). Progress goes to stderr, the table
// to stdout.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/baton-ha/baton/internal/pglab"
	"github.com/baton-ha/baton/internal/proctest"

	"github.com/baton-ha/baton/internal/benchkit"
)

// Results is the content of pgover.json.
type Results struct {
	Measured time.Time // start of the run, UTC
	Took     string
	Command  string
	Baton    string            // commit the baton binary was built from
	Settings map[string]string // per system: what it was configured with
	Machine  Machine
	Errors   []string // trials that failed (not counted in the table)
	Trials   []Trial
	// Updates are later runs merged in with -merge, oldest first: their
	// cells replaced the ones measured before.
	Updates []Update `json:",omitempty"`
}

// Update is a run merged into earlier results.
type Update struct {
	Measured time.Time
	Took     string
	Command  string
	Baton    string
	Cells    []string // "system sync mode fault"
	Errors   []string `json:",omitempty"`
	LoadAvg  string
}

// Machine is what the numbers were measured on.
type Machine struct {
	benchkit.Host
	PostgreSQL string
	Patroni    string
	Etcd       string
}

// Trial is one fault against the primary.
type Trial struct {
	System, Mode, Fault string
	N                   int // 1-based within its cell
	From, To            string
	OutageMs            float64 // longest gap between acknowledged writes after the fault
	KeptOutageMs        float64 // the same, counting only the writes that survived
	Acked               int
	Lost                int
	LostSample          []int64 `json:",omitempty"`
	ReadyS              float64 // from the trial's end until the old primary streams again from the new one (and the VIP is settled)
}

// env is a running group under one system.
type env interface {
	WaitReady(owner string, limit time.Duration) (string, string, error)
	Prepare(ctx context.Context) error
	Trial(fault, owner string, limit time.Duration) (pglab.Result, error)
	Logs(n int) string
	Close()
}

// system says how to start a system and how long its steps may take.
type system struct {
	name     string
	settings string
	start    func(mode string) (env, error)
	trial    time.Duration // limit for one trial
	ready    time.Duration // limit for the group to be whole again
}

func main() {
	systems := flag.String("systems", "baton,patroni", "systems: baton, patroni, patroni-fast")
	modes := flag.String("modes", "on,off", "sync modes: on, strict, off")
	faults := flag.String("faults", "linkdown,partition", "faults: linkdown, partition")
	trials := flag.Int("trials", 10, "trials per system, mode and fault")
	trialsFor := flag.String("trials-for", "", "per-system trial counts overriding -trials, e.g. patroni=5,patroni-fast=3")
	out := flag.String("out", "docs", "write DIR/bench/pgover.{json,md} (relative to the module root); \"\": write nothing")
	rev := flag.String("rev", "HEAD", "build baton from this commit (git archive), so other edits in the working tree do not end up in the numbers; \"\": the working tree")
	from := flag.String("from", "", "re-render from this pgover.json instead of running trials")
	merge := flag.String("merge", "", "merge this run into this pgover.json: the cells measured now replace its cells, the rest stay")
	verbose := flag.Bool("v", false, "print the tail of the logs when a trial fails")
	flag.Parse()

	if *from != "" {
		b, err := os.ReadFile(*from)
		benchkit.Check(err)
		var res Results
		benchkit.Check(json.Unmarshal(b, &res))
		fmt.Print(fragment(res))
		if *out != "" {
			benchkit.Check(publish(*out, res, false))
		}
		return
	}
	perSystem, err := benchkit.ParseCounts(*trialsFor, "system")
	benchkit.Check(err)
	benchkit.NeedRoot("network namespaces")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := Results{Measured: time.Now().UTC().Truncate(time.Second), Command: benchkit.Command("pgover"), Machine: machine(), Settings: map[string]string{}}
	dir, err := os.MkdirTemp("", "baton-pgover-")
	benchkit.Check(err)
	defer os.RemoveAll(dir)
	var bin string
	all := map[string]system{}
	for _, name := range benchkit.Split(*systems) {
		switch name {
		case "baton":
			bin, res.Baton, err = proctest.BuildRev(dir, *rev)
			benchkit.Check(err)
			fmt.Fprintf(os.Stderr, "pgover: baton built from %s\n", res.Baton)
			all[name] = system{name: name, settings: "profile default",
				start: func(mode string) (env, error) {
					e, err := pglab.Start(bin, mode, "")
					if err != nil {
						return nil, err
					}
					return e, nil
				},
				trial: 30 * time.Second, ready: 90 * time.Second}
		case "patroni", "patroni-fast":
			if m := pglab.PatroniMissing(); m != "" {
				benchkit.Check(errors.New(m))
			}
			t := pglab.PatroniDefaults
			if name == "patroni-fast" {
				t = pglab.PatroniFast
			}
			// The slowest takeover: the leader key lives ttl seconds after
			// the last update, then the replica notices within a loop.
			limit := time.Duration(2*(t.TTL+t.LoopWait+t.RetryTimeout))*time.Second + 30*time.Second
			all[name] = system{name: name, settings: t.String() + ", VIP by callback",
				start: func(mode string) (env, error) {
					e, err := pglab.StartPatroni(mode, t)
					if err != nil {
						return nil, err
					}
					return e, nil
				},
				trial: limit, ready: 2*limit + 60*time.Second}
		default:
			benchkit.Check(fmt.Errorf("-systems: unknown system %q", name))
		}
		res.Settings[name] = all[name].settings
	}
	for _, f := range benchkit.Split(*faults) {
		if f != pglab.LinkDown && f != pglab.Partition {
			benchkit.Check(fmt.Errorf("-faults: unknown fault %q", f))
		}
	}

run:
	for _, name := range benchkit.Split(*systems) {
		sys := all[name]
		n := cmp.Or(perSystem[name], *trials)
		for _, mode := range benchkit.Split(*modes) {
			fmt.Fprintf(os.Stderr, "pgover: %s sync %s, %d trials × %v… (%s)\n", name, mode, n, benchkit.Split(*faults), time.Since(res.Measured).Round(time.Second))
			ts, errs := runCell(ctx, sys, mode, benchkit.Split(*faults), n, *verbose)
			res.Trials = append(res.Trials, ts...)
			res.Errors = append(res.Errors, errs...)
			if ctx.Err() != nil {
				break run
			}
		}
	}
	res.Took = time.Since(res.Measured).Round(time.Second).String()
	res.Machine.LoadAvgEnd = benchkit.LoadAvg()
	fmt.Fprintf(os.Stderr, "pgover: done in %s\n", res.Took)
	if *merge == "" {
		fmt.Print(fragment(res))
	}
	if *merge != "" && ctx.Err() == nil {
		b, err := os.ReadFile(*merge)
		benchkit.Check(err)
		var old Results
		benchkit.Check(json.Unmarshal(b, &old))
		res = merged(old, res)
		fmt.Print(fragment(res))
	}
	if *out != "" && ctx.Err() == nil {
		benchkit.Check(publish(*out, res, true))
	}
	if len(res.Errors) > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
}

// runCell runs n trials of every fault (alternating) against one system in
// one mode. A failed trial is recorded as an error; the group then starts
// afresh, at most twice.
func runCell(ctx context.Context, sys system, mode string, faults []string, n int, verbose bool) ([]Trial, []string) {
	var out []Trial
	var errs []string
	var e env
	var owner string
	fail := func(what string, err error) {
		msg := fmt.Sprintf("%s sync %s: %s: %v", sys.name, mode, what, err)
		fmt.Fprintf(os.Stderr, "pgover: %s\n", msg)
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
	for i := 1; i <= n; i++ {
		for _, f := range faults {
			if ctx.Err() != nil {
				return out, errs
			}
			if e == nil {
				if restarts > 2 {
					return out, errs
				}
				restarts++
				var err error
				if e, err = sys.start(mode); err != nil {
					fail("start", err)
					continue
				}
				if owner, _, err = e.WaitReady("", sys.ready); err != nil {
					fail("start", err)
					continue
				}
				if err := e.Prepare(ctx); err != nil {
					fail("create the table", err)
					continue
				}
			}
			r, err := e.Trial(f, owner, sys.trial)
			if err != nil {
				fail(fmt.Sprintf("%s trial %d", f, i), err)
				continue
			}
			t := Trial{System: sys.name, Mode: mode, Fault: f, N: i, From: r.From, To: r.To,
				OutageMs: benchkit.Ms(r.Outage), KeptOutageMs: benchkit.Ms(r.KeptOutage), Acked: r.Acked, Lost: len(r.Lost)}
			t.LostSample = r.Lost[:min(5, len(r.Lost))]
			t0 := time.Now()
			owner, _, err = e.WaitReady(r.To, sys.ready)
			t.ReadyS = time.Since(t0).Seconds()
			out = append(out, t)
			fmt.Fprintf(os.Stderr, "pgover:   %s sync %s %s #%d: %s → %s, outage %.0f ms (%.0f ms counting surviving writes only), %d acked, %d lost; whole again after %.1f s\n",
				sys.name, mode, f, i, r.From, r.To, t.OutageMs, t.KeptOutageMs, t.Acked, t.Lost, t.ReadyS)
			if err != nil {
				fail(fmt.Sprintf("after %s trial %d", f, i), err)
			}
		}
	}
	return out, errs
}

// merged is old with the cells that run measured replaced by run's trials,
// and run recorded as an update.
func merged(old, run Results) Results {
	fresh := map[cell]bool{}
	var cells []string
	for _, t := range run.Trials {
		c := cell{t.System, t.Mode, t.Fault}
		if !fresh[c] {
			fresh[c] = true
			cells = append(cells, fmt.Sprintf("%s sync %s %s", c.system, c.mode, faultName(c.fault)))
		}
	}
	out := old
	out.Trials = nil
	for _, t := range old.Trials {
		if !fresh[cell{t.System, t.Mode, t.Fault}] {
			out.Trials = append(out.Trials, t)
		}
	}
	out.Trials = append(out.Trials, run.Trials...)
	out.Updates = append(slices.Clone(old.Updates), Update{Measured: run.Measured, Took: run.Took, Command: run.Command,
		Baton: run.Baton, Cells: cells, Errors: run.Errors, LoadAvg: run.Machine.LoadAvg + " → " + run.Machine.LoadAvgEnd})
	return out
}

// cell is one row of the table.
type cell struct {
	system, mode, fault string
}

// fragment renders the markdown fragment.
func fragment(res Results) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "Measured %s (the run took %s) on %s × %d cores, Linux %s, %s; PostgreSQL %s, %s, etcd %s; load average %s at the start, %s at the end.\n",
		res.Measured.Format("2006-01-02 15:04 UTC"), res.Took, m.CPU, m.NProc, m.Kernel, m.Go, m.PostgreSQL, m.Patroni, m.Etcd, m.LoadAvg, m.LoadAvgEnd)
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
	b.WriteString("\n\nSetup: lab hosts h1 and h2 run PostgreSQL 15, h3 is the witness, the VIP is 10.77.0.100; a client in the " +
		"client namespace inserts sequential integers through VIP:5432, one transaction each. Baton: `sync: on` / `off` " +
		"(postgres driver). Patroni: Debian's package on h1 and h2, running as postgres and managing the servers " +
		"(`use_pg_rewind`, replication slots, `synchronous_mode: true` for sync on, false for off), one etcd member on h3 " +
		"(v3 API), REST API on each host's address; the VIP is moved by an `on_start` / `on_stop` / `on_role_change` " +
		"callback that adds or removes it (`ip addr`) and sends one gratuitous ARP (`arping -U`), the usual set-up " +
		"without vip-manager. Faults, against the primary: its link goes down (healed after the takeover), or it is cut off " +
		"from the other member and the witness / etcd while the client still reaches it. A trial ends once the other member " +
		"is primary (Baton's status; Patroni's `GET /primary`) and has acknowledged a write, at least 2 s after the fault; " +
		"then the fault is healed and the next trial waits until the group is whole again. Produced by:\n\n")
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", res.Command)
	for _, u := range res.Updates {
		fmt.Fprintf(&b, "Re-measured %s (the run took %s, load average %s, Baton built from %s): %s, with\n\n```sh\n%s\n```\n\n",
			u.Measured.Format("2006-01-02 15:04 UTC"), u.Took, u.LoadAvg, u.Baton, strings.Join(u.Cells, "; "), u.Command)
		for _, e := range u.Errors {
			fmt.Fprintf(&b, "- failed trial (not in the table): %s\n", e)
		}
		if len(u.Errors) > 0 {
			b.WriteString("\n")
		}
	}
	b.WriteString("| system | sync | fault | trials | outage p50 | p90 | max | surviving-writes outage p50 | max | acknowledged writes | lost | trials with loss | whole again p50 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	rows := map[cell][]Trial{}
	var order []cell
	for _, t := range res.Trials {
		c := cell{t.System, t.Mode, t.Fault}
		if _, ok := rows[c]; !ok {
			order = append(order, c)
		}
		rows[c] = append(rows[c], t)
	}
	modeRank := map[string]int{"on": 0, "strict": 1, "off": 2}
	slices.SortStableFunc(order, func(a, b cell) int {
		return cmp.Or(cmp.Compare(a.system, b.system), cmp.Compare(modeRank[a.mode], modeRank[b.mode]), cmp.Compare(a.fault, b.fault))
	})
	for _, c := range order {
		ts := rows[c]
		var outage, kept, ready []float64
		acked, lost, lossy := 0, 0, 0
		for _, t := range ts {
			outage = append(outage, t.OutageMs)
			kept = append(kept, t.KeptOutageMs)
			ready = append(ready, t.ReadyS)
			acked += t.Acked
			lost += t.Lost
			if t.Lost > 0 {
				lossy++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %d | %d | %d | %.1f s |\n", c.system, c.mode, faultName(c.fault), len(ts),
			benchkit.FormatMs(benchkit.Quantile(outage, 0.5)), benchkit.FormatMs(benchkit.Quantile(outage, 0.9)), benchkit.FormatMs(benchkit.Quantile(outage, 1)), benchkit.FormatMs(benchkit.Quantile(kept, 0.5)), benchkit.FormatMs(benchkit.Quantile(kept, 1)),
			acked, lost, lossy, benchkit.Quantile(ready, 0.5))
	}
	b.WriteString("\nOutage: the longest gap between two acknowledged writes after the fault, as the client saw it (its inserts " +
		"give up after 3 s and reconnect after 20 ms). Surviving-writes outage: the same gap counting only the acknowledged " +
		"writes that survived, i.e. how long no write that lasts was acknowledged; it differs from the outage when an old " +
		"primary went on acknowledging writes that were then lost. Lost: acknowledged writes missing on the new primary. " +
		"Quantiles are nearest-rank. \"Whole again\": from the end of a trial until the old primary streams from the new one " +
		"(as its synchronous standby in sync modes) and only the new primary holds the VIP.\n")
	if len(res.Errors) > 0 {
		b.WriteString("\nTrials that failed (not in the table):\n\n")
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

func faultName(f string) string {
	switch f {
	case pglab.LinkDown:
		return "link down"
	case pglab.Partition:
		return "primary cut off from its peers"
	}
	return f
}

// publish writes pgover.json (if withJSON) and pgover.md under out/bench,
// out being relative to the module root.
func publish(out string, res Results, withJSON bool) error {
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
		if err := os.WriteFile(filepath.Join(dir, "pgover.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pgover.md"), []byte(fragment(res)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "pgover: wrote %s\n", filepath.Join(dir, "pgover.md"))
	return nil
}

func machine() Machine {
	m := Machine{Host: benchkit.ThisHost()}
	if b, err := exec.Command(filepath.Join(pglab.BinDir, "postgres"), "--version").Output(); err == nil {
		m.PostgreSQL = strings.TrimPrefix(strings.TrimSpace(string(b)), "postgres (PostgreSQL) ")
	}
	m.Patroni, m.Etcd = pglab.PatroniVersions()
	m.Etcd = strings.TrimPrefix(m.Etcd, "etcd Version: ")
	return m
}
