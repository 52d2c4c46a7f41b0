package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// EnvDebugFaults names the debug fault file (see Debug).
const EnvDebugFaults = "BATON_DEBUG_FAULTS_FILE"

// Debug is fault injection for the nemesis runner (bench/nemesis,
// internal/nemesis): faults the namespace lab cannot give one node by
// itself, because the machine's clock and disks are shared by all its
// namespaces. `baton agent` turns it on when BATON_DEBUG_FAULTS_FILE names a
// file; the agent re-reads that file every 100 ms, so a test steps the clock
// or slows the disk of a running agent by rewriting it. The file holds
// key=value lines:
//
//	wall_clock_offset=-1h   added to this agent's wall clock only
//	fsync_delay=2s          slept before every durable write's fsync
//
// A missing file means no faults. Never use this in production: the agent
// warns at start and at every change.
//
// The wall-clock offset moves the history's timestamps, status'
// "generated" and the heartbeat incarnation taken at start (a restart after
// the clock was stepped back, as by NTP or a restored snapshot); monotonic
// time, which every timing decision uses, is untouched, as when NTP steps a
// real clock. The machine clock is never changed.
//
// The fsync delay applies to every raft log and stable-store write (each a
// raft-boltdb transaction ending in fsync) and to every save of the voter's
// release promises: a disk whose fsync takes seconds (a saturated or failing
// device, a stalled network volume), for this node's data_dir only.
type Debug struct {
	path       string
	wallOffset atomic.Int64
	fsyncDelay atomic.Int64
	last       string // file content last applied (watch goroutine only)
}

// DebugFromEnv returns nil unless BATON_DEBUG_FAULTS_FILE is set; then the
// faults the file holds now (an unreadable or malformed file is an error
// naming it).
func DebugFromEnv() (*Debug, error) {
	p := os.Getenv(EnvDebugFaults)
	if p == "" {
		return nil, nil
	}
	d := &Debug{path: p}
	if _, err := d.reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseDebugFaults parses the fault file's content.
func ParseDebugFaults(s string) (wallOffset, fsyncDelay time.Duration, err error) {
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return 0, 0, fmt.Errorf("line %d: %q: want key=value", i+1, line)
		}
		x, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return 0, 0, fmt.Errorf("line %d: %s: want a Go duration such as \"-1h\" or \"2s\": %w", i+1, k, err)
		}
		switch strings.TrimSpace(k) {
		case "wall_clock_offset":
			wallOffset = x
		case "fsync_delay":
			if x < 0 {
				return 0, 0, fmt.Errorf("line %d: fsync_delay %v must not be negative", i+1, x)
			}
			fsyncDelay = x
		default:
			return 0, 0, fmt.Errorf("line %d: unknown key %q (want wall_clock_offset or fsync_delay)", i+1, k)
		}
	}
	return wallOffset, fsyncDelay, nil
}

// reload reads the file and applies it; it reports whether it changed.
func (d *Debug) reload() (bool, error) {
	b, err := os.ReadFile(d.path)
	if os.IsNotExist(err) {
		b, err = nil, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s=%s: %w", EnvDebugFaults, d.path, err)
	}
	if string(b) == d.last {
		return false, nil
	}
	w, f, err := ParseDebugFaults(string(b))
	if err != nil {
		return false, fmt.Errorf("%s=%s: %w", EnvDebugFaults, d.path, err)
	}
	d.last = string(b)
	d.wallOffset.Store(int64(w))
	d.fsyncDelay.Store(int64(f))
	return true, nil
}

// Watch re-reads the file every 100 ms until ctx ends, logging each change
// and each error (an error keeps the faults as they were).
func (d *Debug) Watch(ctx context.Context, log *slog.Logger) {
	if d == nil {
		return
	}
	d.warn(log)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := d.reload()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			log.Error("debug fault file", "err", err)
		case changed:
			lastErr = ""
			d.warn(log)
		}
	}
}

func (d *Debug) warn(log *slog.Logger) {
	log.Warn("debug fault injection is on; never use this in production", "file", d.path,
		"wall_clock_offset", d.WallOffset(), "fsync_delay", d.FsyncDelay())
}

// WallOffset is the current wall-clock offset (0 for a nil Debug).
func (d *Debug) WallOffset() time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(d.wallOffset.Load())
}

// FsyncDelay is the current fsync delay (0 for a nil Debug).
func (d *Debug) FsyncDelay() time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(d.fsyncDelay.Load())
}

// wallNow is the wall clock this agent uses for timestamps.
func (d *Debug) wallNow() time.Time { return time.Now().Add(d.WallOffset()) }
