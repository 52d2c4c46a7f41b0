package nemesis

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	spec := PlanSpec{Seed: 7, Duration: 10 * time.Minute, MeanGap: 3 * time.Second, Settle: 2 * time.Second, Groups: []string{"web", "aa", "pg"}}
	p := Plan(spec)
	if !reflect.DeepEqual(p, Plan(spec)) {
		t.Fatal("the same seed gave two plans")
	}
	spec2 := spec
	spec2.Seed = 8
	if reflect.DeepEqual(p, Plan(spec2)) {
		t.Fatal("seeds 7 and 8 gave the same plan")
	}
	seen := map[Kind]bool{}
	overlaps := 0
	for i, f := range p {
		seen[f.Kind] = true
		if f.N != i+1 || f.For <= 0 || f.End() > spec.Duration {
			t.Errorf("fault %+v: numbering, length or end out of range", f)
		}
		if i > 0 && f.At < p[i-1].At {
			t.Errorf("fault %d starts before fault %d", f.N, p[i-1].N)
		}
		for _, g := range p[:i] {
			if g.End() > f.At {
				overlaps++
				if f.Alone || g.Alone {
					t.Errorf("loss-only period overlaps another fault: %v and %v", g, f)
				}
			}
			if f.Alone && g.End() > f.At-spec.Settle {
				t.Errorf("loss-only period %v starts less than %v after %v ended", f, spec.Settle, g)
			}
		}
	}
	for _, k := range Kinds {
		if !seen[k] {
			t.Errorf("no %s fault in 10 minutes", k)
		}
	}
	if !slices.ContainsFunc(p, func(f Fault) bool { return f.Alone }) {
		t.Error("no loss-only period in 10 minutes")
	}
	if overlaps < len(p)/4 {
		t.Errorf("only %d overlapping pairs among %d faults", overlaps, len(p))
	}
	only := Plan(PlanSpec{Seed: 1, Duration: time.Minute, Kinds: []Kind{Kill}})
	for _, f := range only {
		if f.Kind != Kill {
			t.Errorf("kinds {kill} planned %v", f)
		}
	}
}

func TestParseKinds(t *testing.T) {
	if k, err := ParseKinds("all"); err != nil || !reflect.DeepEqual(k, Kinds) {
		t.Errorf("all: %v, %v", k, err)
	}
	if k, err := ParseKinds("kill, loss"); err != nil || !reflect.DeepEqual(k, []Kind{Kill, Loss}) {
		t.Errorf("kill, loss: %v, %v", k, err)
	}
	if _, err := ParseKinds("kill,reboot"); err == nil || !strings.Contains(err.Error(), `fault kind "reboot": want one of`) {
		t.Errorf("reboot: %v", err)
	}
}
