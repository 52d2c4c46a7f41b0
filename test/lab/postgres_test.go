package labtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/pglab"
)

// TestPostgresFailover runs, per sync mode, the primary's link going down
// and then the primary cut off from its peers while the client still
// reaches it. In sync on and strict no acknowledged write may be lost; in
// async mode the history records the positions and the bytes that may have
// been lost, within max_lag. Each time the old primary comes back as a
// streaming replica of the new one (pg_rewind), and at the end both hold
// the same data.
func TestPostgresFailover(t *testing.T) {
	for _, mode := range []string{"on", "strict", "off"} {
		t.Run("sync-"+mode, func(t *testing.T) { testPostgresFailover(t, mode) })
	}
}

func testPostgresFailover(t *testing.T, mode string) {
	e, err := pglab.Start(bin, mode, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	defer func() {
		if t.Failed() || os.Getenv("BATON_LAB_LOGS") != "" {
			t.Log(e.Logs(20000))
		}
	}()
	owner, _, err := e.WaitReady("", 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{pglab.LinkDown, pglab.Partition} {
		r, err := e.Trial(fault, owner, 2*liveness)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("sync %s, %s: %s → %s, write outage %v, %d writes acknowledged, %d of them lost; history: %+v",
			mode, fault, r.From, r.To, r.Outage.Round(time.Millisecond), r.Acked, len(r.Lost), r.Event)
		if mode != "off" && len(r.Lost) > 0 {
			t.Errorf("%s: %d acknowledged writes lost in sync mode %s, e.g. %v", fault, len(r.Lost), mode, r.Lost[:min(5, len(r.Lost))])
		}
		if ev := r.Event; ev.From != r.From || ev.To != r.To || ev.PromotedPos == 0 {
			t.Errorf("%s: history entry %+v, want %s → %s with positions", fault, ev, r.From, r.To)
		}
		if mode == "off" && r.Event.LostBytes > pglab.MaxLag {
			t.Errorf("%s: up to %d bytes lost, beyond max_lag %d", fault, r.Event.LostBytes, pglab.MaxLag)
		}
		// The old primary rejoins as a replica of the new one (pg_rewind),
		// and the history then says what it held beyond the new primary.
		if owner, _, err = e.WaitReady(r.To, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		var ev pglab.Event
		for deadline := time.Now().Add(liveness); ; time.Sleep(100 * time.Millisecond) {
			if ev, err = e.LastFailover(); err == nil && ev.LostMeasured {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the history never got the measured divergence: %+v, %v", fault, ev, err)
			}
		}
		t.Logf("after the rejoin: %d bytes maybe lost; %s", ev.LostBytes, ev.Detail)
		if mode == "off" && len(r.Lost) > 0 && ev.LostBytes == 0 {
			t.Errorf("%s: %d acknowledged writes lost but the history records no lost bytes", fault, len(r.Lost))
		}
		if mode == "off" && ev.LostBytes > pglab.MaxLag {
			t.Errorf("%s: %d bytes lost, beyond max_lag", fault, ev.LostBytes)
		}
	}
	d, err := e.SameData(liveness)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("both members: %s", d)
}
