package labtest

import (
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/probe"
)

// TestSwitchoverNoSilentWindow: planned switchovers of the VIP back and forth
// while a client opens a new connection every 5 ms. Every attempt must be
// answered or reset (the old owner refuses connections to the VIP it gave up
// until the new owner's announcement reaches the client, and resets those it
// accepted just before leaving); none may be dropped in silence, which would cost a real client a 1 s SYN
// retransmit. And never two hosts answering ARP for the VIP.
func TestSwitchoverNoSilentWindow(t *testing.T) {
	e := setup(t, "default")
	// A dropped SYN is retransmitted after 1 s, so a probe that sees one
	// times out at 500 ms; an answered or refused one takes well under a
	// millisecond (500 ms is a generous bound for a loaded machine).
	const silent = 500 * time.Millisecond
	pr, err := probe.Start(probe.Spec{Kind: probe.Whoami, Target: vip + ":8080", Every: 5 * time.Millisecond,
		Timeout: silent, Dial: e.l.Dialer(lab.Client)})
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Stop()
	start := time.Now()
	holder := "h1"
	const switchovers = 10
	for i := range switchovers {
		to := map[string]string{"h1": "h2", "h2": "h1"}[holder]
		asked := time.Now()
		if err := e.c.Switchover(e.c.Witness, to); err != nil {
			t.Fatalf("switchover %d: %v", i+1, err)
		}
		e.waitOwner(to)
		if !pr.WaitServed(to, asked, liveness) {
			t.Fatalf("switchover %d: the client was not served by %s", i+1, to)
		}
		holder = to
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(silent) // the probes in flight end
	ps := pr.Stop()
	refused, reset, answered := 0, 0, 0
	servedBy := map[string]int{}
	for _, p := range ps {
		switch {
		case p.At.Before(start):
		case p.OK():
			answered++
			servedBy[p.Who]++
		case strings.Contains(p.Err, "connection refused"):
			refused++
		case strings.Contains(p.Err, "connection reset"):
			// Accepted by the old owner a moment before it left, and reset
			// as it removed the VIP (it can send nothing from it after).
			reset++
		default:
			t.Errorf("probe at %s failed without a reset: %s", p.At.Format("15:04:05.000"), p.Err)
		}
	}
	if servedBy["h1"] == 0 || servedBy["h2"] == 0 {
		t.Errorf("answers by host: %v, want both members", servedBy)
	}
	t.Logf("%d switchovers: %d probes answered (%v), %d refused by a reset, %d reset after connecting, %d ticks skipped",
		switchovers, answered, servedBy, refused, reset, pr.Skipped())
	for _, o := range probe.Outages(ps, start) {
		t.Logf("client gap %v (%s → %s, %d refused)", o.Duration.Round(time.Millisecond/10), o.Before, o.After, o.Failed)
	}
	e.finish()
}
