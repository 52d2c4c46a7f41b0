package process

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// svcScript writes a supervised service that logs each start to starts.log,
// becomes "ready" (a file the group's exec check looks for) after `delay`,
// and cleans up on SIGTERM. Nodes listed in neverReady never become ready;
// nodes in crash exit at once.
func svcScript(t *testing.T, dir string, neverReady, crash string) string {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
echo "start $BATON_NODE $$" >> %[1]s/starts.log
case " %[3]s " in *" $BATON_NODE "*) exit 1;; esac
trap 'rm -f %[1]s/ready-$BATON_NODE; exit 0' TERM
case " %[2]s " in *" $BATON_NODE "*) ;; *) touch %[1]s/ready-$BATON_NODE;; esac
while :; do sleep 0.1; done
`, dir, neverReady, crash)
	path := filepath.Join(dir, "svc.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func standbySpec(dir, script, mode string) proctest.Spec {
	return proctest.Spec{GroupExtra: fmt.Sprintf(`    standby: %s
    service: {run: [%q], start_timeout: 3s, stop_timeout: 2s}
    checks: [{type: exec, command: ["/bin/sh", "-c", "test -e %s/ready-$BATON_NODE"], interval: 100ms, timeout: 100ms, fall: 1, rise: 1}]
`, mode, script, dir)}
}

// starts returns node → pids started, from starts.log.
func starts(dir string) map[string][]int {
	out := map[string][]int{}
	b, _ := os.ReadFile(filepath.Join(dir, "starts.log"))
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 {
			pid, _ := strconv.Atoi(f[2])
			out[f[1]] = append(out[f[1]], pid)
		}
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	testkit.WaitFor(t, liveness, fmt.Sprintf("process %d to exit", pid), func() bool { return !alive(pid) })
}

func TestColdTakeoverStartsTheServiceOnceAndNoOrphans(t *testing.T) {
	dir := t.TempDir()
	c := start(t, standbySpec(dir, svcScript(t, dir, "", ""), "cold"))
	s := starts(dir)
	if len(s["n1"]) != 1 || len(s["n2"]) != 0 {
		t.Fatalf("starts after the first takeover: %v; want n1 once, n2 never (cold standby)", s)
	}
	n1svc := s["n1"][0]
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" })
	if err != nil {
		t.Fatal(err)
	}
	if e.Epoch != 2 {
		t.Fatalf("n2 active at epoch %d", e.Epoch)
	}
	// The killed agent's service dies with it (no orphan) ...
	waitGone(t, n1svc)
	// ... n2 started its service exactly once, before its active hook.
	if s := starts(dir); len(s["n2"]) != 1 {
		t.Fatalf("n2 started its service %d times, want once: %v", len(s["n2"]), s)
	}
	// The restarted agent finds nothing left over and does not start the cold service.
	restarted := time.Now()
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n1" && e.Role == "standby" && e.At.After(restarted)
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet(t, c)) // long enough for a wrong start to show
	if s := starts(dir); len(s["n1"]) != 1 {
		t.Fatalf("restarted n1 (standby, cold) started its service: %v", s)
	}
}

func TestServiceThatNeverGetsHealthyPassesTheGroupOn(t *testing.T) {
	dir := t.TempDir()
	c := start2(t, standbySpec(dir, svcScript(t, dir, "n1", ""), "cold"))
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" })
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range c.Hooks() {
		if h.Node == "n1" && h.Role == "active" {
			t.Fatalf("n1 ran its active hook although its service never became healthy: %+v", h)
		}
	}
	testkit.WaitForState(t, liveness, `the history to say why ("reason": "start")`, func() (bool, string) {
		out, err := c.Baton("w1", "history", "--json")
		return err == nil && strings.Contains(out, `"reason": "start"`), fmt.Sprintf("%v\n%s", err, out)
	})
	// n1 stopped its service when it gave the group up (cold).
	for _, pid := range starts(dir)["n1"] {
		waitGone(t, pid)
	}
	_ = e
}

func TestDemotionStopsTheColdService(t *testing.T) {
	dir := t.TempDir()
	c := start(t, standbySpec(dir, svcScript(t, dir, "", ""), "cold"))
	n1svc := starts(dir)["n1"][0]
	if out, err := c.Baton("w1", "switchover", "web", "--to", "n2"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" }); err != nil {
		t.Fatal(err)
	}
	waitGone(t, n1svc)
	if _, err := os.Stat(filepath.Join(dir, "ready-n1")); !os.IsNotExist(err) {
		t.Fatal("n1's service did not get SIGTERM (its trap did not run)")
	}
}

func TestCrashLoopingServiceMakesItsNodeUnhealthy(t *testing.T) {
	dir := t.TempDir()
	c := start2(t, standbySpec(dir, svcScript(t, dir, "", "n1"), "hot"))
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" }); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "n1 with a crash-looping service to be unhealthy, n2 owning web", func() (bool, string) {
		st, err := c.Status("n1")
		return err == nil && !st.Groups[0].Healthy && st.Groups[0].Owner == "n2", fmt.Sprintf("%+v %v", st.Groups, err)
	})
	if n := len(starts(dir)["n1"]); n < 2 {
		t.Fatalf("n1's service started %d times; want restarts before giving up", n)
	}
}

// start2 starts two members and a witness without asserting the initial
// owner (some tests make n1 unable to serve); logs are printed on failure.
func start2(t *testing.T, spec proctest.Spec) *proctest.Cluster {
	t.Helper()
	if spec.Members == nil {
		spec.Members, spec.Witness = []string{"n1", "n2"}, "w1"
	}
	return proctest.Start(t, bin, spec)
}
