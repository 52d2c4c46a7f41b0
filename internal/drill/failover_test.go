package drill

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/probe"
)

// TestFailoverLoop runs the benchmarks' trial loop against a loopback
// "service" whose holder the fake faults hand from one member to the other,
// with a short gap of silence: every trial must see that gap as its outage.
func TestFailoverLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	serving := "h1" // "" = down
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			who := serving
			mu.Unlock()
			if who != "" {
				_, _ = io.WriteString(c, "I am "+who+"\n")
			}
			c.Close()
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()
	set := func(who string) { mu.Lock(); serving = who; mu.Unlock() }
	pr, err := probe.Start(probe.Spec{Kind: probe.Whoami, Target: ln.Addr().String(), Every: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Stop()
	const gap = 60 * time.Millisecond
	var progress strings.Builder
	loop := FailoverLoop{
		Members: [2]string{"h1", "h2"},
		Prober:  pr,
		Settle:  20 * time.Millisecond,
		Served:  5 * time.Second,
		Fault: func(holder string) error {
			set("")
			other := map[string]string{"h1": "h2", "h2": "h1"}[holder]
			time.AfterFunc(gap, func() { set(other) })
			return nil
		},
		Repair:   func(string) error { return nil },
		Next:     func(_, other string) (string, error) { return other, nil },
		Label:    "loopback",
		Progress: &progress,
	}
	ts, err := loop.Run("h1", 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ft := range ts {
		got = append(got, ft.From+"→"+ft.To)
	}
	if strings.Join(got, " ") != "h1→h2 h2→h1 h1→h2" {
		t.Errorf("trials %v, want h1→h2 h2→h1 h1→h2", got)
	}
	if !strings.HasPrefix(progress.String(), "loopback trial 1: h1 → h2, outage ") || strings.Count(progress.String(), "\n") != 3 {
		t.Errorf("progress lines:\n%s", progress.String())
	}
	for i, d := range Durations(ts) {
		if o := ts[i].Outage; d < gap || o.Before != ts[i].From || o.After != ts[i].To {
			t.Errorf("trial %d: outage %+v, want ≥ %v from %s to %s", i+1, o, gap, ts[i].From, ts[i].To)
		}
	}

	// A fault that fails ends the loop with the trials done so far.
	loop.Fault = func(string) error { return errors.New("no such host") }
	ts, err = loop.Run("h2", 2)
	if len(ts) != 0 || err == nil || err.Error() != "loopback trial 1: fault on h2: no such host" {
		t.Errorf("failing fault: %d trials, %v", len(ts), err)
	}
}
