package proctest

import (
	"fmt"
	"time"

	"github.com/baton-ha/baton/internal/probe"
)

// GroupsServed measures, per group, how long after kill() was called the
// successor's API first answered 200 on /v1/groups/{g}/active: the role
// endpoint an HTTP health-checking proxy or load balancer watches, probed on
// a new connection every `every` per group as such a client would. kill must
// end the old owner at once (kill -9), so that its answers stop when kill
// is called. It waits at most limit; groups not served by then are missing from
// the result.
func (c *Cluster) GroupsServed(successor string, groups []string, every, limit time.Duration, kill func() error) (map[string]time.Duration, error) {
	probers := map[string]*probe.Prober{}
	defer func() {
		for _, p := range probers {
			p.Stop()
		}
	}()
	for _, g := range groups {
		p, err := probe.Start(probe.Spec{Kind: probe.HTTP, Target: fmt.Sprintf("http://%s/v1/groups/%s/active", c.APIs[successor], g),
			Every: every, Timeout: 500 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		probers[g] = p
	}
	time.Sleep(2 * every) // every prober running
	killed := time.Now()
	if err := kill(); err != nil {
		return nil, err
	}
	out := map[string]time.Duration{}
	for time.Since(killed) < limit && len(out) < len(groups) {
		time.Sleep(every)
		for g, p := range probers {
			if _, done := out[g]; done {
				continue
			}
			for _, pr := range p.Probes() {
				if pr.OK() && pr.At.After(killed) {
					out[g] = pr.At.Sub(killed)
					break
				}
			}
		}
	}
	return out, nil
}
