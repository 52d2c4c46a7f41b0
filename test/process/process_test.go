// Package process runs real `baton agent` processes on 127.0.0.x (two members
// and a witness, see internal/proctest) and tests what needs whole agents:
// faults by signal (kill -9, SIGSTOP/SIGCONT, SIGTERM), an impostor without
// the cluster secret, the CLI (switchover, maintenance, history, drill), the
// metrics endpoint, health checks, supervised services, the exec driver, the
// DNS and proxy front doors, HAProxy in front of the role endpoints, the Go
// client, and `baton demo`. Windows in which nothing may happen are measured
// in the cluster's own failure_timeout (see quiet).
package process

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

var bin string

func TestMain(m *testing.M) {
	os.Exit(proctest.RunWithBinary(m, &bin))
}

// liveness is a generous bound for things that take well under a second:
// this is a correctness test on a shared machine, not a benchmark.
const liveness = 15 * time.Second

// timing is the cluster's effective timing (its profile with the overrides of
// its cluster section), read from the file proctest wrote for it.
func timing(t *testing.T, c *proctest.Cluster) core.Timing {
	t.Helper()
	cfg, err := config.Load(c.ConfigPath)
	if err != nil {
		t.Fatalf("reading the cluster's config %s: %v", c.ConfigPath, err)
	}
	return cfg.Timing()
}

// quiet is how long a test watches for something that must not happen (a
// failover, a reclaim, a start): five failure timeouts of the cluster's
// profile. Each of those would follow a lapsed lease: one failure_timeout
// (plus clock drift), a commit and the takeover, well within two; the rest is
// room for a loaded shared host. With the default profile that is 2 s.
func quiet(t *testing.T, c *proctest.Cluster) time.Duration {
	return 5 * timing(t, c).FailureTimeout
}

// start starts two members and a witness and waits for n1 (highest
// priority) to own the group at epoch 1.
func start(t *testing.T, spec proctest.Spec) *proctest.Cluster {
	t.Helper()
	c := start2(t, spec)
	owner, epoch, err := c.WaitOwner("w1", liveness)
	if err != nil {
		t.Fatal(err)
	}
	if owner != "n1" || epoch != 1 {
		t.Fatalf("initial owner %s@%d, want n1@1 (highest priority)", owner, epoch)
	}
	return c
}

func TestKill9OwnerFailsOver(t *testing.T) {
	c := start(t, proctest.Spec{})
	killed := time.Now()
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n2" && e.Role == "active"
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Epoch != 2 || e.PrevOwner != "n1" || e.Cluster != "proctest" || e.Group != "web" {
		t.Fatalf("n2 active hook env = %+v, want epoch 2, previous owner n1", e)
	}
	t.Logf("kill -9 → active hook on n2 after %v", e.At.Sub(killed).Round(time.Millisecond))
	// The killed node restarts, rejoins with its stored state and does not reclaim.
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n1" && e.Role == "standby" && e.Epoch >= 2
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet(t, c)) // long enough for a reclaim to show
	st, err := c.Status("n1")
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Groups[0]; g.Owner != "n2" || g.Epoch != 2 || g.Role != "standby" {
		t.Fatalf("after restart n1 sees %+v; want n2@2 and itself standby", g)
	}
}

func TestSIGSTOPOwner(t *testing.T) {
	c := start(t, proctest.Spec{})
	if err := c.Signal("n1", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n2" && e.Role == "active" && e.Epoch == 2
	}); err != nil {
		t.Fatal(err)
	}
	// Stay frozen one lease longer than the takeover needed, so that n1 wakes
	// well past the end of its own lease.
	time.Sleep(timing(t, c).FailureTimeout)
	resumed := time.Now()
	if err := c.Signal("n1", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n1" && e.Role == "standby" && e.At.After(resumed)
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet(t, c)) // long enough for the thawed owner to act, if it were going to
	for _, e := range c.Hooks() {
		if e.Node == "n1" && e.Role == "active" && e.At.After(resumed) {
			t.Fatalf("frozen owner acted after SIGCONT: %+v", e)
		}
	}
	st, err := c.Status("n1")
	if err != nil {
		t.Fatal(err)
	}
	if g := st.Groups[0]; g.Owner != "n2" || g.Epoch != 2 || g.Role != "standby" {
		t.Fatalf("n1 after SIGCONT sees %+v; want n2@2, itself standby", g)
	}
}

func TestSIGTERMHandsOffWithoutLeaseWait(t *testing.T) {
	// A long lease makes the difference between a handoff and an expiry
	// obvious: waiting for the lease would take more than 3 s.
	c := start(t, proctest.Spec{Extra: "  failure_timeout: 3s\n  heartbeat_interval: 100ms\n  lease_guard: 300ms\n"})
	sent := time.Now()
	if err := c.Signal("n1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n2" && e.Role == "active"
	})
	if err != nil {
		t.Fatal(err)
	}
	took := e.At.Sub(sent)
	t.Logf("SIGTERM → active hook on n2 after %v (lease 3s)", took.Round(time.Millisecond))
	if took >= 3*time.Second {
		t.Fatalf("handoff took %v: it waited for the 3 s lease instead of handing off", took)
	}
	if err := c.Wait("n1", liveness); err != nil {
		t.Fatalf("n1 after SIGTERM: %v", err)
	}
	t.Logf("SIGTERM → n1 exited after %v", time.Since(sent).Round(time.Millisecond))
	// An operator's restart comes right after the exit: every port (API,
	// heartbeats, quorum) must bind at once.
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "the restarted n1 to serve its API", func() (bool, string) {
		_, err := c.Status("n1")
		return err == nil, fmt.Sprint(err)
	})
	var sawStandby bool
	for _, h := range c.Hooks() {
		if h.Node == "n1" && h.Role == "standby" && h.Epoch == 1 && !h.At.After(e.At) {
			sawStandby = true
		}
	}
	if !sawStandby {
		t.Fatalf("n1 did not run its standby hook before n2 became active: %+v", c.Hooks())
	}
	testkit.WaitForState(t, liveness, "w1 to see n2 own web at epoch 2", func() (bool, string) {
		st, err := c.Status("w1")
		return err == nil && st.Groups[0].Owner == "n2" && st.Groups[0].Epoch == 2, fmt.Sprintf("w1 sees %+v (%v)", st.Groups, err)
	})
}

// TestSIGTERMWithNoSuccessorExitsAtOnce: an owner stopped while no other
// member can take its group has nobody to wait for; it used to sit out
// 2×hold + 2 s (here > 8 s) before exiting.
func TestSIGTERMWithNoSuccessorExitsAtOnce(t *testing.T) {
	c := start(t, proctest.Spec{Extra: "  failure_timeout: 3s\n  heartbeat_interval: 100ms\n  lease_guard: 300ms\n"})
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, liveness, "n1 to see n2 dead", func() (bool, string) {
		st, err := c.Status("n1")
		return err == nil && !slices.ContainsFunc(st.Nodes, func(n core.NodeStatus) bool { return n.Name == "n2" && n.Alive }),
			fmt.Sprintf("%+v (%v)", st.Nodes, err)
	})
	sent := time.Now()
	if err := c.Signal("n1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait("n1", liveness); err != nil {
		t.Fatalf("n1 after SIGTERM: %v", err)
	}
	took := time.Since(sent)
	t.Logf("SIGTERM with no successor → n1 exited after %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Fatalf("n1 took %v to exit with no possible successor; it waited for a handoff that could not happen", took)
	}
	if !slices.ContainsFunc(c.Hooks(), func(h proctest.HookEvent) bool { return h.Node == "n1" && h.Role == "standby" && h.Epoch == 1 }) {
		t.Fatalf("n1 exited without running its standby hook: %+v", c.Hooks())
	}
}

func TestWrongSecretCannotJoin(t *testing.T) {
	c := start(t, proctest.Spec{})
	// Replace n2 with an impostor that has everything but the secret. First
	// let w1 see the real n2 gone, so that whatever counts n2 alive later is
	// the impostor.
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	n2Alive := func(st core.Status) bool {
		return slices.ContainsFunc(st.Nodes, func(n core.NodeStatus) bool { return n.Name == "n2" && n.Alive })
	}
	testkit.WaitForState(t, liveness, "w1 to see the killed n2 gone", func() (bool, string) {
		st, err := c.Status("w1")
		return err == nil && !n2Alive(st), fmt.Sprintf("%+v (%v)", st.Nodes, err)
	})
	bad, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	impostorCfg := c.Dir + "/impostor.yaml"
	if err := os.WriteFile(impostorCfg, []byte(strings.ReplaceAll(string(bad), "proctest-secret-0123456789abcdefghij", "not-the-secret-9876543210zyxwvutsrq")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(c.Dir + "/n2"); err != nil { // a fresh node, not a former member
		t.Fatal(err)
	}
	if err := c.StartWith("n2", impostorCfg); err != nil {
		t.Fatal(err)
	}
	// Once w1 has refused the impostor's packets and quorum connections, it
	// has heard from it and must not count it alive.
	var st core.Status
	testkit.WaitForState(t, liveness, "w1 to reject the impostor's packets and quorum connections", func() (bool, string) {
		var err error
		st, err = c.Status("w1")
		return err == nil && st.RejectedPackets > 0 && st.RejectedQuorumConns > 0,
			fmt.Sprintf("rejected %d packets and %d quorum connections (%v)", st.RejectedPackets, st.RejectedQuorumConns, err)
	})
	if n2Alive(st) {
		t.Fatalf("w1 considers the impostor n2 alive: %+v", st.Nodes)
	}
	ist, err := c.Status("n2")
	if err != nil {
		t.Fatal(err)
	}
	if ist.Applied != 0 || ist.Groups[0].Owner != "" {
		t.Fatalf("impostor learned the replicated state: applied %d, owner %q", ist.Applied, ist.Groups[0].Owner)
	}
	// And it never gets the group, even when the real owner dies: watch past
	// the impostor's startup grace (had it been let in, it would take no group
	// before then) and a takeover's worth more.
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timing(t, c).StartupGrace + quiet(t, c))
	for _, e := range c.Hooks() {
		if e.Node == "n2" && e.Role == "active" {
			t.Fatalf("impostor became active: %+v", e)
		}
	}
}

func TestSwitchoverAndMaintenanceThroughTheCLI(t *testing.T) {
	c := start(t, proctest.Spec{})
	// Any node's API works: the request is forwarded to the quorum leader.
	out, err := c.Baton("n2", "switchover", "web", "--to", "n2")
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	if !strings.Contains(out, "n1 → n2 (epoch 2)") {
		t.Fatalf("switchover output %q", out)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n2" && e.Role == "active" && e.Epoch == 2
	}); err != nil {
		t.Fatal(err)
	}
	// Refusals carry the reason.
	for args, want := range map[string]string{
		"switchover web --to n9": `unknown node "n9"`,
		"switchover web --to w1": `node "w1" is not a member of group "web"`,
		"switchover web --to n2": `node "n2" already owns group "web"`,
		"switchover nope":        `unknown group "nope"`,
	} {
		out, err := c.Baton("w1", strings.Fields(args)...)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("baton %s: err %v, output %q; want %q", args, err, out, want)
		}
	}
	// Maintenance: a dead owner is not replaced until it is turned off.
	if out, err := c.Baton("w1", "maintenance", "on"); err != nil {
		t.Fatalf("maintenance on: %v\n%s", err, out)
	}
	testkit.WaitFor(t, liveness, "n1's status to show maintenance", func() bool {
		st, err := c.Status("n1")
		return err == nil && st.Maintenance && st.Groups[0].Maintenance
	})
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(quiet(t, c)) // long enough for a failover to show
	if st, _ := c.Status("w1"); st.Groups[0].Owner != "n2" {
		t.Fatalf("failover during maintenance: %+v", st.Groups[0])
	}
	if out, err := c.Baton("w1", "maintenance", "off"); err != nil {
		t.Fatalf("maintenance off: %v\n%s", err, out)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Node == "n1" && e.Role == "active" && e.Epoch == 3
	}); err != nil {
		t.Fatal(err)
	}
	// Without the token, mutations are refused.
	cmd := exec.Command(c.Bin, "maintenance", "on", "--api", c.APIs["w1"])
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "missing API token") {
		t.Fatalf("maintenance without token: err %v, output %q", err, out)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	c := start(t, proctest.Spec{})
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" }); err != nil {
		t.Fatal(err)
	}
	// w1's replica applies the failover, and later the new owner's takeover
	// time, after the fact: poll until every series shows it. (The initial
	// assignment's takeover time is recorded only if n1 reported it before it
	// was killed, so that count is 1 or 2.)
	want := []*regexp.Regexp{
		regexp.MustCompile(`baton_group_epoch\{cluster="proctest",group="web",node="w1"\} 2\n`),
		regexp.MustCompile(`baton_group_owner\{cluster="proctest",group="web",node="w1",owner="n2"\} 1\n`),
		regexp.MustCompile(`baton_failovers_total\{cluster="proctest",group="web",node="w1",reason="failure"\} 1\n`),
		regexp.MustCompile(`baton_failovers_total\{cluster="proctest",group="web",node="w1",reason="initial"\} 1\n`),
		regexp.MustCompile(`baton_failover_detection_seconds_count\{cluster="proctest",group="web",node="w1"\} 1\n`),
		regexp.MustCompile(`baton_failover_takeover_seconds_count\{cluster="proctest",group="web",node="w1"\} [12]\n`),
		regexp.MustCompile(`baton_peer_up\{cluster="proctest",node="w1",peer="n1"\} 0\n`),
		regexp.MustCompile(`baton_heartbeat_packets_received_total\{cluster="proctest",node="w1"\} [1-9]`),
	}
	testkit.WaitForState(t, liveness, "w1's /metrics to show the failover", func() (bool, string) {
		resp, err := http.Get("http://" + c.APIs["w1"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var missing []string
		for _, re := range want {
			if !re.Match(b) {
				missing = append(missing, re.String())
			}
		}
		return len(missing) == 0, "missing:\n" + strings.Join(missing, "\n")
	})
}

// TestFailingChecksHandOff: an exec check fails on the owner only (a file
// named after the node appears); the group moves to the healthy standby, and
// when every member fails, the owner keeps it and status says so.
func TestFailingChecksHandOff(t *testing.T) {
	dir := t.TempDir()
	c := start(t, proctest.Spec{GroupExtra: fmt.Sprintf(
		"    checks: [{type: exec, command: [\"/bin/sh\", \"-c\", \"test ! -e %s/down-$BATON_NODE\"], interval: 100ms, timeout: 100ms, fall: 2, rise: 2}]\n", dir)})
	if err := os.WriteFile(dir+"/down-n1", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool { return e.Node == "n2" && e.Role == "active" })
	if err != nil {
		t.Fatal(err)
	}
	if e.Epoch != 2 {
		t.Fatalf("n2 active at epoch %d, want 2", e.Epoch)
	}
	// w1's replica applies the change a little later: poll.
	testkit.WaitForState(t, liveness, "a check failover in w1's history", func() (bool, string) {
		out, err := c.Baton("w1", "history", "--json")
		return err == nil && strings.Contains(out, `"reason": "check"`), fmt.Sprintf("%v\n%s", err, out)
	})
	// Now n2 fails too: nobody is healthy, n2 keeps the group.
	if err := os.WriteFile(dir+"/down-n2", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	everyoneDown := func() (bool, string) {
		st, err := c.Status("n2")
		if err != nil {
			return false, err.Error()
		}
		g := st.Groups[0]
		return g.Owner == "n2" && !g.Healthy && strings.Contains(g.Note, "no member is healthy"), fmt.Sprintf("%+v", g)
	}
	testkit.WaitForState(t, liveness, "n2's status to say no member is healthy", everyoneDown)
	time.Sleep(quiet(t, c)) // long enough for a handoff to show
	if ok, g := everyoneDown(); !ok {
		t.Fatalf("with every member unhealthy, n2 should keep the group and say why: %s", g)
	}
}

// TestDemoRunsToCompletion runs the README's demo command non-interactively.
func TestDemoRunsToCompletion(t *testing.T) {
	out, err, timedOut := proctest.RunWithin(exec.Command(bin, "demo"), 90*time.Second)
	if timedOut {
		t.Fatalf("demo did not finish within 90 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"took over: its active hook ran", "the client saw an outage of", "DNS web.baton. now answers", "rejoins as standby", "==> done"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestDemoCtrlCLeavesNothing interrupts `baton demo` mid-run: every agent it
// started is gone and its temporary directory is removed.
func TestDemoCtrlCLeavesNothing(t *testing.T) {
	cmd := exec.Command(bin, "demo")
	// The demo's output goes to a file, which the test can read while the demo
	// writes to it.
	outPath := filepath.Join(t.TempDir(), "demo.out")
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	output := func() string { b, _ := os.ReadFile(outPath); return string(b) }
	cmd.Stdout, cmd.Stderr = outFile, outFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	dirRE := regexp.MustCompile(`/tmp/baton-demo-[0-9]+`)
	var dir string
	t.Cleanup(func() { cmd.Process.Kill() }) // if the test fails before Ctrl-C; a no-op after
	testkit.WaitForState(t, liveness, "the demo to start its agents", func() (bool, string) {
		// The agents' command lines name the demo's directory.
		if b, err := exec.Command("pgrep", "-af", "baton-demo-").Output(); err == nil {
			dir = dirRE.FindString(string(b))
		}
		return dir != "", "demo output:\n" + output()
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(liveness):
		cmd.Process.Kill()
		t.Fatalf("demo did not stop on Ctrl-C:\n%s", output())
	}
	// The agents get their signal as the demo exits; give them a moment to go.
	testkit.WaitForState(t, 5*time.Second, "the demo's agents to exit after Ctrl-C", func() (bool, string) {
		b, err := exec.Command("pgrep", "-af", dir).Output()
		return err != nil || len(b) == 0, "left behind:\n" + string(b)
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo directory %s left behind (%v)", dir, err)
	}
}
