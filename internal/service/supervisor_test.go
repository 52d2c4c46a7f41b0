package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/testkit"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// newTestSupervisor returns a supervisor for group "web" logging into the returned buffer; Close runs at cleanup.
func newTestSupervisor(t *testing.T, o SupervisorOptions) (*Supervisor, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if o.Group == "" {
		o.Group = "web"
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Join(t.TempDir(), "services")
	}
	o.Log = slog.New(slog.NewTextHandler(logs, nil))
	s, err := NewSupervisor(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, logs
}

// procState returns the state letter and process group of pid; ok is false when it does not exist.
func procState(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 3 {
		return 0, 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	return f[0][0], pgrp, true
}

// alive reports whether pid runs. Orphans are reparented to PID 1, which may never reap them here, so a zombie
// counts as dead.
func alive(pid int) bool {
	st, _, ok := procState(pid)
	return ok && st != 'Z'
}

// groupAlive reports whether any live process is in process group pgid.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pgrp, ok := procState(pid); ok && pgrp == pgid && st != 'Z' {
			return true
		}
	}
	return false
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestSupervisorRunsInItsOwnGroupAndLogsOutput(t *testing.T) {
	s, logs := newTestSupervisor(t, SupervisorOptions{
		Service: config.Service{Run: sh("echo hello; echo oops >&2; echo $BATON_ROLE; exec sleep 1000")},
		Env:     []string{"BATON_ROLE=active"},
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st != StateRunning {
		t.Fatalf("state = %s after Start, want running", st)
	}
	pid := s.Pid()
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid || pgid == syscall.Getpgrp() {
		t.Fatalf("pid %d has process group %d (%v), want its own (ours is %d)", pid, pgid, err, syscall.Getpgrp())
	}
	b, err := os.ReadFile(s.pidfile)
	var rec pidRecord
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	_, start, _ := procStat(pid)
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.Pgid != pid || rec.BootID != strings.TrimSpace(string(boot)) || rec.StartTicks != start || start == 0 {
		t.Fatalf("pidfile = %q, %v; want pgid %d, boot id %s, start %d", b, err, pid, boot, start)
	}
	if fi, err := os.Stat(filepath.Dir(s.pidfile)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v, %v; want 0700", fi.Mode(), err)
	}
	for _, want := range []string{
		`msg="service output" group=web stream=stdout line=hello`,
		`msg="service output" group=web stream=stderr line=oops`,
		`msg="service output" group=web stream=stdout line=active`,
	} {
		testkit.WaitFor(t, 10*time.Second, want, func() bool { return strings.Contains(logs.String(), want) })
	}
	if err := s.Start(); err != nil || s.Pid() != pid {
		t.Fatalf("second Start: %v, pid %d → %d; want a no-op", err, pid, s.Pid())
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.State() != StateStopped || s.Pid() != 0 || s.Failed() {
		t.Fatalf("after Stop: state %s pid %d failed %v", s.State(), s.Pid(), s.Failed())
	}
	if _, err := os.Stat(s.pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pidfile still there after Stop: %v", err)
	}
	if groupAlive(pid) {
		t.Fatal("process group still alive after Stop")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestSupervisorRestartsWithBackoffAndKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	starts, children := filepath.Join(dir, "starts"), filepath.Join(dir, "children")
	s, logs := newTestSupervisor(t, SupervisorOptions{
		Service: config.Service{Run: sh(fmt.Sprintf(
			"date +%%s%%N >> %s; sleep 1000 & echo $! >> %s; exit 3", starts, children))},
		MaxRestarts: 100,
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "4 starts", func() bool { return len(lines(t, starts)) >= 4 })
	if n := s.Restarts(); n < 3 {
		t.Fatalf("Restarts() = %d after 4 starts, want at least 3", n)
	}
	ts := lines(t, starts)
	for i, wantGap := range []time.Duration{minBackoff, 2 * minBackoff, 4 * minBackoff} {
		a, _ := strconv.ParseInt(ts[i], 10, 64)
		b, _ := strconv.ParseInt(ts[i+1], 10, 64)
		if gap := time.Duration(b - a); gap < wantGap {
			t.Errorf("start %d came %v after the previous one, want at least the %v backoff", i+1, gap, wantGap)
		}
	}
	// Each run's background child survives its shell; it must be killed before the restart.
	kids := lines(t, children)
	for _, k := range kids[:3] {
		pid, _ := strconv.Atoi(k)
		if alive(pid) {
			t.Errorf("child %d of an earlier run still alive", pid)
		}
	}
	if !strings.Contains(logs.String(), `msg="service exited" group=web status="exit status 3"`) {
		t.Errorf("no exit logged:\n%s", logs)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, k := range lines(t, children) {
		pid, _ := strconv.Atoi(k)
		// A SIGKILL is delivered asynchronously, and a loaded machine may take a moment.
		testkit.WaitFor(t, 5*time.Second, "child "+k+" to be gone after Stop", func() bool { return !alive(pid) })
	}
}

func TestSupervisorGivesUpOnCrashLoop(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	s, logs := newTestSupervisor(t, SupervisorOptions{
		Service:     config.Service{Run: sh("echo x >> " + count + "; exit 1")},
		MaxRestarts: 3,
	})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "Failed", s.Failed)
	// The supervising goroutine has returned: nothing can restart the service any more.
	s.mu.Lock()
	r := s.cur
	s.mu.Unlock()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervising goroutine still running after giving up")
	}
	if n := len(lines(t, count)); n != 4 {
		t.Fatalf("%d runs, want 4 (the first and 3 restarts)", n)
	}
	if s.State() != StateFailed || s.Restarts() != 3 || s.Pid() != 0 {
		t.Fatalf("state %s restarts %d pid %d; want failed, 3, 0", s.State(), s.Restarts(), s.Pid())
	}
	if _, err := os.Stat(s.pidfile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pidfile left behind: %v", err)
	}
	if !strings.Contains(logs.String(), "crash-looping") {
		t.Fatalf("giving up not logged:\n%s", logs)
	}

	// Start again: a fresh budget.
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "a run after the new Start", func() bool { return len(lines(t, count)) > 4 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.State() != StateStopped || s.Failed() {
		t.Fatalf("after Stop: state %s", s.State())
	}
}

func TestSupervisorStopKillsAfterStopTimeout(t *testing.T) {
	s, logs := newTestSupervisor(t, SupervisorOptions{Service: config.Service{
		Run:         sh("trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.05; done"),
		StopTimeout: config.Duration(300 * time.Millisecond),
	}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	testkit.WaitFor(t, 10*time.Second, "ready", func() bool { return strings.Contains(logs.String(), "line=ready") })
	began := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Stop took %v, want the 300ms stop timeout and then a kill", took)
	}
	for _, want := range []string{"line=\"got TERM\"", "did not stop after SIGTERM"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if groupAlive(pid) || s.State() != StateStopped {
		t.Fatalf("after Stop: group alive %v, state %s", groupAlive(pid), s.State())
	}
}

func TestSupervisorStopKillsTheWholeGroup(t *testing.T) {
	child := filepath.Join(t.TempDir(), "child")
	// The child ignores SIGTERM and outlives the shell; only the group kill gets it.
	s, _ := newTestSupervisor(t, SupervisorOptions{Service: config.Service{
		Run: sh("(trap '' TERM; exec sleep 1000) & echo $! > " + child + "; wait"),
	}})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := s.Pid()
	testkit.WaitFor(t, 10*time.Second, "the child's pid", func() bool { return len(lines(t, child)) == 1 })
	cpid, _ := strconv.Atoi(lines(t, child)[0])
	testkit.WaitFor(t, 10*time.Second, "the child to run sleep", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cpid))
		return string(b) == "sleep\n"
	})
	began := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("Stop took %v; the shell exits on SIGTERM at once", took)
	}
	testkit.WaitFor(t, 10*time.Second, "the child to die", func() bool { return !alive(cpid) })
	if groupAlive(pgid) {
		t.Fatal("process group still alive")
	}
}

func TestSupervisorCommands(t *testing.T) {
	dir := t.TempDir()
	marker, log := filepath.Join(dir, "marker"), filepath.Join(dir, "log")
	svc := config.Service{
		Start:  sh("touch " + marker + "; echo start >> " + log),
		Stop:   sh("rm -f " + marker + "; echo stop >> " + log),
		Status: sh("test -f " + marker),
	}
	s, _ := newTestSupervisor(t, SupervisorOptions{Service: svc})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil || s.State() != StateRunning || s.Pid() != 0 {
		t.Fatalf("after Start: marker %v, state %s, pid %d", err, s.State(), s.Pid())
	}

	// The service dies behind our back: Status fails and Start runs again.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "a restart", func() bool { return s.Restarts() == 1 && slices.Equal(lines(t, log), []string{"start", "start"}) })
	testkit.WaitFor(t, 10*time.Second, "running again", func() bool { return s.State() == StateRunning })
	if _, err := os.Stat(marker); err != nil {
		t.Fatal(err)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) || s.State() != StateStopped {
		t.Fatalf("after Stop: marker %v, state %s", err, s.State())
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := lines(t, log); !slices.Equal(got, []string{"start", "start", "stop"}) {
		t.Fatalf("commands run: %v; a second Stop must not run the stop command again", got)
	}
}

func TestSupervisorCommandsFailingStart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	s, _ := newTestSupervisor(t, SupervisorOptions{
		Service:     config.Service{Start: sh("echo start >> " + log + "; exit 7"), Stop: sh("echo stop >> " + log)},
		MaxRestarts: 1,
	})
	// Never started by us, but Stop still makes sure: something else may have started it.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	err := s.Start()
	if err == nil || !strings.Contains(err.Error(), "service start command: exit status 7") {
		t.Fatalf("Start = %v, want the start command's failure", err)
	}
	testkit.WaitFor(t, 10*time.Second, "Failed", s.Failed)
	if got := lines(t, log); !slices.Equal(got, []string{"stop", "start", "start"}) {
		t.Fatalf("commands run: %v", got)
	}
	if err := s.Stop(); err != nil || s.State() != StateStopped {
		t.Fatalf("Stop = %v, state %s", err, s.State())
	}
	if got := lines(t, log); !slices.Equal(got, []string{"stop", "start", "start", "stop"}) {
		t.Fatalf("commands run: %v", got)
	}
}

func TestSupervisorPromoteDemote(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	s, _ := newTestSupervisor(t, SupervisorOptions{
		Service: config.Service{Run: sh("exec sleep 1000"), Promote: sh("echo $BATON_ROLE > " + out), Demote: sh("exit 2")},
		Env:     []string{"BATON_ROLE=active"},
	})
	if err := s.Promote(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := lines(t, out); !slices.Equal(got, []string{"active"}) {
		t.Fatalf("promote wrote %v", got)
	}
	if err := s.Demote(context.Background()); err == nil || !strings.Contains(err.Error(), "service demote command: exit status 2") {
		t.Fatalf("Demote = %v, want the command's failure", err)
	}
	s2, _ := newTestSupervisor(t, SupervisorOptions{Service: config.Service{Run: sh("exec sleep 1000")}})
	if err := s2.Promote(context.Background()); err != nil {
		t.Fatalf("Promote without a command = %v", err)
	}
	if err := s2.Demote(context.Background()); err != nil {
		t.Fatalf("Demote without a command = %v", err)
	}
}

// startGroup starts argv as the leader of a new process group (as the supervisor does) and returns it with a
// channel closed once it has been reaped; the group is killed at the end of the test.
func startGroup(t *testing.T, argv ...string) (*exec.Cmd, <-chan error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, waited
}

func writeRecord(t *testing.T, path string, rec pidRecord) {
	t.Helper()
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupLeftovers(t *testing.T) {
	dir := t.TempDir()
	// A service left by a dead agent: its own process group, with a child of its own.
	cmd, waited := startGroup(t, "/bin/sh", "-c", "sleep 1000 & exec sleep 1000")
	pgid := cmd.Process.Pid
	if err := writePidfile(filepath.Join(dir, "web.pid"), pgid); err != nil {
		t.Fatal(err)
	}
	// One whose leader is gone (and reaped) while a child of it lives on in its group.
	orphanLeader, orphanWaited := startGroup(t, "/bin/sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo started")
	opgid := orphanLeader.Process.Pid
	if err := writePidfile(filepath.Join(dir, "api.pid"), opgid); err != nil {
		t.Fatal(err)
	}
	<-orphanWaited
	if !groupAlive(opgid) {
		t.Fatal("the orphan's group is gone before the test")
	}
	// A group that is gone, and a pidfile that must never turn into kill(-1).
	gone := exec.Command("/bin/true")
	gone.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := writePidfile(filepath.Join(dir, "db.pid"), gone.Process.Pid); err == nil {
		t.Fatal("writePidfile recorded a process that is gone (no start time to read)")
	}
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	writeRecord(t, filepath.Join(dir, "db.pid"), pidRecord{Pgid: gone.Process.Pid, BootID: boot, StartTicks: 1})
	if err := os.WriteFile(filepath.Join(dir, "bad.pid"), []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	killed, err := CleanupLeftovers(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(killed)
	want := []int{pgid, opgid}
	slices.Sort(want)
	if !slices.Equal(killed, want) {
		t.Fatalf("killed %v, want %v", killed, want)
	}
	select {
	case waitErr := <-waited:
		if waitErr == nil || !strings.Contains(waitErr.Error(), "killed") {
			t.Fatalf("leftover ended with %v, want killed", waitErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("leftover still running")
	}
	testkit.WaitFor(t, 10*time.Second, "the leftovers' children to die", func() bool { return !groupAlive(pgid) && !groupAlive(opgid) })
	if left, _ := filepath.Glob(filepath.Join(dir, "*.pid")); len(left) != 0 {
		t.Fatalf("pidfiles left: %v", left)
	}

	if killed, err := CleanupLeftovers(filepath.Join(dir, "nonexistent"), nil); err != nil || len(killed) != 0 {
		t.Fatalf("missing dir: %v, %v", killed, err)
	}
}

// TestCleanupLeftoversSparesUnrelatedGroups: a stale pidfile never makes the
// agent signal a process group it did not start: one recorded in an earlier
// boot, one whose number now belongs to a process that started at another
// time (pid reuse), one in the format of an older baton (no boot id or start
// time) are removed, and the live groups they name are left alone.
func TestCleanupLeftoversSparesUnrelatedGroups(t *testing.T) {
	dir := t.TempDir()
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	unrelated, waited := startGroup(t, "/bin/sleep", "1000")
	pg := unrelated.Process.Pid
	_, start, err := procStat(pg)
	if err != nil {
		t.Fatal(err)
	}
	writeRecord(t, filepath.Join(dir, "rebooted.pid"), pidRecord{Pgid: pg, BootID: "00000000-0000-4000-8000-000000000000", StartTicks: start})
	writeRecord(t, filepath.Join(dir, "reused.pid"), pidRecord{Pgid: pg, BootID: boot, StartTicks: start - 1})
	if err := os.WriteFile(filepath.Join(dir, "legacy.pid"), []byte(strconv.Itoa(pg)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	killed, err := CleanupLeftovers(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || len(killed) != 0 {
		t.Fatalf("killed %v (%v); want none", killed, err)
	}
	select {
	case err := <-waited:
		t.Fatalf("the unrelated process group was signalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if !groupAlive(pg) {
		t.Fatal("the unrelated process group is gone")
	}
	for _, want := range []string{"recorded in an earlier boot", "the number was reused", "from an older baton"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.pid")); len(left) != 0 {
		t.Fatalf("stale pidfiles left: %v", left)
	}
}

func TestSupervisorCloseLeavesNoGoroutines(t *testing.T) {
	// Close while running, while waiting out a backoff, in commands mode, and after giving up.
	for _, tc := range []struct {
		name string
		o    SupervisorOptions
		wait func(*Supervisor) bool
	}{
		{"running", SupervisorOptions{Service: config.Service{Run: sh("echo hi; exec sleep 1000")}},
			func(s *Supervisor) bool { return s.State() == StateRunning }},
		{"backoff", SupervisorOptions{Service: config.Service{Run: sh("exit 1")}, MaxRestarts: 100},
			func(s *Supervisor) bool { return s.Restarts() >= 2 }},
		{"commands", SupervisorOptions{Service: config.Service{Start: sh("true"), Status: sh("true")}},
			func(s *Supervisor) bool { return s.State() == StateRunning }},
		{"failed", SupervisorOptions{Service: config.Service{Run: sh("exit 1")}, MaxRestarts: 1},
			(*Supervisor).Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Group, tc.o.StateDir, tc.o.Log = "web", t.TempDir(), slog.New(slog.DiscardHandler)
			s, err := NewSupervisor(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, 10*time.Second, tc.name, func() bool { return tc.wait(s) })
			s.Close()
			s.Close()
			if err := s.Start(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Start after Close = %v", err)
			}
			goleak.VerifyNone(t)
		})
	}
}

func TestSupervisorConcurrentUse(t *testing.T) {
	s, _ := newTestSupervisor(t, SupervisorOptions{Service: config.Service{
		Run: sh("echo up; exec sleep 1000"), StopTimeout: config.Duration(time.Second),
	}})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				if (i+j)%2 == 0 {
					_ = s.Start()
				} else {
					_ = s.Stop()
				}
				_, _, _, _ = s.State(), s.Pid(), s.Restarts(), s.Failed()
			}
		})
	}
	wg.Wait()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.State() != StateStopped || s.Pid() != 0 {
		t.Fatalf("state %s pid %d after the final Stop", s.State(), s.Pid())
	}
}

func TestNewSupervisorErrors(t *testing.T) {
	run := config.Service{Run: []string{"/bin/true"}}
	for _, tc := range []struct {
		name string
		o    SupervisorOptions
		want string
	}{
		{"no group", SupervisorOptions{Service: run, StateDir: "x"}, `supervisor: group "" cannot name a pidfile`},
		{"slash", SupervisorOptions{Group: "a/b", Service: run, StateDir: "x"}, `supervisor: group "a/b" cannot name a pidfile`},
		{"both", SupervisorOptions{Group: "web", Service: config.Service{Run: []string{"a"}, Start: []string{"b"}}},
			"service.start: set either run (a process Baton supervises) or start (a command that starts it), not both"},
		{"neither", SupervisorOptions{Group: "web"},
			"service: nothing to run; set run (a process Baton supervises) or start (a command that starts it)"},
		{"empty run", SupervisorOptions{Group: "web", Service: config.Service{Run: []string{""}}, StateDir: "x"},
			"service.run[0]: empty program name"},
		{"no state dir", SupervisorOptions{Group: "web", Service: run},
			"supervisor: StateDir is required for service.run (it holds the pidfile)"},
		{"negative budget", SupervisorOptions{Group: "web", Service: run, StateDir: "x", MaxRestarts: -1},
			"supervisor: MaxRestarts -1 must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSupervisor(tc.o)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
	// Commands mode needs no state dir; defaults apply.
	s, err := NewSupervisor(SupervisorOptions{Group: "web", Service: config.Service{Start: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s.startTimeout != 30*time.Second || s.stopTimeout != 10*time.Second || s.o.MaxRestarts != 5 || s.o.RestartWindow != time.Minute {
		t.Fatalf("defaults: %v %v %d %v", s.startTimeout, s.stopTimeout, s.o.MaxRestarts, s.o.RestartWindow)
	}
}

func TestRestartPolicy(t *testing.T) {
	type crash struct {
		at, uptime time.Duration
		wait       time.Duration // 0: gives up
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		max     int
		window  time.Duration
		crashes []crash
		count   int // restarts in the window after the last crash
	}{
		{"backoff doubles up to 5s", 100, time.Hour, []crash{
			{0, 0, 100 * ms}, {1 * time.Second, 0, 200 * ms}, {2 * time.Second, 0, 400 * ms}, {3 * time.Second, 0, 800 * ms},
			{4 * time.Second, 0, 1600 * ms}, {5 * time.Second, 0, 3200 * ms}, {6 * time.Second, 0, 5 * time.Second},
			{7 * time.Second, 0, 5 * time.Second},
		}, 8},
		{"10s of uptime resets the backoff", 100, time.Hour, []crash{
			{0, 0, 100 * ms}, {1 * time.Second, 0, 200 * ms}, {30 * time.Second, 10 * time.Second, 100 * ms},
			{31 * time.Second, 9 * time.Second, 200 * ms},
		}, 4},
		{"more than max in the window gives up", 3, time.Minute, []crash{
			{0, 0, 100 * ms}, {1 * time.Second, 0, 200 * ms}, {2 * time.Second, 0, 400 * ms}, {3 * time.Second, 0, 0},
		}, 3},
		{"old restarts leave the window", 2, time.Minute, []crash{
			{0, 0, 100 * ms}, {30 * time.Second, 0, 200 * ms}, {60 * time.Second, 0, 400 * ms}, {61 * time.Second, 0, 0},
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := restartPolicy{max: tc.max, window: tc.window}
			t0 := time.Unix(1_000_000, 0)
			for i, c := range tc.crashes {
				wait, giveUp := p.crashed(t0.Add(c.at), c.uptime)
				if giveUp != (c.wait == 0) || wait != c.wait {
					t.Fatalf("crash %d at %v: wait %v give up %v; want wait %v", i, c.at, wait, giveUp, c.wait)
				}
			}
			if n := p.count(t0.Add(tc.crashes[len(tc.crashes)-1].at)); n != tc.count {
				t.Fatalf("count = %d, want %d", n, tc.count)
			}
		})
	}
}
