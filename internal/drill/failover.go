package drill

import (
	"fmt"
	"io"
	"time"

	"github.com/baton-ha/baton/internal/probe"
)

// FailoverLoop is the trial loop of the benchmarks that drive a two-member
// lab cluster of their own (bench/vipover, bench/standby) instead of a
// Scenario: each trial waits Settle, faults the current holder at t0, waits
// until the client is served by the other member, takes the outage the fault
// caused (probe.Worst after t0), repairs the faulted host and waits for the
// holder of the next trial. Run's methods are called in that order, one at a
// time.
type FailoverLoop struct {
	Members [2]string     // the two members that hand the service to each other
	Prober  *probe.Prober // the client
	// Settle is waited before each fault, so the prober has a baseline and
	// the cluster has settled after the previous repair.
	Settle time.Duration
	// Served bounds how long the other member may take to serve the client
	// (default 60 s: a cold standby's service may start slowly).
	Served time.Duration
	Fault  func(holder string) error
	Repair func(holder string) error // undoes Fault
	// Next waits until the next trial can start and returns its holder;
	// other is the member that took over.
	Next func(holder, other string) (string, error)
	// Observe, if set, runs after a trial's outage is taken and before
	// Repair (e.g. to look at another VIP since T0).
	Observe func(FailoverTrial)
	// Label names the cell of the benchmark's table in progress lines and
	// errors, e.g. "fast kill9".
	Label string
	// Progress, if set, gets a line per trial ("LABEL trial N: h1 → h2,
	// outage 160ms"): a long run shows it is alive and what it measures.
	Progress io.Writer
}

// FailoverTrial is one trial of a FailoverLoop.
type FailoverTrial struct {
	N        int // 1-based
	From, To string
	T0       time.Time    // when the fault was injected
	Outage   probe.Outage // the worst outage after T0
}

// Run runs trials trials, the first with holder holding the service, and
// returns the trials done, also on error; errors start with Label.
func (f FailoverLoop) Run(holder string, trials int) ([]FailoverTrial, error) {
	ts, err := f.run(holder, trials)
	if err != nil && f.Label != "" {
		err = fmt.Errorf("%s %w", f.Label, err)
	}
	return ts, err
}

func (f FailoverLoop) run(holder string, trials int) ([]FailoverTrial, error) {
	within := f.Served
	if within == 0 {
		within = 60 * time.Second
	}
	var out []FailoverTrial
	for i := 1; i <= trials; i++ {
		time.Sleep(f.Settle)
		other := f.Members[0]
		if holder == other {
			other = f.Members[1]
		}
		t := FailoverTrial{N: i, From: holder, To: other, T0: time.Now()}
		if err := f.Fault(holder); err != nil {
			return out, fmt.Errorf("trial %d: fault on %s: %w", i, holder, err)
		}
		if !f.Prober.WaitServed(other, t.T0, within) {
			return out, fmt.Errorf("trial %d: client not served by %s within %v", i, other, within)
		}
		t.Outage = probe.Worst(f.Prober.Probes(), t.T0)
		out = append(out, t)
		if f.Observe != nil {
			f.Observe(t)
		}
		if f.Progress != nil {
			fmt.Fprintf(f.Progress, "%s trial %d: %s → %s, outage %v\n", f.Label, t.N, t.From, t.To, t.Outage.Duration.Round(time.Millisecond))
		}
		if err := f.Repair(holder); err != nil {
			return out, fmt.Errorf("trial %d: repair %s: %w", i, holder, err)
		}
		var err error
		if holder, err = f.Next(holder, other); err != nil {
			return out, fmt.Errorf("trial %d: %w", i, err)
		}
	}
	return out, nil
}

// Durations returns the trials' outage durations, in trial order.
func Durations(ts []FailoverTrial) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Outage.Duration
	}
	return out
}
