package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
)

// TestIncarnationGrowsAcrossAClockStep: a node restarted with its clock set
// back an hour still gets an incarnation above its last one, so its peers'
// replay guards accept it at once.
func TestIncarnationGrowsAcrossAClockStep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "incarnation")
	now := time.Unix(1_800_000_000, 0)
	first, err := nextIncarnation(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if first != uint64(now.UnixNano()) {
		t.Fatalf("first incarnation %d, want the clock %d", first, now.UnixNano())
	}
	guard := cluster.NewReplayGuard()
	if guard.Admit("n1", first, 1) != cluster.Fresh {
		t.Fatal("first run refused")
	}
	second, err := nextIncarnation(path, now.Add(-time.Hour)) // the clock stepped back
	if err != nil {
		t.Fatal(err)
	}
	if second <= first {
		t.Fatalf("incarnation after a clock step back: %d, not above %d", second, first)
	}
	if v := guard.Admit("n1", second, 1); v != cluster.Fresh {
		t.Fatalf("peer refuses the restarted node (verdict %d)", v)
	}
	// Without the record (the old behaviour: the clock alone) it is stale.
	if v := guard.Admit("n1", uint64(now.Add(-time.Hour).UnixNano()), 1); v != cluster.Stale {
		t.Fatalf("a lower incarnation is not reported stale (verdict %d)", v)
	}
}
