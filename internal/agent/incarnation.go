package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// nextIncarnation returns this run's heartbeat incarnation and records it in
// path (data_dir/incarnation) before the agent sends anything. Peers refuse
// packets from an incarnation lower than one they saw (replay protection),
// so it must grow across restarts even when the wall clock stepped back (an
// NTP step, a restored snapshot): it is the larger of the stored one plus
// one and the clock in nanoseconds.
func nextIncarnation(path string, now time.Time) (uint64, error) {
	var stored uint64
	switch b, err := os.ReadFile(path); {
	case err == nil:
		stored, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w (delete it only together with this node's raft state)", path, err)
		}
	case !os.IsNotExist(err):
		return 0, err
	}
	inc := max(stored+1, uint64(now.UnixNano()))
	if err := writeDurably(path, []byte(strconv.FormatUint(inc, 10)+"\n"), 0); err != nil {
		return 0, fmt.Errorf("recording the heartbeat incarnation in %s: %w", path, err)
	}
	return inc, nil
}
