package nemesis

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/probe"
)

// Rules the checker enforces.
const (
	RuleDualARP      = "dual-arp"   // two MACs answered ARP for one VIP in one round
	RuleOutage       = "outage"     // a VIP outage beyond the bound while an eligible member and a quorum were fault-free
	RuleLossOnly     = "loss-only"  // an ownership change, or the VIP gone, during a loss-only period
	RuleLostWrite    = "lost-write" // an acknowledged PostgreSQL write missing afterwards
	RuleConverge     = "converge"   // no single agreed owner per group 10 s after the last fault healed
	RulePGUnreadable = "pg-check"   // the acknowledged writes could not be read back at all
)

// Violation is one failed check.
type Violation struct {
	Rule string
	At   time.Time
	What string
}

// window is a closed time interval.
type window struct{ from, to time.Time }

func (w window) overlaps(a, b time.Time) bool { return !b.Before(w.from) && !a.After(w.to) }

// faultWindows returns, per host, when some fault made it unfit (see
// Applied.touches), each widened by settle at the end: a host counts as
// eligible again only once it has been fault-free for settle.
func faultWindows(r *Report) map[string][]window {
	out := map[string][]window{}
	for _, a := range r.Applied {
		if a.Start.IsZero() {
			continue
		}
		end := a.End
		if end.IsZero() {
			end = r.Healed
		}
		for _, h := range a.touches() {
			out[h] = append(out[h], window{a.Start, end.Add(r.Config.Settle)})
		}
	}
	return out
}

func touched(ws []window, from, to time.Time) bool {
	for _, w := range ws {
		if w.overlaps(from, to) {
			return true
		}
	}
	return false
}

// eligible reports whether, throughout [from, to], some member of the group
// and a majority of voters with it were free of faults (and had been for
// settle before from).
func eligible(r *Report, fw map[string][]window, group string, from, to time.Time) (string, bool) {
	free := 0
	for _, v := range r.voters {
		if !touched(fw[v], from, to) {
			free++
		}
	}
	if free <= len(r.voters)/2 {
		return "", false
	}
	for _, m := range r.groups[group] {
		if !touched(fw[m], from, to) {
			return m, true
		}
	}
	return "", false
}

// lossOnly returns the loss-only periods that were carried out.
func lossOnly(r *Report) []window {
	var out []window
	for _, a := range r.Applied {
		if a.Kind == Loss && a.Alone && a.Skipped == "" && !a.Start.IsZero() && !a.End.IsZero() {
			out = append(out, window{a.Start, a.End})
		}
	}
	return out
}

// Check applies the rules to a run's record.
func Check(r *Report) []Violation {
	var vs []Violation
	for _, vip := range sortedKeys(r.ARP) {
		for _, d := range r.ARP[vip].Dual {
			vs = append(vs, Violation{RuleDualARP, d.At, fmt.Sprintf("%s answered by %v in one ARP round", vip, d.MACs)})
		}
		if n := r.ARP[vip].DualRounds - len(r.ARP[vip].Dual); n > 0 {
			vs = append(vs, Violation{RuleDualARP, r.Healed, fmt.Sprintf("%s: %d more dual ARP rounds", vip, n)})
		}
	}
	fw := faultWindows(r)
	lo := lossOnly(r)
	for _, vip := range sortedKeys(r.Probes) {
		group := r.vipGroup[vip]
		for _, o := range probe.Outages(r.Probes[vip], r.T0) {
			if o.Duration > r.Config.Bound {
				if m, ok := eligible(r, fw, group, o.Start.Add(-r.Config.Settle), o.End); ok {
					vs = append(vs, Violation{RuleOutage, o.Start, fmt.Sprintf("%s out for %v (%s → %s) although %s and a quorum had been fault-free for %v; bound %v",
						vip, o.Duration.Round(time.Millisecond), orNone(o.Before), orNone(o.After), m, r.Config.Settle, r.Config.Bound)})
				}
			}
			for _, w := range lo {
				if w.overlaps(o.Start, o.End) && o.Duration > r.Config.LossNoise {
					vs = append(vs, Violation{RuleLossOnly, o.Start, fmt.Sprintf("%s out for %v during a loss-only period (%s → %s)",
						vip, o.Duration.Round(time.Millisecond), orNone(o.Before), orNone(o.After))})
				}
			}
		}
	}
	for _, e := range r.Events {
		at := time.UnixMilli(e.TimeUnixMs)
		if !e.Ownership() {
			continue
		}
		for _, w := range lo {
			if w.overlaps(at, at) {
				vs = append(vs, Violation{RuleLossOnly, at, fmt.Sprintf("%s: %s → %s (%s, epoch %d) during a loss-only period", e.Group, orNone(e.From), e.To, e.Reason, e.Epoch)})
			}
		}
	}
	if len(r.Lost) > 0 {
		vs = append(vs, Violation{RuleLostWrite, r.Healed, fmt.Sprintf("%d of %d acknowledged writes missing on the final primary, e.g. %v",
			len(r.Lost), r.Acked, r.Lost[:min(5, len(r.Lost))])})
	}
	if r.PGErr != "" {
		vs = append(vs, Violation{RulePGUnreadable, r.Healed, r.PGErr})
	}
	if !r.ConvergeOK {
		vs = append(vs, Violation{RuleConverge, r.Healed.Add(ConvergeWithin), r.LastView})
	}
	slices.SortStableFunc(vs, func(a, b Violation) int { return a.At.Compare(b.At) })
	return vs
}

func orNone(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Stats are a run's figures (docs/benchmarks.md's nemesis table).
type Stats struct {
	Applied, Skipped int
	PerKind          map[Kind]int
	Failovers        int                    // ownership changes in the history after the fault phase began
	Longest          map[Kind]time.Duration // longest VIP outage that began while a fault of the kind was active
	DualMs           int64                  // dual ARP rounds × the watch interval
	Acked            int
	Lost             int
}

// Stats summarises the report.
func (r *Report) Stats() Stats {
	s := Stats{PerKind: map[Kind]int{}, Longest: map[Kind]time.Duration{}, Acked: r.Acked, Lost: len(r.Lost)}
	for _, a := range r.Applied {
		if a.Skipped != "" {
			s.Skipped++
			continue
		}
		if a.Start.IsZero() {
			continue
		}
		s.Applied++
		s.PerKind[a.Kind]++
	}
	for _, e := range r.Events {
		if e.Ownership() && !time.UnixMilli(e.TimeUnixMs).Before(r.T0) && e.From != "" {
			s.Failovers++
		}
	}
	for _, ps := range r.Probes {
		for _, o := range probe.Outages(ps, r.T0) {
			for _, a := range r.Applied {
				end := a.End
				if end.IsZero() {
					end = r.Healed
				}
				// The outage's Start is the last answer before it, so one
				// that a fault caused may start a probe interval earlier.
				if a.Skipped == "" && !a.Start.IsZero() && o.End.After(a.Start) && !o.Start.After(end) {
					s.Longest[a.Kind] = max(s.Longest[a.Kind], o.Duration)
				}
			}
		}
	}
	for _, w := range r.ARP {
		s.DualMs += int64(w.DualRounds) * r.ARPEvery.Milliseconds()
	}
	return s
}

// Timeline prints the seed, every fault as carried out, the history's
// ownership changes with their detect/decide/takeover split and the
// outage the client saw around them, every outage over 100 ms and every
// violation, in time order.
func (r *Report) Timeline() string {
	type line struct {
		at time.Time
		s  string
	}
	var ls []line
	for _, a := range r.Applied {
		if a.Start.IsZero() {
			continue
		}
		if a.Skipped != "" {
			ls = append(ls, line{a.Start, "skip  " + a.Fault.String() + ": " + a.Skipped})
			continue
		}
		ls = append(ls, line{a.Start, fmt.Sprintf("FAULT %s on %v%s", a.Fault, a.Hosts, errNote(a.Err))})
		if !a.End.IsZero() {
			ls = append(ls, line{a.End, fmt.Sprintf("heal  #%d %s on %v", a.N, a.Kind, a.Hosts)})
		}
	}
	for _, e := range r.Events {
		at := time.UnixMilli(e.TimeUnixMs)
		if !e.Ownership() || at.Before(r.T0.Add(-time.Second)) {
			continue
		}
		split := fmt.Sprintf("detect %d + decide %d + takeover %d = %d ms", e.DetectMs, e.DecideMs, e.TakeoverMs, e.DetectMs+e.DecideMs+e.TakeoverMs)
		ls = append(ls, line{at, fmt.Sprintf("OWNER %s: %s → %s (%s, epoch %d; %s)", e.Group, orNone(e.From), e.To, e.Reason, e.Epoch, split)})
	}
	for _, vip := range sortedKeys(r.Probes) {
		for _, o := range probe.Outages(r.Probes[vip], r.T0) {
			if o.Duration >= 100*time.Millisecond {
				ls = append(ls, line{o.Start, fmt.Sprintf("out   %s %v (%s → %s)", vip, o.Duration.Round(time.Millisecond), orNone(o.Before), orNone(o.After))})
			}
		}
	}
	for _, v := range r.Violations {
		ls = append(ls, line{v.At, "FAIL  " + v.Rule + ": " + v.What})
	}
	slices.SortStableFunc(ls, func(a, b line) int { return a.at.Compare(b.at) })
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d (rerun: go run ./bench/nemesis -seed %d -duration %v -voters %d -profile %s%s)\n",
		r.Config.Seed, r.Config.Seed, r.Config.Duration, r.Config.Voters, r.Config.Profile, map[bool]string{true: "", false: " -pg=false"}[r.Config.Postgres])
	for _, l := range ls {
		fmt.Fprintf(&b, "%s %s\n", rel(r.T0, l.at), l.s)
	}
	return b.String()
}

// Summary is the figures in one paragraph.
func (r *Report) Summary() string {
	s := r.Stats()
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d faults applied (%d skipped), %d ownership changes, dual ownership %d ms, %d acknowledged writes, %d lost; converged %v after the last heal\n",
		r.Config.Seed, s.Applied, s.Skipped, s.Failovers, s.DualMs, s.Acked, s.Lost, r.Converged.Round(time.Millisecond))
	var ks []string
	for _, k := range Kinds {
		if s.PerKind[k] > 0 {
			ks = append(ks, fmt.Sprintf("%s ×%d (longest outage %v)", k, s.PerKind[k], s.Longest[k].Round(time.Millisecond)))
		}
	}
	fmt.Fprintf(&b, "  %s\n", strings.Join(ks, ", "))
	if len(r.Violations) == 0 {
		b.WriteString("  checker: PASS\n")
	} else {
		fmt.Fprintf(&b, "  checker: FAIL, %d violations\n", len(r.Violations))
	}
	return b.String()
}

// MarkdownRow is the run's row of the table in docs/benchmarks.md.
func (r *Report) MarkdownRow() string {
	s := r.Stats()
	var ks []string
	for _, k := range Kinds {
		if s.PerKind[k] > 0 {
			ks = append(ks, fmt.Sprintf("%s %v", k, s.Longest[k].Round(time.Millisecond)))
		}
	}
	verdict := "pass"
	if len(r.Violations) > 0 {
		var rules []string
		for _, v := range r.Violations {
			if !slices.Contains(rules, v.Rule) {
				rules = append(rules, v.Rule)
			}
		}
		verdict = fmt.Sprintf("FAIL (%d: %s)", len(r.Violations), strings.Join(rules, ", "))
	}
	return fmt.Sprintf("| %d | %s | %d | %v | %d | %d | %s | %d ms | %d of %d | %s |", r.Config.Voters, r.Config.Profile, r.Config.Seed,
		r.Config.Duration, s.Applied, s.Failovers, strings.Join(ks, ", "), s.DualMs, s.Lost, s.Acked, verdict)
}
