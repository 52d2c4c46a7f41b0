package agent

import (
	"strings"
	"testing"
	"time"
)

func TestParseDebugEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want Debug
		err  string
	}{
		{env: nil, want: Debug{}},
		{env: map[string]string{EnvWallOffset: "-1h", EnvFsyncDelay: "2s"}, want: Debug{WallOffset: -time.Hour, FsyncDelay: 2 * time.Second}},
		{env: map[string]string{EnvWallOffset: "1h30m"}, want: Debug{WallOffset: 90 * time.Minute}},
		{env: map[string]string{EnvWallOffset: "an hour"}, err: `BATON_DEBUG_WALL_CLOCK_OFFSET="an hour": want a Go duration`},
		{env: map[string]string{EnvFsyncDelay: "-1s"}, err: `BATON_DEBUG_FSYNC_DELAY="-1s": must not be negative`},
	} {
		got, err := ParseDebugEnv(func(k string) string { return tc.env[k] })
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.env, got, err, tc.want)
		}
	}
}

// The wall-clock offset moves timestamps only, and the fsync delay slows
// the release file's save.
func TestDebugFaults(t *testing.T) {
	d := Debug{WallOffset: -time.Hour}
	if off := time.Until(d.wallNow()); off > -59*time.Minute || off < -61*time.Minute {
		t.Errorf("wallNow is %v from now, want about -1h", off)
	}
	f := &FileReleases{Path: t.TempDir() + "/released.json", FsyncDelay: 100 * time.Millisecond}
	t0 := time.Now()
	if err := f.Save("web", 3); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took < 100*time.Millisecond {
		t.Errorf("save took %v with a 100ms fsync delay", took)
	}
	if m, err := (&FileReleases{Path: f.Path}).Load(); err != nil || m["web"] != 3 {
		t.Errorf("saved %v, %v", m, err)
	}
}
