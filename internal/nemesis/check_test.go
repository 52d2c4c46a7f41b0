package nemesis

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/quorum"
)

// probes answered by who every 10 ms over [from, to), except in the gaps.
func probes(t0 time.Time, from, to time.Duration, who func(time.Duration) string) []probe.Probe {
	var ps []probe.Probe
	for d := from; d < to; d += 10 * time.Millisecond {
		if w := who(d); w != "" {
			ps = append(ps, probe.Probe{At: t0.Add(d), Who: w})
		} else {
			ps = append(ps, probe.Probe{At: t0.Add(d), Err: "timeout"})
		}
	}
	return ps
}

func rules(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestCheck(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	base := func() *Report {
		return &Report{
			Config: Config{Bound: time.Second, Settle: 2 * time.Second, LossNoise: 150 * time.Millisecond},
			T0:     t0, Healed: at(60 * time.Second), ConvergeOK: true, ARPEvery: 20 * time.Millisecond,
			voters: []string{"h1", "h2", "h3"}, groups: map[string][]string{"web": {"h1", "h2"}},
			vipGroup: map[string]string{WebVIP: "web"}, ARP: map[string]lab.ARPReport{WebVIP: {}},
		}
	}
	// The owner h1 is killed at 10 s; the VIP is gone until 12 s (2 s).
	gap := func(d time.Duration) string {
		switch {
		case d < 10*time.Second:
			return "h1"
		case d < 12*time.Second:
			return ""
		}
		return "h2"
	}
	kill := Applied{Fault: Fault{N: 1, Kind: Kill}, Hosts: []string{"h1"}, Start: at(10 * time.Second), End: at(15 * time.Second)}

	r := base()
	r.Probes = map[string][]probe.Probe{WebVIP: probes(t0, 0, 20*time.Second, gap)}
	r.Applied = []Applied{kill}
	if vs := Check(r); !slices.Equal(rules(vs), []string{RuleOutage}) || !strings.Contains(vs[0].What, "although h2 and a quorum") {
		t.Errorf("2 s outage with h2 and h3 fault-free: %+v", vs)
	}

	// The standby h2 came back from a kill only 1 s before: not yet eligible.
	r.Applied = []Applied{kill, {Fault: Fault{N: 2, Kind: Kill}, Hosts: []string{"h2"}, Start: at(5 * time.Second), End: at(9 * time.Second)}}
	if vs := Check(r); len(vs) != 0 {
		t.Errorf("no eligible standby, yet: %+v", vs)
	}
	// A clock step or a flood on h2 does not excuse the outage.
	r.Applied = []Applied{kill, {Fault: Fault{N: 2, Kind: ClockStep}, Hosts: []string{"h2"}, Start: at(5 * time.Second), End: at(30 * time.Second)}}
	if vs := Check(r); !slices.Equal(rules(vs), []string{RuleOutage}) {
		t.Errorf("clock step on h2: %+v", vs)
	}
	// The witness stopped too: no quorum without h1 — not the bound's business.
	r.Applied = []Applied{kill, {Fault: Fault{N: 2, Kind: Stop}, Hosts: []string{"h3"}, Start: at(9 * time.Second), End: at(11 * time.Second)}}
	if vs := Check(r); len(vs) != 0 {
		t.Errorf("no quorum: %+v", vs)
	}

	// A loss-only period: a short blip is noise, a failover and a longer gap are not.
	r = base()
	r.Applied = []Applied{{Fault: Fault{N: 1, Kind: Loss, Alone: true}, Hosts: []string{"h1", "h2", "h3"}, Start: at(10 * time.Second), End: at(20 * time.Second)}}
	r.Probes = map[string][]probe.Probe{WebVIP: probes(t0, 0, 30*time.Second, func(d time.Duration) string {
		if d >= 12*time.Second && d < 12*time.Second+80*time.Millisecond || d >= 15*time.Second && d < 15*time.Second+400*time.Millisecond {
			return ""
		}
		return "h1"
	})}
	r.Events = []quorum.Event{{Group: "web", From: "h1", To: "h2", Reason: "failure", Epoch: 3, TimeUnixMs: at(16 * time.Second).UnixMilli()},
		{Group: "web", From: "h2", To: "h1", Reason: "failure", Epoch: 4, TimeUnixMs: at(25 * time.Second).UnixMilli()}}
	if vs := Check(r); !slices.Equal(rules(vs), []string{RuleLossOnly, RuleLossOnly}) ||
		!strings.Contains(vs[0].What, "out for 410ms") || !strings.Contains(vs[1].What, "h1 → h2") {
		t.Errorf("loss-only period: %+v", vs)
	}

	// Dual ARP, a lost write, no convergence.
	r = base()
	r.ARP[WebVIP] = lab.ARPReport{DualRounds: 1, Dual: []lab.DualRound{{At: at(5 * time.Second), MACs: []string{"a", "b"}}}}
	r.Lost, r.Acked = []int64{42}, 100
	r.ConvergeOK, r.LastView = false, "h1: web=h1; h2: web=h2"
	if vs := Check(r); !slices.Equal(rules(vs), []string{RuleDualARP, RuleLostWrite, RuleConverge}) {
		t.Errorf("dual ARP, lost write, no convergence: %+v", vs)
	}
	if s := r.Stats(); s.DualMs != 20 || s.Lost != 1 {
		t.Errorf("stats %+v", s)
	}
}
