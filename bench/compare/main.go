// Command compare runs the same fault drills (internal/drill) against Baton
// and against keepalived configured equivalently, in the network-namespace
// lab (root), and prints one markdown row per system, fault and profile.
//
//	go run ./bench/compare -trials 5 -faults linkdown,kill9,sigstop -profiles default
//	go run ./bench/compare -systems keepalived -profiles keepalived-1s -faults kill9
//	go run ./bench/compare -json > reports.json
//
// Progress goes to stderr; the table (or JSON with -json) to stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/drill"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	trials := flag.Int("trials", 10, "trials per system, fault and profile")
	systems := flag.String("systems", "baton,keepalived", "systems: baton, keepalived")
	faults := flag.String("faults", "linkdown,kill9,sigstop,loss", "faults: linkdown, kill9, sigstop, loss")
	profiles := flag.String("profiles", "default,fast", "profiles: default, fast; keepalived-1s (keepalived only)")
	lossPct := flag.Int("loss-percent", 10, "loss fault: percent of packets dropped on every host")
	lossFor := flag.Duration("loss-for", 10*time.Second, "loss fault: how long the loss lasts per trial")
	asJSON := flag.Bool("json", false, "print the reports as JSON instead of a table")
	verbose := flag.Bool("v", false, "log every trial to stderr")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "compare: needs root (network namespaces)")
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "baton-compare-")
	check(err)
	defer os.RemoveAll(dir)
	var bin string
	if strings.Contains(*systems, string(drill.Baton)) {
		bin, err = proctest.Build(dir)
		check(err)
	}
	var reports []drill.Report
	failed := false
	for _, sys := range split(*systems) {
		for _, f := range split(*faults) {
			for _, p := range split(*profiles) {
				if sys == string(drill.Baton) && p == "keepalived-1s" {
					continue // a keepalived-only reference row
				}
				s := drill.Scenario{System: drill.System(sys), Fault: drill.Fault(f), Trials: *trials, Profile: p,
					LossPercent: *lossPct, LossFor: *lossFor, Bin: bin, Dir: filepath.Join(dir, sys+"-"+f+"-"+p)}
				check(os.MkdirAll(s.Dir, 0o755))
				fmt.Fprintf(os.Stderr, "compare: %s %s %s, %d trials…\n", sys, f, p, *trials)
				r, err := drill.Run(ctx, s, log)
				if err != nil {
					fmt.Fprintf(os.Stderr, "compare: %s %s %s: %v (logs in %s lost on exit)\n", sys, f, p, err, s.Dir)
					failed = true
				}
				if len(r.Trials) > 0 {
					reports = append(reports, r)
				}
				if ctx.Err() != nil {
					break
				}
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		check(enc.Encode(reports))
	} else {
		table(reports)
	}
	if failed {
		os.Exit(1)
	}
}

func table(rs []drill.Report) {
	fmt.Printf("# Baton vs keepalived, client-visible outage per fault, %s\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| system | fault | profile | trials | failovers | p50 | p90 | p99 | max | failed probes | dual-ownership ms | false failovers |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fo := 0
		for _, t := range r.Trials {
			if t.Failover {
				fo++
			}
		}
		fmt.Printf("| %s | %s | %s | %d | %d | %s | %s | %s | %s | %d | %d | %d |\n", r.System, r.Fault, r.Profile, len(r.Trials), fo,
			ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max), r.FailedProbes, r.DualMs.Milliseconds(), r.FalseFailovers)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}
