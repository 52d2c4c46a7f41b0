package proctest

import (
	"time"
)

// GroupsServed measures, per group, how long after kill() was called the
// successor reported itself active for it: what its role endpoint
// /v1/groups/{g}/active (the one an HTTP health-checking proxy watches)
// would answer 200 for. It reads the successor's /v1/status every `every`
// instead of probing each group's endpoint: one request per interval keeps the
// measurement from starving the agent it measures (a probe per group every
// 100 ms was 1,000 connections a second for 100 groups). kill must end the old
// owner at once (kill -9). It waits at most limit; groups not served by then
// are missing from the result.
func (c *Cluster) GroupsServed(successor string, groups []string, every, limit time.Duration, kill func() error) (map[string]time.Duration, error) {
	want := map[string]bool{}
	for _, g := range groups {
		want[g] = true
	}
	killed := time.Now()
	if err := kill(); err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for time.Since(killed) < limit && len(out) < len(groups) {
		asked := time.Now()
		st, err := c.Status(successor)
		if err == nil {
			for _, g := range st.Groups {
				if _, done := out[g.Name]; want[g.Name] && !done && g.Role == "active" {
					// The request was answered between asked and now: count
					// from when it was sent, the earliest it can be.
					out[g.Name] = asked.Sub(killed)
				}
			}
		}
		time.Sleep(max(0, every-time.Since(asked)))
	}
	return out, nil
}
