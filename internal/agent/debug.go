package agent

import (
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Debug holds fault injections for the nemesis runner (bench/nemesis,
// internal/nemesis), set from environment variables by `baton agent`
// (ParseDebugEnv). They exist so that a test can give one node a wrong wall
// clock or a slow disk without touching the machine: the machine clock and
// the disks are shared by every namespace of the lab. Never set them in
// production; the agent logs a warning at start when any is set.
type Debug struct {
	// WallOffset is added to this agent's wall clock, and only to it: the
	// history's timestamps, status' "generated", and the heartbeat
	// incarnation at start. Monotonic time, which every timing decision
	// uses, is untouched, as it is when NTP steps a real clock.
	// BATON_DEBUG_WALL_CLOCK_OFFSET, a Go duration ("-1h").
	WallOffset time.Duration
	// FsyncDelay is slept before each durable write's fsync: every raft log
	// and stable-store write (raft-boltdb commits, which fsync) and every
	// save of the voter's release promises. It models a disk whose fsync
	// takes seconds (a saturated or failing device, a stalled network
	// volume) for this agent's data_dir only. BATON_DEBUG_FSYNC_DELAY, a Go
	// duration ("2s").
	FsyncDelay time.Duration
}

// Environment variables read by ParseDebugEnv.
const (
	EnvWallOffset = "BATON_DEBUG_WALL_CLOCK_OFFSET"
	EnvFsyncDelay = "BATON_DEBUG_FSYNC_DELAY"
)

// ParseDebugEnv reads the debug fault injections from the environment
// (getenv is os.Getenv outside tests). An unparsable value is an error that
// names the variable.
func ParseDebugEnv(getenv func(string) string) (Debug, error) {
	var d Debug
	for _, v := range []struct {
		name string
		to   *time.Duration
		neg  bool
	}{{EnvWallOffset, &d.WallOffset, true}, {EnvFsyncDelay, &d.FsyncDelay, false}} {
		s := getenv(v.name)
		if s == "" {
			continue
		}
		x, err := time.ParseDuration(s)
		if err != nil {
			return Debug{}, fmt.Errorf("%s=%q: want a Go duration such as \"-1h\" or \"2s\": %w", v.name, s, err)
		}
		if x < 0 && !v.neg {
			return Debug{}, fmt.Errorf("%s=%q: must not be negative", v.name, s)
		}
		*v.to = x
	}
	return d, nil
}

// DebugFromEnv is ParseDebugEnv(os.Getenv).
func DebugFromEnv() (Debug, error) { return ParseDebugEnv(os.Getenv) }

// wallNow is the wall clock this agent uses for timestamps.
func (d Debug) wallNow() time.Time { return time.Now().Add(d.WallOffset) }

func (d Debug) warn(log *slog.Logger) {
	if d.WallOffset != 0 || d.FsyncDelay != 0 {
		log.Warn("debug fault injection is on; never use this in production",
			"wall_clock_offset", d.WallOffset, "fsync_delay", d.FsyncDelay)
	}
}
