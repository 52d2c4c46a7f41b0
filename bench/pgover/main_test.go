package main

import (
	"strings"
	"testing"
	"time"
)

func TestMerged(t *testing.T) {
	old := Results{Command: "go run ./bench/pgover -systems baton,patroni", Trials: []Trial{
		{System: "baton", Mode: "on", Fault: "partition", N: 1, OutageMs: 1349},
		{System: "baton", Mode: "on", Fault: "linkdown", N: 1, OutageMs: 870},
		{System: "patroni", Mode: "on", Fault: "partition", N: 1, OutageMs: 29000},
	}}
	run := Results{Measured: time.Date(2026, 12, 2, 16, 50, 0, 0, time.UTC), Took: "3m12s", Baton: "abc",
		Command: "go run ./bench/pgover -systems baton -modes on -faults partition -merge docs/bench/pgover.json",
		Errors:  []string{"baton sync on: partition trial 3: boom"},
		Trials: []Trial{
			{System: "baton", Mode: "on", Fault: "partition", N: 1, OutageMs: 600},
			{System: "baton", Mode: "on", Fault: "partition", N: 2, OutageMs: 620},
		}}
	got := merged(old, run)
	var outages []float64
	for _, tr := range got.Trials {
		outages = append(outages, tr.OutageMs)
	}
	// The re-measured cell is replaced, the others are kept.
	if want := []float64{870, 29000, 600, 620}; len(outages) != len(want) || outages[0] != want[0] || outages[1] != want[1] || outages[2] != want[2] || outages[3] != want[3] {
		t.Errorf("merged outages %v, want %v", outages, want)
	}
	if got.Command != old.Command || len(got.Updates) != 1 || got.Updates[0].Cells[0] != "baton sync on primary cut off from its peers" {
		t.Errorf("merged header %q, updates %+v", got.Command, got.Updates)
	}
	md := fragment(got)
	for _, want := range []string{"Re-measured 2026-12-02 16:50 UTC", run.Command, "failed trial (not in the table): baton sync on: partition trial 3: boom",
		"| baton | on | primary cut off from its peers | 2 | 600 ms | 620 ms |", "| patroni | on | primary cut off from its peers | 1 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("fragment lacks %q:\n%s", want, md)
		}
	}
	// A second merge keeps the first update.
	if again := merged(got, run); len(again.Updates) != 2 || len(again.Trials) != 4 {
		t.Errorf("second merge: %d updates, %d trials", len(again.Updates), len(again.Trials))
	}
}
