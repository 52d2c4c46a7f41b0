package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileReleasesSurviveRestart: a release saved by one store is what a new
// store on the same file loads (a restarted voter), and epochs never go back.
func TestFileReleasesSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "released.json")
	a := &FileReleases{Path: path}
	if m, err := a.Load(); err != nil || len(m) != 0 {
		t.Fatalf("fresh store: %v, %v", m, err)
	}
	for _, e := range []uint64{3, 5, 4} {
		if err := a.Save(map[string]uint64{"web": e}); err != nil {
			t.Fatal(err)
		}
	}
	// A batch (the groups of one dead owner) in one save.
	if err := a.Save(map[string]uint64{"db": 2, "edge": 7, "web": 1}); err != nil {
		t.Fatal(err)
	}
	b := &FileReleases{Path: path}
	m, err := b.Load()
	if err != nil || m["web"] != 5 || m["db"] != 2 || m["edge"] != 7 {
		t.Fatalf("restarted store loaded %v, %v; want web=5 db=2 edge=7", m, err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&FileReleases{Path: path}).Load(); err == nil {
		t.Fatal("a corrupt release file loaded without error")
	}
}
