package probe

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ok(ms int, who string) Probe { return Probe{At: at(ms), Who: who} }

func bad(ms int) Probe { return Probe{At: at(ms), Err: "timeout"} }

func TestOutages(t *testing.T) {
	for _, c := range []struct {
		name   string
		probes []Probe
		after  time.Time
		want   []Outage
	}{
		{"none", []Probe{ok(0, "h1"), ok(5, "h1")}, t0, nil},
		{"empty", nil, t0, nil},
		{"failover", []Probe{ok(0, "h1"), bad(5), bad(10), ok(15, "h2"), ok(20, "h2")}, t0,
			[]Outage{{Start: at(0), End: at(15), Duration: 15 * time.Millisecond, Before: "h1", After: "h2", Failed: 2}}},
		{"unsorted input", []Probe{bad(10), ok(15, "h2"), ok(0, "h1"), bad(5)}, t0,
			[]Outage{{Start: at(0), End: at(15), Duration: 15 * time.Millisecond, Before: "h1", After: "h2", Failed: 2}}},
		{"two", []Probe{ok(0, "h1"), bad(5), ok(10, "h1"), bad(15), bad(20), ok(25, "h3")}, t0, []Outage{
			{Start: at(0), End: at(10), Duration: 10 * time.Millisecond, Before: "h1", After: "h1", Failed: 1},
			{Start: at(10), End: at(25), Duration: 15 * time.Millisecond, Before: "h1", After: "h3", Failed: 2}}},
		{"before after ignored", []Probe{bad(0), ok(5, "h1"), bad(10), ok(15, "h1")}, at(12), nil},
		{"straddles after", []Probe{ok(0, "h1"), bad(5), bad(10), ok(15, "h2")}, at(7),
			[]Outage{{Start: at(0), End: at(15), Duration: 15 * time.Millisecond, Before: "h1", After: "h2", Failed: 1}}},
		{"ongoing", []Probe{ok(0, "h1"), bad(5), bad(10)}, t0,
			[]Outage{{Start: at(0), End: at(10), Duration: 10 * time.Millisecond, Before: "h1", Failed: 2, Ongoing: true}}},
		{"never up", []Probe{bad(0), bad(5), ok(10, "h2")}, t0,
			[]Outage{{Start: at(0), End: at(10), Duration: 10 * time.Millisecond, After: "h2", Failed: 2}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Outages(c.probes, c.after)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("Outages =\n %+v\nwant\n %+v", got, c.want)
			}
		})
	}
}

func TestWorst(t *testing.T) {
	for _, c := range []struct {
		name   string
		probes []Probe
		after  time.Time
		want   Outage
	}{
		{"no outage", []Probe{ok(0, "h1"), ok(5, "h1")}, t0, Outage{}},
		{"longest wins", []Probe{ok(0, "h1"), bad(5), ok(10, "h1"), bad(15), bad(20), ok(25, "h2")}, t0,
			Outage{Start: at(10), End: at(25), Duration: 15 * time.Millisecond, Before: "h1", After: "h2", Failed: 2}},
		{"over before t0 ignored", []Probe{ok(0, "h1"), bad(5), bad(10), bad(15), ok(20, "h1"), bad(25), ok(30, "h2")}, at(22),
			Outage{Start: at(20), End: at(30), Duration: 10 * time.Millisecond, Before: "h1", After: "h2", Failed: 1}},
		// A probe in flight when the fault hit failed just before t0: the
		// outage it opened is the fault's, counted from the last success.
		{"began just before t0", []Probe{ok(0, "h1"), bad(5), bad(10), ok(15, "h2")}, at(7),
			Outage{Start: at(0), End: at(15), Duration: 15 * time.Millisecond, Before: "h1", After: "h2", Failed: 2}},
		{"ongoing counts", []Probe{ok(0, "h1"), bad(5), bad(10)}, at(50),
			Outage{Start: at(0), End: at(10), Duration: 10 * time.Millisecond, Before: "h1", Failed: 2, Ongoing: true}},
		{"tie goes to the earlier", []Probe{ok(0, "h1"), bad(5), ok(10, "h1"), bad(15), ok(20, "h2")}, t0,
			Outage{Start: at(0), End: at(10), Duration: 10 * time.Millisecond, Before: "h1", After: "h1", Failed: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Worst(c.probes, c.after); got != c.want {
				t.Errorf("Worst =\n %+v\nwant\n %+v", got, c.want)
			}
		})
	}
}
