package process

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
)

// TestDrillOnALiveCluster runs `baton drill` the way an operator would on
// their own cluster: probing the service through a real HAProxy that follows
// the owner, first a planned switchover, then a failure drill.
func TestDrillOnALiveCluster(t *testing.T) {
	c := start(t, proctest.Spec{})
	hp := behindHAProxy(t, c, 20*time.Millisecond)

	type report struct {
		Kind        string
		FromOwner   string `json:"from_owner"`
		ToOwner     string `json:"to_owner"`
		ToEpoch     uint64 `json:"to_epoch"`
		Probes      int
		Failed      int     `json:"failed_probes"`
		OutageMs    float64 `json:"outage_ms"`
		ServedAgain bool    `json:"served_again"`
		History     []struct{ Reason, From, To string }
	}
	drill := func(args ...string) report {
		t.Helper()
		out, err := c.Baton("w1", append([]string{"drill", "--url", "http://" + hp.Front + "/", "--settle", "1s", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("baton drill %v: %v\n%s", args, err, out)
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("drill --json: %v\n%s", err, out)
		}
		return r
	}
	r := drill()
	t.Logf("switchover drill: %+v", r)
	if r.Kind != "switchover" || r.FromOwner != "n1" || r.ToOwner != "n2" || !r.ServedAgain || r.Probes < 50 ||
		len(r.History) != 1 || r.History[0].Reason != "switchover" {
		t.Fatalf("switchover drill report: %+v", r)
	}
	r = drill("--allow-disruption")
	t.Logf("failure drill: %+v", r)
	if r.Kind != "failure" || r.FromOwner != "n2" || r.ToOwner != "n1" || !r.ServedAgain || r.OutageMs < 100 ||
		len(r.History) != 1 || r.History[0].Reason != "failure" {
		t.Fatalf("failure drill report: %+v", r)
	}
}
