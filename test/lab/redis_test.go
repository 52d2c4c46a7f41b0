package labtest

import (
	"os"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/redislab"
)

// TestRedisFailover runs, per sync mode, the primary's link going down and
// then the primary cut off from its peers while the client still reaches it
// (the case where Sentinel loses thousands of acknowledged writes). In sync
// on the client WAITs for a replica after every SET, as the driver README
// says it must, and no write it counted as acknowledged may be lost. In sync
// off the loss is bounded by one lease and the history records what the old
// primary held beyond the new one once it rejoins as a replica.
func TestRedisFailover(t *testing.T) {
	for _, mode := range []string{"on", "off"} {
		t.Run("sync-"+mode, func(t *testing.T) { testRedisFailover(t, mode) })
	}
}

func testRedisFailover(t *testing.T, mode string) {
	e, err := redislab.Start(bin, mode, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer func() {
		if t.Failed() || os.Getenv("BATON_LAB_LOGS") != "" {
			t.Log(e.Logs(20000))
		}
	}()
	owner, _, err := e.WaitReady("", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{redislab.LinkDown, redislab.Partition} {
		r, err := e.Trial(fault, owner, 2*liveness)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sync %s, %s: %s → %s, write outage %v, %d writes acknowledged, %d of them lost (the last acknowledged %v after the fault); history: %+v",
			mode, fault, r.From, r.To, r.Outage.Round(time.Millisecond), r.Acked, len(r.Lost), r.LostAfter.Round(time.Millisecond), r.Event)
		if mode == "on" && len(r.Lost) > 0 {
			t.Errorf("%s: %d acknowledged (WAIT-confirmed) writes lost in sync on, e.g. %v", fault, len(r.Lost), r.Lost[:min(5, len(r.Lost))])
		}
		if ev := r.Event; ev.From != r.From || ev.To != r.To || ev.PromotedPos == 0 {
			t.Errorf("%s: history entry %+v, want %s → %s with positions", fault, ev, r.From, r.To)
		}
		if owner, _, err = e.WaitReady(r.To, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if fault != redislab.Partition {
			continue
		}
		// The old primary, cut off but reachable by the client, had until
		// its lease ended; it rejoined as a replica, and the history says
		// what it held beyond the new primary.
		var ev redislab.Event
		for deadline := time.Now().Add(liveness); ; time.Sleep(100 * time.Millisecond) {
			if ev, err = e.LastFailover(); err == nil && ev.LostMeasured {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the history never got the measured divergence: %+v, %v", fault, ev, err)
			}
		}
		t.Logf("after the rejoin: %d bytes lost per the history; %s", ev.LostBytes, ev.Detail)
		if mode == "off" && len(r.Lost) > 0 {
			// The history's bytes are the SETs the old primary held beyond
			// the new one: the lost acknowledged writes, plus at most a
			// couple it executed whose replies never reached the client.
			each := redislab.SetBytes(r.Lost[0])
			if lo, hi := uint64(len(r.Lost))*each, uint64(len(r.Lost)+3)*each; ev.LostBytes < lo || ev.LostBytes > hi {
				t.Errorf("%s: %d acknowledged writes (%d bytes) lost, but the history records %d bytes", fault, len(r.Lost), lo, ev.LostBytes)
			}
			// Bounded by one lease: the old primary fenced itself before
			// its lease ran out, so nothing it acknowledged later was lost.
			st, err := e.Status()
			if err != nil {
				t.Fatal(err)
			}
			if lease := time.Duration(st.LeaseMs) * time.Millisecond; r.LostAfter > lease+250*time.Millisecond {
				t.Errorf("%s: a lost write was acknowledged %v after the fault, beyond the lease %v", fault, r.LostAfter, lease)
			}
		}
		if mode == "off" && ev.LostBytes > redislab.MaxLag {
			t.Errorf("%s: %d bytes lost, beyond max_lag", fault, ev.LostBytes)
		}
	}
	d, err := redislab.SameData(e.L, liveness)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("both members: %s", d)
}
