package nemesis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults the runner draws from.
const (
	LinkDown   Kind = "linkdown"   // the host's cable is pulled (bridge-side veth down)
	Kill       Kind = "kill"       // kill -9 of the agent, restarted when the fault ends
	Stop       Kind = "stop"       // SIGSTOP of the agent, SIGCONT when the fault ends
	PartOwner  Kind = "partition"  // a group's owner | everyone else (the client still reaches both)
	PartWit    Kind = "witness"    // the witness | everyone else
	Deaf       Kind = "deaf"       // the host hears no other host but can still send to them
	Loss       Kind = "loss"       // 30 % of what every host receives from the other hosts is dropped
	ClockStep  Kind = "clock"      // the agent's wall clock steps ±1 h (agent debug fault file)
	SlowDisk   Kind = "slowdisk"   // the agent's fsyncs take seconds (agent debug fault file)
	Flood      Kind = "flood"      // junk on every Baton and service port from the client, a non-member
	lossQuiet  Kind = "loss-alone" // Loss with nothing else going on: a loss-only period
	everything      = "all"
)

// Kinds lists every fault kind in a stable order (Loss covers both the
// overlapping and the loss-only periods).
var Kinds = []Kind{LinkDown, Kill, Stop, PartOwner, PartWit, Deaf, Loss, ClockStep, SlowDisk, Flood}

// ParseKinds parses a comma-separated list of kinds ("all" for every kind).
func ParseKinds(s string) ([]Kind, error) {
	if s == "" || s == everything {
		return slices.Clone(Kinds), nil
	}
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(f))
		if !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("fault kind %q: want one of %v or %q", k, Kinds, everything)
		}
		out = append(out, k)
	}
	return out, nil
}

// Target says whom a fault hits; Resolve turns it into hosts when the fault
// starts, since owners move during the run.
type Target struct {
	Role  string // "owner", "standby" (a member that is not the owner), "witness", "member" (any member), "all"
	Group string // for owner and standby: web, aa or pg
	Pick  int    // chooses among several candidates (from the seed)
}

func (t Target) String() string {
	switch t.Role {
	case "owner", "standby":
		return t.Role + "(" + t.Group + ")"
	}
	return t.Role
}

// Fault is one planned fault: it starts At after the fault phase began and
// lasts For.
type Fault struct {
	N      int // 1-based, in start order
	Kind   Kind
	Target Target
	At     time.Duration
	For    time.Duration
	// Offset is the clock step (ClockStep); FsyncDelay the disk's
	// (SlowDisk); Percent the loss (Loss).
	Offset     time.Duration
	FsyncDelay time.Duration
	Percent    int
	// Alone: a loss-only period, with no other fault from Settle before
	// it to its end.
	Alone bool
}

// End is when the fault ends.
func (f Fault) End() time.Duration { return f.At + f.For }

func (f Fault) String() string {
	s := fmt.Sprintf("#%d %s %s for %v", f.N, f.Kind, f.Target, f.For.Round(10*time.Millisecond))
	switch f.Kind {
	case ClockStep:
		s += fmt.Sprintf(" (offset %v)", f.Offset)
	case SlowDisk:
		s += fmt.Sprintf(" (fsync +%v)", f.FsyncDelay)
	case Loss:
		s += fmt.Sprintf(" (%d%%)", f.Percent)
		if f.Alone {
			s += " loss-only"
		}
	}
	return s
}

// PlanSpec is what a plan is drawn from.
type PlanSpec struct {
	Seed     uint64
	Duration time.Duration // the fault phase; every fault ends by then
	Kinds    []Kind
	// MeanGap is the mean time between fault starts (exponential); small
	// gaps make faults overlap.
	MeanGap time.Duration
	// Settle is the quiet time before a loss-only period.
	Settle time.Duration
	Groups []string // groups whose owners faults may target
}

// Plan draws the faults of one run from the seed: the same spec always gives
// the same plan. Faults start at exponential intervals and overlap freely,
// except loss-only periods (half of the Loss faults): those start Settle
// after every earlier fault ended, and no other fault starts before they
// end.
func Plan(s PlanSpec) []Fault {
	r := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	if s.MeanGap <= 0 {
		s.MeanGap = 4 * time.Second
	}
	if len(s.Kinds) == 0 {
		s.Kinds = Kinds
	}
	if len(s.Groups) == 0 {
		s.Groups = []string{"web"}
	}
	uniform := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
	var out []Fault
	var busy time.Duration // every fault so far ends by busy
	t := time.Duration(0)
	for {
		gap := time.Duration(-math.Log(1-r.Float64()) * float64(s.MeanGap))
		t += min(max(gap, 300*time.Millisecond), 3*s.MeanGap)
		k := s.Kinds[r.IntN(len(s.Kinds))]
		f := Fault{Kind: k, At: t}
		group := s.Groups[r.IntN(len(s.Groups))]
		roles := []Target{{Role: "owner", Group: group}, {Role: "owner", Group: group}, {Role: "standby", Group: group},
			{Role: "witness"}, {Role: "member", Pick: r.IntN(8)}}
		f.Target = roles[r.IntN(len(roles))]
		switch k {
		case LinkDown, Stop:
			f.For = uniform(time.Second, 6*time.Second)
		case Kill:
			f.For = uniform(500*time.Millisecond, 8*time.Second) // the restart delay
		case PartOwner:
			f.Target = Target{Role: "owner", Group: group}
			f.For = uniform(2*time.Second, 8*time.Second)
		case PartWit:
			f.Target = Target{Role: "witness"}
			f.For = uniform(2*time.Second, 8*time.Second)
		case Deaf:
			f.For = uniform(2*time.Second, 6*time.Second)
		case Loss:
			f.Target, f.Percent = Target{Role: "all"}, 30
			f.For = uniform(5*time.Second, 15*time.Second)
			if r.IntN(2) == 0 {
				f.Alone = true
				f.At = max(t, busy+s.Settle)
			}
		case ClockStep:
			f.For = uniform(5*time.Second, 20*time.Second)
			f.Offset = time.Hour
			if r.IntN(2) == 0 {
				f.Offset = -time.Hour
			}
		case SlowDisk:
			f.For = uniform(3*time.Second, 12*time.Second)
			f.FsyncDelay = uniform(time.Second, 4*time.Second).Round(100 * time.Millisecond)
		case Flood:
			f.Target = Target{Role: "all"}
			f.For = uniform(4*time.Second, 12*time.Second)
		}
		if f.End() > s.Duration {
			break
		}
		if f.Alone {
			t = f.End() // nothing else starts during a loss-only period
		}
		busy = max(busy, f.End())
		f.N = len(out) + 1
		out = append(out, f)
	}
	return out
}
