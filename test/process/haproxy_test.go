package process

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
)

// TestHAProxyFollowsTheOwner puts a real HAProxy in front of two members,
// health-checking each member's /v1/groups/web/active, and checks that
// traffic reaches only the owner, across a switchover and a failover.
func TestHAProxyFollowsTheOwner(t *testing.T) {
	c := start(t, proctest.Spec{})
	const inter = 50 * time.Millisecond // HAProxy's check interval
	hp := behindHAProxy(t, c, inter)
	client := &http.Client{Timeout: time.Second}
	// onlyFrom waits until `want` answers 10 times in a row (HAProxy marks the
	// new owner up and the old one down on separate checks, so for a moment
	// both may be up), then requires every answer to come from it for 20 of
	// HAProxy's checks: what this watches is HAProxy flipping back, not the
	// cluster moving the group.
	onlyFrom := func(want string) {
		t.Helper()
		deadline := time.Now().Add(liveness)
		for streak := 0; streak < 10; time.Sleep(10 * time.Millisecond) {
			if hp.Get(client) == "I am "+want {
				streak++
			} else {
				streak = 0
			}
			if time.Now().After(deadline) {
				t.Fatalf("HAProxy never sent traffic to %s alone", want)
			}
		}
		for end := time.Now().Add(20 * inter); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if got := hp.Get(client); got != "I am "+want {
				t.Fatalf("HAProxy answered %q while %s owns the group", got, want)
			}
		}
	}
	onlyFrom("n1")
	if out, err := c.Baton("w1", "switchover", "web", "--to", "n2"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	onlyFrom("n2")
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	onlyFrom("n1")
}

// behindHAProxy gives both members a "who am I" service and puts a real
// HAProxy in front that checks /v1/groups/web/active every `inter`.
func behindHAProxy(t *testing.T, c *proctest.Cluster, inter time.Duration) *proctest.HAProxy {
	t.Helper()
	svcPort := c.Port + 2
	for _, n := range []string{"n1", "n2"} {
		stop, err := proctest.Whoami(net.JoinHostPort(c.Addrs[n], fmt.Sprint(svcPort)), n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	// The front on the witness's own 127.0.x.y address: a port on 127.0.0.1
	// may be an ephemeral port another test is using.
	hp, err := c.StartHAProxy(net.JoinHostPort(c.Addrs["w1"], fmt.Sprint(c.ProxyPort)), []string{"n1", "n2"}, svcPort, inter)
	if errors.Is(err, proctest.ErrHAProxyStart) {
		t.Fatal(err)
	}
	if err != nil {
		t.Skip("SKIPPED LOUDLY: " + err.Error() + " (scripts/test installs it as root)")
	}
	t.Cleanup(hp.Stop)
	time.Sleep(10 * inter) // HAProxy counts servers up until their first check
	return hp
}
