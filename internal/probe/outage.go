package probe

import (
	"slices"
	"time"
)

// Probe is one attempt of a Prober to get an answer.
type Probe struct {
	At  time.Time // when the probe started
	Who string    // who answered (see Kind), "" on failure or a silent server
	Err string    // "" on success
}

// OK reports whether the probe got an answer.
func (p Probe) OK() bool { return p.Err == "" }

// Outage is a maximal run of failed probes.
type Outage struct {
	Start    time.Time     // start of the last successful probe before the run (the first failure if none)
	End      time.Time     // start of the first successful probe after the run (the last failure if none)
	Duration time.Duration // End - Start: an upper bound of the client-visible outage
	Before   string        // who answered before, "" if nobody
	After    string        // who answered after, "" if nobody (Ongoing)
	Failed   int           // failed probes in the run
	Ongoing  bool          // no success after the run
}

// Outages returns the maximal runs of failed probes that start at or after
// after. A run that is already under way at after counts from its first
// failure at or after after, but its Start still reaches back to the last
// success before it. probes need not be sorted.
func Outages(probes []Probe, after time.Time) []Outage {
	ps := slices.Clone(probes)
	sortProbes(ps)
	var out []Outage
	lastOK := -1
	for i := 0; i < len(ps); {
		if ps[i].OK() {
			lastOK = i
			i++
			continue
		}
		if ps[i].At.Before(after) {
			i++
			continue
		}
		j := i
		for j < len(ps) && !ps[j].OK() {
			j++
		}
		o := Outage{Failed: j - i, Start: ps[i].At}
		if lastOK >= 0 {
			o.Start, o.Before = ps[lastOK].At, ps[lastOK].Who
		}
		if j < len(ps) {
			o.End, o.After = ps[j].At, ps[j].Who
		} else {
			o.End, o.Ongoing = ps[j-1].At, true
		}
		o.Duration = o.End.Sub(o.Start)
		out = append(out, o)
		i = j
	}
	return out
}

// Worst is the longest outage that was not over by t0 — the one a fault
// injected at t0 caused: a run of failures that ends (or is still going on)
// after t0, counted in full even if it began a little before t0 (a probe that
// was in flight when the fault hit). Ties go to the earlier outage. The zero
// Outage means the client saw none.
func Worst(probes []Probe, t0 time.Time) Outage {
	var worst Outage
	for _, o := range Outages(probes, time.Time{}) {
		if (o.Ongoing || o.End.After(t0)) && o.Duration > worst.Duration {
			worst = o
		}
	}
	return worst
}

func sortProbes(ps []Probe) {
	slices.SortStableFunc(ps, func(a, b Probe) int { return a.At.Compare(b.At) })
}
