package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDebugFaults(t *testing.T) {
	for _, tc := range []struct {
		in         string
		wall, sync time.Duration
		err        string
	}{
		{in: ""},
		{in: "# nothing\n\n"},
		{in: "wall_clock_offset=-1h\nfsync_delay = 2s\n", wall: -time.Hour, sync: 2 * time.Second},
		{in: "wall_clock_offset=an hour", err: `line 1: wall_clock_offset: want a Go duration`},
		{in: "\nfsync_delay=-1s", err: `line 2: fsync_delay -1s must not be negative`},
		{in: "clock=1h", err: `line 1: unknown key "clock" (want wall_clock_offset or fsync_delay)`},
		{in: "1h", err: `line 1: "1h": want key=value`},
	} {
		w, s, err := ParseDebugFaults(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || w != tc.wall || s != tc.sync {
			t.Errorf("%q: %v, %v, %v; want %v, %v", tc.in, w, s, err, tc.wall, tc.sync)
		}
	}
}

// A running agent's faults follow the file; a nil Debug injects nothing;
// the fsync delay slows the release file's save.
func TestDebugFaultFile(t *testing.T) {
	var none *Debug
	if none.WallOffset() != 0 || none.FsyncDelay() != 0 || time.Since(none.wallNow()) > time.Minute {
		t.Fatal("a nil Debug injects faults")
	}
	path := filepath.Join(t.TempDir(), "faults")
	t.Setenv(EnvDebugFaults, path)
	d, err := DebugFromEnv()
	if err != nil || d == nil || d.WallOffset() != 0 {
		t.Fatalf("no file yet: %+v, %v", d, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Watch(ctx, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { cancel(); <-done }()
	if err := os.WriteFile(path, []byte("wall_clock_offset=-1h\nfsync_delay=100ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); d.FsyncDelay() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the file's faults were not picked up")
		}
	}
	if off := time.Until(d.wallNow()); off > -59*time.Minute || off < -61*time.Minute {
		t.Errorf("wallNow is %v from now, want about -1h", off)
	}
	f := &FileReleases{Path: filepath.Join(t.TempDir(), "released.json"), FsyncDelay: d.FsyncDelay}
	t0 := time.Now()
	if err := f.Save(map[string]uint64{"web": 3}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 100*time.Millisecond {
		t.Errorf("save took %v with a 100ms fsync delay", took)
	}
	if m, err := (&FileReleases{Path: f.Path}).Load(); err != nil || m["web"] != 3 {
		t.Errorf("saved %v, %v", m, err)
	}
	// A malformed file keeps the faults as they were.
	if err := os.WriteFile(path, []byte("fsync_delay=soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if d.FsyncDelay() != 100*time.Millisecond {
		t.Errorf("fsync delay %v after a malformed file, want the previous 100ms", d.FsyncDelay())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); d.FsyncDelay() != 0 || d.WallOffset() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("removing the file did not clear the faults")
		}
	}
}
