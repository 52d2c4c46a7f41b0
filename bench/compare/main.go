// Command compare runs the same fault drills (internal/drill) against Baton
// and against keepalived configured equivalently, in the network-namespace
// lab (root), and prints one markdown row per fault, profile and system.
//
//	go run ./bench/compare -trials 5 -faults linkdown,kill9,sigstop -profiles default
//	go run ./bench/compare -systems keepalived -profiles keepalived-1s -faults kill9
//	go run ./bench/compare -json > reports.json
//
// With -out DIR it also writes the published results: DIR/bench/compare.json
// (the raw reports, the machine and the date), DIR/bench/compare.md (the
// table as a markdown fragment that docs/benchmarks.md.tmpl includes) and
// DIR/benchmarks-compare.svg (the outage of every trial, drill.PlotSVG).
// docs/benchmarks.md is then rebuilt by bench/report:
//
//	go run ./bench/compare -trials 20 -trials-for sigstop=12,loss=8 -out docs && go run ./bench/report
//
// -from FILE re-renders the fragment and the plot from a compare.json without
// running anything (no root needed).
//
// Progress goes to stderr; the table (or JSON with -json) to stdout.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/drill"
	"github.com/baton-ha/baton/internal/proctest"

	"github.com/baton-ha/baton/internal/benchkit"
)

// Results is the content of compare.json.
type Results struct {
	Measured    time.Time // start of the run, UTC
	Took        string    // wall time of the whole run
	Command     string
	Baton       string // commit the baton binary was built from ("working tree" with -rev "")
	Machine     Machine
	LossPercent int
	LossFor     string
	Errors      []string // scenarios that stopped early; their trials so far are in Reports
	Reports     []drill.Report
	Reruns      []Rerun // later runs merged in with -merge
}

// Rerun is a later run (-merge) whose reports replaced those of the same
// system, fault and profile.
type Rerun struct {
	Measured            time.Time
	Took, Command       string
	Baton               string
	LoadAvg, LoadAvgEnd string
	Cells               []string // "system fault profile"
}

// Machine is what the numbers were measured on.
type Machine struct {
	benchkit.Host
	Keepalived string // first line of keepalived --version
}

func main() {
	trials := flag.Int("trials", 10, "trials per system, fault and profile")
	trialsFor := flag.String("trials-for", "", "per-fault trial counts overriding -trials, e.g. sigstop=10,loss=5")
	systems := flag.String("systems", "baton,keepalived", "systems: baton, keepalived")
	faults := flag.String("faults", "linkdown,kill9,sigstop,partition,loss", "faults: linkdown, kill9, sigstop, partition, loss")
	profiles := flag.String("profiles", "default,fast", "profiles: default, fast; keepalived-1s (keepalived only)")
	lossPct := flag.Int("loss-percent", 10, "loss fault: percent of packets dropped on every host")
	lossFor := flag.Duration("loss-for", 20*time.Second, "loss fault: how long the loss lasts per trial")
	out := flag.String("out", "", "write DIR/bench/compare.{json,md} and DIR/benchmarks-compare.svg")
	rev := flag.String("rev", "HEAD", "build baton from this commit (git archive), so edits in the working tree do not end up in the numbers; \"\": the working tree")
	from := flag.String("from", "", "re-render -out from this compare.json instead of running drills")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	verbose := flag.Bool("v", false, "log every trial to stderr")
	merge := flag.Bool("merge", false, "with -out: keep the other cells of the existing compare.json, replace only the ones run now")
	keep := flag.Bool("keep", false, "keep the configs and logs (baton, keepalived) of every scenario, not only of failed ones")
	flag.Parse()

	if *from != "" {
		b, err := os.ReadFile(*from)
		benchkit.Check(err)
		var res Results
		benchkit.Check(json.Unmarshal(b, &res))
		if *out == "" {
			fmt.Print(fragment(res))
			return
		}
		benchkit.Check(publish(*out, res, false))
		return
	}
	perFault, err := benchkit.ParseCounts(*trialsFor, "fault")
	benchkit.Check(err)
	benchkit.NeedRoot("network namespaces")
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := Results{Measured: time.Now().UTC().Truncate(time.Second), Command: benchkit.Command("compare"), Machine: machine(),
		LossPercent: *lossPct, LossFor: lossFor.String()}
	dir, err := os.MkdirTemp("", "baton-compare-")
	benchkit.Check(err)
	var bin string
	if strings.Contains(*systems, string(drill.Baton)) {
		bin, res.Baton, err = proctest.BuildRev(dir, *rev)
		benchkit.Check(err)
		fmt.Fprintf(os.Stderr, "compare: baton built from %s\n", res.Baton)
	}
	// Faults outermost and the systems innermost, so both systems of a
	// cell run minutes apart, under the same background load.
run:
	for _, f := range benchkit.Split(*faults) {
		n := cmp.Or(perFault[f], *trials)
		for _, p := range benchkit.Split(*profiles) {
			for _, sys := range benchkit.Split(*systems) {
				if sys == string(drill.Baton) && p == "keepalived-1s" {
					continue // a keepalived-only reference row
				}
				s := drill.Scenario{System: drill.System(sys), Fault: drill.Fault(f), Trials: n, Profile: p,
					LossPercent: *lossPct, LossFor: *lossFor, Bin: bin, Dir: filepath.Join(dir, sys+"-"+f+"-"+p)}
				benchkit.Check(os.MkdirAll(s.Dir, 0o755))
				fmt.Fprintf(os.Stderr, "compare: %s %s %s, %d trials… (%s)\n", sys, f, p, n, time.Since(res.Measured).Round(time.Second))
				r, err := drill.Run(ctx, s, log)
				if err != nil {
					msg := fmt.Sprintf("%s %s %s: %v (after %d trials)", sys, f, p, err, len(r.Trials))
					fmt.Fprintf(os.Stderr, "compare: %s; logs kept in %s\n", msg, s.Dir)
					res.Errors = append(res.Errors, msg)
				}
				if len(r.Trials) > 0 {
					res.Reports = append(res.Reports, r)
				}
				if ctx.Err() != nil {
					break run
				}
			}
		}
	}
	res.Took = time.Since(res.Measured).Round(time.Second).String()
	res.Machine.LoadAvgEnd = benchkit.LoadAvg()
	if len(res.Errors) == 0 && !*keep {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "compare: configs and logs kept in %s\n", dir)
	}
	fmt.Fprintf(os.Stderr, "compare: done in %s\n", res.Took)
	if *out != "" && ctx.Err() == nil {
		if *merge {
			res, err = mergeInto(filepath.Join(*out, "bench", "compare.json"), res)
			benchkit.Check(err)
		}
		benchkit.Check(publish(*out, res, true))
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		benchkit.Check(enc.Encode(res.Reports))
	} else {
		fmt.Print(fragment(res))
	}
	if len(res.Errors) > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
}

// publish writes compare.json (if withJSON), compare.md and the plot.
func publish(out string, res Results, withJSON bool) error {
	if err := os.MkdirAll(filepath.Join(out, "bench"), 0o755); err != nil {
		return err
	}
	if withJSON {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "bench", "compare.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "bench", "compare.md"), []byte(fragment(res)), 0o644); err != nil {
		return err
	}
	var svg bytes.Buffer
	header := fmt.Sprintf("Baton vs keepalived in the namespace lab: client-visible outage per trial (measured %s, %s)",
		res.Measured.Format("2006-01-02"), res.Machine.short())
	if err := drill.PlotSVG(&svg, sorted(res.Reports), header); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "benchmarks-compare.svg"), svg.Bytes(), 0o644)
}

// mergeInto returns the results in path with the reports of res put in
// place of the same cells, and res recorded as a rerun.
func mergeInto(path string, res Results) (Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("-merge: %w", err)
	}
	var base Results
	if err := json.Unmarshal(b, &base); err != nil {
		return res, fmt.Errorf("-merge: %s: %w", path, err)
	}
	cell := func(r drill.Report) string { return r.System + " " + r.Fault + " " + r.Profile }
	rr := Rerun{Measured: res.Measured, Took: res.Took, Command: res.Command, Baton: res.Baton,
		LoadAvg: res.Machine.LoadAvg, LoadAvgEnd: res.Machine.LoadAvgEnd}
	for _, r := range res.Reports {
		rr.Cells = append(rr.Cells, cell(r))
	}
	base.Reports = slices.DeleteFunc(base.Reports, func(r drill.Report) bool { return slices.Contains(rr.Cells, cell(r)) })
	base.Reports = append(base.Reports, res.Reports...)
	base.Errors = append(base.Errors, res.Errors...)
	base.Reruns = append(base.Reruns, rr)
	return base, nil
}

// fragment renders the markdown that docs/benchmarks.md includes.
func fragment(res Results) string {
	var b strings.Builder
	m := res.Machine
	fmt.Fprintf(&b, "Measured %s (the run took %s) on %s × %d cores, Linux %s, %s, %s; load average %s at the start, %s at the end (other work shares the machine).\n",
		res.Measured.Format("2006-01-02 15:04 UTC"), res.Took, m.CPU, m.NProc, m.Kernel, m.Keepalived, m.Go, m.LoadAvg, m.LoadAvgEnd)
	fmt.Fprintf(&b, "Baton built from %s. Loss: %d %% on every host for %s per trial. Produced by:\n\n", res.Baton, res.LossPercent, res.LossFor)
	fmt.Fprintf(&b, "```sh\n%s\n```\n\n", res.Command)
	for _, rr := range res.Reruns {
		fmt.Fprintf(&b, "Re-measured %s (took %s; baton %s; load average %s at the start, %s at the end): %s, by:\n\n```sh\n%s\n```\n\n",
			rr.Measured.Format("2006-01-02 15:04 UTC"), rr.Took, rr.Baton, rr.LoadAvg, rr.LoadAvgEnd, strings.Join(rr.Cells, "; "), rr.Command)
	}
	b.WriteString("| fault | profile | system | trials | failovers | p50 | p90 | p99 | max | failed probes | dual-ownership ms | false failovers |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range sorted(res.Reports) {
		fo := 0
		for _, t := range r.Trials {
			if t.Failover {
				fo++
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %s | %s | %s | %s | %d | %d | %d |\n", faultName(r.Fault), r.Profile, r.System,
			len(r.Trials), fo, ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.FailedProbes, r.Dual.Milliseconds(), r.FalseFailovers)
	}
	b.WriteString("\nQuantiles are nearest-rank: below 100 trials p99 is the maximum. \"failovers\": trials after which the client " +
		"was served by the other member (for loss, the client noticed a false failover).\n")
	if len(res.Errors) > 0 {
		b.WriteString("\nScenarios that stopped early (their trials so far are in the table):\n\n")
		for _, e := range res.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.String()
}

// sorted orders reports by fault (as drill lists them), profile, system.
func sorted(rs []drill.Report) []drill.Report {
	order := []string{"linkdown", "kill9", "sigstop", "partition", "loss"}
	prof := []string{"default", "fast", "keepalived-1s"}
	rank := func(list []string, s string) int {
		if i := slices.Index(list, s); i >= 0 {
			return i
		}
		return len(list)
	}
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b drill.Report) int {
		return cmp.Or(cmp.Compare(rank(order, a.Fault), rank(order, b.Fault)),
			cmp.Compare(rank(prof, a.Profile), rank(prof, b.Profile)), cmp.Compare(a.System, b.System))
	})
	return rs
}

func faultName(f string) string {
	switch drill.Fault(f) {
	case drill.LinkDown:
		return "link down"
	case drill.Kill9:
		return "kill -9"
	case drill.SigStop:
		return "SIGSTOP 3 s"
	case drill.Partition:
		return "partition 3 s"
	case drill.Loss:
		return "loss"
	}
	return f
}

func (m Machine) short() string {
	return fmt.Sprintf("%s × %d, Linux %s, %s", m.CPU, m.NProc, m.Kernel, m.Keepalived)
}

func machine() Machine {
	m := Machine{Host: benchkit.ThisHost()}
	// keepalived prints its version on stderr.
	if b, err := exec.Command("keepalived", "--version").CombinedOutput(); err == nil || len(b) > 0 {
		m.Keepalived, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
