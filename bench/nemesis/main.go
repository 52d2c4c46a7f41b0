// Command nemesis runs real Baton agents in the network-namespace lab (root)
// under randomized, overlapping faults drawn from a seed — link down, kill -9
// with a delayed restart, SIGSTOP/SIGCONT, owner | rest and witness-alone
// partitions, a member that can send but not hear, 30 % loss (overlapping,
// and alone), a ±1 h wall-clock step and a slow disk on one agent, and a
// junk flood on every port from a non-member — and checks what a client saw
// (internal/nemesis). The cluster: 3 or 5 voters (members and a witness), an
// active-passive group with a VIP, an active-active group with two VIPs and
// a PostgreSQL group in sync: on, with a client writing through its VIP.
//
//	go run ./bench/nemesis -seed 1 -duration 2m -voters 3 -profile default
//	go run ./bench/nemesis -seeds 1,2,3 -duration 1h -voters 5
//
// It prints the timeline of faults, ownership changes and outages, the
// figures and the checker's verdict per seed, and exits 1 if any run failed
// the checker. A seed reruns the same fault plan (the timing of the system
// under test varies, of course). -markdown prints the table row of
// docs/benchmarks.md instead of the summary.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/benchkit"
	"github.com/baton-ha/baton/internal/nemesis"
	"github.com/baton-ha/baton/internal/proctest"
)

func main() {
	seed := flag.Uint64("seed", 0, "seed of the fault plan (0: from the clock, printed)")
	seeds := flag.String("seeds", "", "comma-separated seeds, one run each (overrides -seed)")
	duration := flag.Duration("duration", 2*time.Minute, "length of the fault phase per run")
	profile := flag.String("profile", "default", "timing profile: default | fast | wan")
	voters := flag.Int("voters", 3, "voters: 3 (h1, h2 + witness h3) or 5 (h1..h4 + witness h5)")
	pg := flag.Bool("pg", true, "run the PostgreSQL group (sync: on) with a writer through its VIP (needs postgresql 15)")
	kinds := flag.String("faults", "all", "comma-separated fault kinds: "+fmt.Sprint(nemesis.Kinds))
	gap := flag.Duration("gap", 4*time.Second, "mean time between fault starts")
	bound := flag.Duration("bound", 0, "outage bound (0: the profile's: default 1s, fast 500ms, wan 10s)")
	settle := flag.Duration("settle", 2*time.Second, "how long a member must have been fault-free to count as eligible")
	keep := flag.String("dir", "", "keep configs and agent logs here (default: a temporary directory, removed)")
	markdown := flag.Bool("markdown", false, "print a docs/benchmarks.md table row per run")
	verbose := flag.Bool("v", false, "print the lab's log")
	flag.Parse()
	benchkit.NeedRoot("network namespaces and nftables")
	ks, err := nemesis.ParseKinds(*kinds)
	benchkit.Check(err)
	list := []uint64{*seed}
	if *seeds != "" {
		list = nil
		for _, s := range strings.Split(*seeds, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			benchkit.Check(err)
			list = append(list, n)
		}
	}
	if len(list) == 1 && list[0] == 0 {
		list[0] = uint64(time.Now().UnixNano() % 1_000_000)
	}
	base := *keep
	if base == "" {
		base, err = os.MkdirTemp("", "baton-nemesis-")
		benchkit.Check(err)
		defer os.RemoveAll(base)
	}
	benchkit.Check(os.MkdirAll(base, 0o755))
	benchkit.Check(os.Chmod(base, 0o755)) // PostgreSQL runs as the postgres user under it
	bin, err := proctest.Build(base)
	benchkit.Check(err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	failed := false
	if *markdown {
		fmt.Println("| voters | profile | seed | fault phase | faults applied | ownership changes | longest outage per fault kind | dual ownership | acknowledged writes lost | checker |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	}
	for _, s := range list {
		dir := filepath.Join(base, fmt.Sprintf("seed-%d", s))
		out := os.Stdout
		if *markdown {
			out = os.Stderr
		}
		r, err := nemesis.Run(ctx, nemesis.Config{Bin: bin, Dir: dir, Seed: s, Duration: *duration, Profile: *profile,
			Voters: *voters, Postgres: *pg, Kinds: ks, MeanGap: *gap, Bound: *bound, Settle: *settle, Log: logger, Out: out})
		if err != nil {
			fmt.Fprintf(os.Stderr, "seed %d: %v (agent logs in %s)\n", s, err, dir)
			failed = true
			continue
		}
		fmt.Fprintln(out)
		fmt.Fprint(out, r.Timeline())
		fmt.Fprintln(out)
		if *markdown {
			fmt.Println(r.MarkdownRow())
		} else {
			fmt.Print(r.Summary())
		}
		if len(r.Violations) > 0 {
			failed = true
			if *keep == "" {
				fmt.Fprintf(os.Stderr, "seed %d failed; rerun with -dir DIR to keep the agent logs\n", s)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if failed {
		os.Exit(1)
	}
}
