package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/baton-ha/baton/internal/config"
)

// State is where a group's service stands, as the supervisor sees it.
type State string

// The states of a supervised service.
const (
	StateStopped  State = "stopped"
	StateStarting State = "starting" // launching, or waiting out the backoff before a restart
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateFailed   State = "failed" // gave up: crash loop, or a stop command failed
)

const (
	defaultStartTimeout  = 30 * time.Second
	defaultStopTimeout   = 10 * time.Second
	defaultMaxRestarts   = 5
	defaultRestartWindow = 60 * time.Second

	// Restart backoff doubles from minBackoff up to maxBackoff, so a service that dies at once does not spin,
	// and starts over after a run that lasted backoffReset, so one crash a day is restarted quickly.
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	backoffReset = 10 * time.Second

	// statusEvery is how often a service managed elsewhere is asked whether it still runs.
	statusEvery = time.Second
	// outputGrace bounds the wait for the output pipes to close after the process group is gone: a grandchild
	// that escaped the group (setsid) may hold them open forever.
	outputGrace = time.Second
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("supervisor closed")

// SupervisorOptions configure a Supervisor.
type SupervisorOptions struct {
	Group string
	// Service is either Run (a foreground process the supervisor forks and watches) or Start/Stop/Status
	// (commands for a service something else runs, e.g. systemctl).
	Service config.Service
	// Env is appended to the agent's environment for the process and every command (the BATON_* variables).
	Env []string
	// StateDir holds <group>.pid (the process group of a Run service) so that CleanupLeftovers can kill what a
	// crashed agent left behind. Created 0700. Required for Run.
	StateDir string
	Log      *slog.Logger
	// More than MaxRestarts restarts within RestartWindow and the supervisor gives up (StateFailed) until Start
	// is called again. Defaults: 5 in 60s.
	MaxRestarts   int
	RestartWindow time.Duration
}

// Supervisor keeps a group's service in the wanted state: Start wants it running (and restarts it when it
// dies), Stop wants it stopped. All methods are safe for concurrent use; Start and Stop are serialized, and
// each returns once its transition is done.
type Supervisor struct {
	o            SupervisorOptions
	log          *slog.Logger
	startTimeout time.Duration
	stopTimeout  time.Duration
	pidfile      string // Run mode only

	op sync.Mutex // serializes Start, Stop and Close

	mu     sync.Mutex
	state  State
	pid    int
	policy restartPolicy
	cur    *run // the supervising goroutine while Start is wanted (or it gave up); nil after Stop
	// stopped: commands mode, our Stop command succeeded and nothing was started since. Until then Stop runs
	// the Stop command even if this supervisor never started the service: something else may have.
	stopped bool
	closed  bool

	wg sync.WaitGroup
}

// run is one Start..Stop span of the supervising goroutine.
type run struct {
	ctx    context.Context
	cancel context.CancelFunc
	// launched is closed once the first launch is done, with its outcome in firstErr.
	launched chan struct{}
	firstErr error
	done     chan struct{} // closed when the goroutine has returned (process gone, pipes closed)
}

// launchedWith records the first launch's outcome; later calls do nothing.
func (r *run) launchedWith(err error) {
	select {
	case <-r.launched:
	default:
		r.firstErr = err
		close(r.launched)
	}
}

// wait returns the first launch's outcome once there is one, or an error if the run ended before it.
func (r *run) wait() error {
	select {
	case <-r.launched:
		return r.firstErr
	case <-r.done:
		select {
		case <-r.launched:
			return r.firstErr
		default:
			return errors.New("service stopped before it started")
		}
	}
}

// NewSupervisor checks o, applies defaults and creates StateDir. It starts nothing.
func NewSupervisor(o SupervisorOptions) (*Supervisor, error) {
	if o.Group == "" || o.Group == "." || o.Group == ".." || strings.ContainsAny(o.Group, "/\x00") {
		return nil, fmt.Errorf("supervisor: group %q cannot name a pidfile", o.Group)
	}
	svc := o.Service
	switch {
	case len(svc.Run) > 0 && len(svc.Start) > 0:
		return nil, errors.New("service.start: set either run (a process Baton supervises) or start (a command that starts it), not both")
	case len(svc.Run) == 0 && len(svc.Start) == 0:
		return nil, errors.New("service: nothing to run; set run (a process Baton supervises) or start (a command that starts it)")
	case len(svc.Run) > 0 && svc.Run[0] == "":
		return nil, errors.New("service.run[0]: empty program name")
	case len(svc.Start) > 0 && svc.Start[0] == "":
		return nil, errors.New("service.start[0]: empty program name")
	case o.MaxRestarts < 0:
		return nil, fmt.Errorf("supervisor: MaxRestarts %d must not be negative", o.MaxRestarts)
	case o.RestartWindow < 0:
		return nil, fmt.Errorf("supervisor: RestartWindow %v must not be negative", o.RestartWindow)
	}
	if o.MaxRestarts == 0 {
		o.MaxRestarts = defaultMaxRestarts
	}
	if o.RestartWindow == 0 {
		o.RestartWindow = defaultRestartWindow
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Supervisor{
		o:            o,
		log:          o.Log.With("group", o.Group),
		startTimeout: orDefault(svc.StartTimeout.D(), defaultStartTimeout),
		stopTimeout:  orDefault(svc.StopTimeout.D(), defaultStopTimeout),
		state:        StateStopped,
		policy:       restartPolicy{max: o.MaxRestarts, window: o.RestartWindow},
	}
	if len(svc.Run) > 0 {
		if o.StateDir == "" {
			return nil, errors.New("supervisor: StateDir is required for service.run (it holds the pidfile)")
		}
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("supervisor: state dir: %w", err)
		}
		s.pidfile = filepath.Join(o.StateDir, o.Group+".pid")
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (s *Supervisor) commandsMode() bool { return len(s.o.Service.Run) == 0 }

// Start wants the service running and returns once the first launch is done: the process forked (Run) or the
// Start command finished (commands). If that launch fails its error is returned, and the supervisor keeps
// retrying with backoff until Stop or until it gives up (Failed). Start on a running service only waits for
// that first launch; Start after the supervisor gave up starts over with a fresh crash-loop budget.
func (s *Supervisor) Start() error {
	s.op.Lock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.op.Unlock()
		return ErrClosed
	}
	if r := s.cur; r != nil {
		select {
		case <-r.done: // gave up; start over
		default:
			s.mu.Unlock()
			s.op.Unlock()
			return r.wait()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{ctx: ctx, cancel: cancel, launched: make(chan struct{}), done: make(chan struct{})}
	s.cur = r
	s.state, s.pid, s.stopped = StateStarting, 0, false
	s.policy.reset()
	s.wg.Add(1)
	s.mu.Unlock()
	go s.supervise(r)
	s.op.Unlock() // a Stop may now cancel the launch
	return r.wait()
}

// Stop wants the service stopped and returns once it is. Run: SIGTERM to the process group, SIGKILL to the
// group once the main process has exited or after StopTimeout, then the pidfile is removed. Commands: the
// Stop command runs (with StopTimeout) unless this supervisor already stopped it. Stopping a stopped service
// does nothing.
func (s *Supervisor) Stop() error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	r := s.cur
	s.cur = nil
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
	if !s.commandsMode() {
		s.mu.Lock()
		was := s.state
		s.state, s.pid = StateStopped, 0
		s.mu.Unlock()
		if was != StateStopped {
			s.log.Info("service stopped")
		}
		return nil
	}

	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.state = StateStopping
	s.mu.Unlock()
	var err error
	if len(s.o.Service.Stop) > 0 {
		res := RunCommand(context.Background(), s.o.Service.Stop, s.o.Env, s.stopTimeout, s.log.With("command", "stop"))
		if res.Err != nil {
			err = fmt.Errorf("service stop command: %w", res.Err)
		}
	}
	s.mu.Lock()
	if err != nil {
		s.state = StateFailed // unknown; the next Stop tries again
	} else {
		s.state, s.stopped = StateStopped, true
	}
	s.mu.Unlock()
	if err == nil {
		s.log.Info("service stopped")
	}
	return err
}

// Close stops the service and waits for the supervisor's goroutines. Start fails afterwards.
func (s *Supervisor) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if err := s.Stop(); err != nil {
		s.log.Error("service stop at close failed", "err", err)
	}
	s.wg.Wait()
}

// State returns the current state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Failed reports that the supervisor gave up on the service (see StateFailed).
func (s *Supervisor) Failed() bool { return s.State() == StateFailed }

// Restarts returns the number of restarts within the current RestartWindow.
func (s *Supervisor) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy.count(time.Now())
}

// Pid returns the main process's pid (also its process group), or 0 when none runs or in commands mode.
func (s *Supervisor) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Promote runs Service.Promote (timeout StartTimeout); nil when unset.
func (s *Supervisor) Promote(ctx context.Context) error {
	return s.oneShot(ctx, "promote", s.o.Service.Promote, s.startTimeout)
}

// Demote runs Service.Demote (timeout StopTimeout); nil when unset.
func (s *Supervisor) Demote(ctx context.Context) error {
	return s.oneShot(ctx, "demote", s.o.Service.Demote, s.stopTimeout)
}

func (s *Supervisor) oneShot(ctx context.Context, name string, argv []string, timeout time.Duration) error {
	if len(argv) == 0 {
		return nil
	}
	if res := RunCommand(ctx, argv, s.o.Env, timeout, s.log.With("command", name)); res.Err != nil {
		return fmt.Errorf("service %s command: %w", name, res.Err)
	}
	return nil
}

func (s *Supervisor) set(st State, pid int) {
	s.mu.Lock()
	s.state, s.pid = st, pid
	s.mu.Unlock()
}

// crashed applies the restart policy to an unexpected end of the service; giveUp moves to StateFailed.
func (s *Supervisor) crashed(uptime time.Duration) (wait time.Duration, giveUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait, giveUp = s.policy.crashed(time.Now(), uptime)
	if giveUp {
		s.state, s.pid = StateFailed, 0
	} else {
		s.state, s.pid = StateStarting, 0
	}
	return wait, giveUp
}

func (s *Supervisor) supervise(r *run) {
	defer s.wg.Done()
	defer close(r.done)
	if s.commandsMode() {
		s.superviseCommands(r)
	} else {
		s.superviseProcess(r)
	}
}

// superviseProcess forks Service.Run and restarts it until r is cancelled or the crash-loop budget is spent.
func (s *Supervisor) superviseProcess(r *run) {
	// Pdeathsig fires when the thread that forked the child exits, not the process: Go ends a thread when a
	// goroutine exits while locked to it (netns code does that on purpose). Holding our own thread for as long
	// as the child may live keeps the child from being killed by an unrelated goroutine's exit.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		s.set(StateStarting, 0)
		p, err := s.launch()
		var uptime time.Duration
		if err != nil {
			r.launchedWith(err)
			s.log.Error("service failed to start", "err", err)
		} else {
			began := time.Now()
			s.set(StateRunning, p.pgid)
			s.log.Info("service started", "pid", p.pgid)
			r.launchedWith(nil)
			select {
			case <-p.exited:
				uptime = time.Since(began)
				status := s.reap(p)
				s.log.Warn("service exited", "status", status, "uptime", uptime.Round(time.Millisecond))
			case <-r.ctx.Done():
				s.set(StateStopping, p.pgid)
				s.terminate(p)
				s.reap(p)
				return
			}
		}
		if r.ctx.Err() != nil {
			return
		}
		if !s.backoff(r, uptime) {
			return
		}
	}
}

// superviseCommands runs Service.Start, then polls Service.Status; a failing Start or Status is a crash.
func (s *Supervisor) superviseCommands(r *run) {
	for {
		s.set(StateStarting, 0)
		res := RunCommand(r.ctx, s.o.Service.Start, s.o.Env, s.startTimeout, s.log.With("command", "start"))
		if res.Err == nil && r.ctx.Err() == nil {
			s.set(StateRunning, 0)
		}
		r.launchedWith(wrap("service start command", res.Err))
		if r.ctx.Err() != nil {
			return
		}
		var uptime time.Duration
		if res.Err != nil {
			s.log.Error("service start command failed", "err", res.Err)
		} else {
			began := time.Now()
			s.log.Info("service started")
			err := s.watchStatus(r.ctx)
			if r.ctx.Err() != nil {
				return
			}
			uptime = time.Since(began)
			s.log.Warn("service status failed", "err", err, "uptime", uptime.Round(time.Millisecond))
		}
		if !s.backoff(r, uptime) {
			return
		}
	}
}

// backoff records a crash and waits before the restart; false means stop supervising (gave up or cancelled).
func (s *Supervisor) backoff(r *run, uptime time.Duration) bool {
	wait, giveUp := s.crashed(uptime)
	if giveUp {
		s.log.Error("service is crash-looping; giving up until it is started again",
			"max_restarts", s.o.MaxRestarts, "window", s.o.RestartWindow)
		return false
	}
	s.log.Info("restarting service", "in", wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// watchStatus returns the first failure of Service.Status, polled every statusEvery, or ctx's error. Without a
// Status command the service is taken to run until stopped.
func (s *Supervisor) watchStatus(ctx context.Context) error {
	if len(s.o.Service.Status) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		// A healthy status says the same thing every second; keep its output only for the failure report.
		out := &lineTail{max: 20}
		res := RunCommand(ctx, s.o.Service.Status, s.o.Env, s.startTimeout, slog.New(out))
		if res.Err != nil {
			if ctx.Err() == nil {
				for _, l := range out.lines() {
					s.log.Info("service output", "command", "status", "line", l)
				}
			}
			return fmt.Errorf("status command: %w", res.Err)
		}
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// proc is one launch of Service.Run.
type proc struct {
	cmd     *exec.Cmd
	pgid    int
	exited  chan struct{} // closed when the main process has exited; it stays a zombie until reap
	pipes   []*os.File    // read ends of stdout and stderr
	readers sync.WaitGroup
}

// launch forks Service.Run as the leader of a new process group and records the group in the pidfile.
func (s *Supervisor) launch() (*proc, error) {
	argv := s.o.Service.Run
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	// Our own pipes (not io.Writers, for which os/exec copies in goroutines that Wait joins): Wait then returns
	// when the process exits, and a pipe held open by an escaped grandchild can be closed under the reader.
	var writers []*os.File
	closeAll := func() {
		for _, f := range append(writers, p.pipes...) {
			f.Close()
		}
	}
	for range 2 {
		pr, pw, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("output pipe: %w", err)
		}
		p.pipes, writers = append(p.pipes, pr), append(writers, pw)
	}
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	err := cmd.Start()
	for _, w := range writers {
		w.Close()
	}
	if err != nil {
		for _, pr := range p.pipes {
			pr.Close()
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p.pgid = cmd.Process.Pid
	for i, stream := range []string{"stdout", "stderr"} {
		p.readers.Add(1)
		go logLines(p.pipes[i], s.log.With("stream", stream), &p.readers)
	}
	go func() {
		// WNOWAIT: learn of the exit without reaping, so the pid (and with it the process group id) cannot be
		// reused before reap has sent its last signal to the group.
		var si unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, p.pgid, &si, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				break
			}
		}
		close(p.exited)
	}()
	if err := writePidfile(s.pidfile, p.pgid); err != nil {
		// The service runs; only the cleanup after an agent crash is lost. Not worth an outage.
		s.log.Error("cannot write pidfile", "err", err)
	}
	return p, nil
}

// terminate asks the group to stop and kills it after stopTimeout. The main process has exited when it returns.
func (s *Supervisor) terminate(p *proc) {
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	t := time.NewTimer(s.stopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		s.log.Warn("service did not stop after SIGTERM; killing it", "stop_timeout", s.stopTimeout)
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		<-p.exited
	}
}

// reap kills what is left of the group once the main process has exited (leftovers would hold ports and the
// output pipes across a restart), reaps the main process, drains its output and removes the pidfile. It
// returns how the main process ended.
func (s *Supervisor) reap(p *proc) string {
	<-p.exited
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	_ = p.cmd.Wait() // the exit status is in ProcessState
	var once sync.Once
	closePipes := func() {
		once.Do(func() {
			for _, pr := range p.pipes {
				pr.Close()
			}
		})
	}
	t := time.AfterFunc(outputGrace, closePipes)
	p.readers.Wait()
	t.Stop()
	closePipes()
	if err := os.Remove(s.pidfile); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("cannot remove pidfile", "err", err)
	}
	return p.cmd.ProcessState.String()
}

// logLines logs each line read from r at info; over-long lines are logged in pieces.
func logLines(r *os.File, log *slog.Logger, wg *sync.WaitGroup) {
	defer wg.Done()
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			log.Info("service output", "line", strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// pidRecord is a pidfile's content: the service's process group and what tells that group from an unrelated one
// that later got the same number (after a reboot, or once the number was free again): the boot it was started in
// and its leader's start time.
type pidRecord struct {
	Pgid int `json:"pgid"`
	// BootID is /proc/sys/kernel/random/boot_id when the group was started: a pidfile from an earlier boot names
	// no process of ours.
	BootID string `json:"boot_id"`
	// StartTicks is the leader's start time (field 22 of /proc/PID/stat: clock ticks since boot).
	StartTicks uint64 `json:"start_ticks"`
}

// procRoot is where the proc filesystem is mounted.
const procRoot = "/proc"

func bootID() (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/random/boot_id"))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("empty boot_id")
	}
	return id, nil
}

// procStat returns the process group and the start time (clock ticks since boot) of process pid.
func procStat(pid int) (pgrp int, startTicks uint64, err error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	return parseStat(pid, b)
}

// parseStat reads the process group and start time out of the content of /proc/PID/stat.
func parseStat(pid int, b []byte) (pgrp int, startTicks uint64, err error) {
	// "pid (comm) state ppid pgrp ... starttime ...": comm may hold spaces and parentheses, so fields are counted
	// after the last ')'. After it come field 3 (state) onwards.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 20", pid, len(f))
	}
	if pgrp, err = strconv.Atoi(f[2]); err != nil { // field 5
		return 0, 0, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	if startTicks, err = strconv.ParseUint(f[19], 10, 64); err != nil { // field 22
		return 0, 0, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	return pgrp, startTicks, nil
}

func writePidfile(path string, pgid int) error {
	rec := pidRecord{Pgid: pgid}
	var err error
	if rec.BootID, err = bootID(); err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	if _, rec.StartTicks, err = procStat(pgid); err != nil {
		return fmt.Errorf("start time of %d: %w", pgid, err)
	}
	b, _ := json.Marshal(rec)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// leftover decides whether rec still names the process group an earlier agent started, and why not if not. The
// group is ours when this is the boot it was started in and either its leader is alive with the recorded start
// time, or the leader is gone but members of the group remain: Linux does not hand out a number that is still some
// group's id, so the leader's number cannot have been reused while its group lives on.
func leftover(rec pidRecord) (ours bool, why string) {
	boot, err := bootID()
	if err != nil {
		return false, "cannot read this boot's id: " + err.Error()
	}
	if rec.BootID != boot {
		return false, "recorded in an earlier boot"
	}
	if syscall.Kill(-rec.Pgid, 0) != nil {
		return false, "the process group is gone"
	}
	pgrp, start, err := procStat(rec.Pgid)
	switch {
	case err != nil:
		return true, "" // the leader is gone; its group lives on
	case pgrp == rec.Pgid && start == rec.StartTicks:
		return true, ""
	default:
		return false, fmt.Sprintf("process %d started at tick %d (recorded %d) in group %d: the number was reused", rec.Pgid, start, rec.StartTicks, pgrp)
	}
}

// CleanupLeftovers runs at agent start, before any supervisor: for every <group>.pid in stateDir whose process
// group is still the one an earlier agent started (same boot, same leader start time; a previous agent died, and
// Pdeathsig killed its direct children but not their children), it kills the group with SIGKILL. A pidfile from
// an earlier boot, or whose number now belongs to some other process, is only removed: the agent never signals
// a group it cannot prove it started. Every pidfile is removed. It returns the process groups it killed.
func CleanupLeftovers(stateDir string, log *slog.Logger) ([]int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files, err := filepath.Glob(filepath.Join(stateDir, "*.pid"))
	if err != nil {
		return nil, err
	}
	var killed []int
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		group := strings.TrimSuffix(filepath.Base(f), ".pid")
		var rec pidRecord
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		switch err := dec.Decode(&rec); {
		case err != nil || rec.Pgid <= 1 || rec.BootID == "": // kill(-1) would signal every process we may signal
			log.Warn("ignoring a pidfile without a process group, boot id and start time (malformed, or from an older baton); kill the service's leftovers by hand if there are any",
				"file", f, "content", strings.TrimSpace(string(b)))
		default:
			ours, why := leftover(rec)
			if !ours {
				log.Info("stale pidfile: not signalling its process group", "group", group, "pgid", rec.Pgid, "why", why)
				break
			}
			if err := syscall.Kill(-rec.Pgid, syscall.SIGKILL); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					break // it ended meanwhile
				}
				errs = append(errs, fmt.Errorf("kill leftover process group %d of %s: %w", rec.Pgid, group, err))
				continue // keep the pidfile: the group is still there
			}
			log.Warn("killed leftover service process group", "group", group, "pgid", rec.Pgid)
			killed = append(killed, rec.Pgid)
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return killed, errors.Join(errs...)
}

// restartPolicy is the crash-loop budget and the restart backoff. Not safe for concurrent use.
type restartPolicy struct {
	max     int
	window  time.Duration
	backoff time.Duration // the last delay; 0 before the first restart
	times   []time.Time   // restarts, oldest first
}

// crashed records that the service ended unexpectedly after running for uptime and returns the delay before
// restarting it, or giveUp when that restart would be more than max within window.
func (p *restartPolicy) crashed(now time.Time, uptime time.Duration) (wait time.Duration, giveUp bool) {
	p.prune(now)
	if len(p.times) >= p.max {
		return 0, true
	}
	p.times = append(p.times, now)
	switch {
	case p.backoff == 0 || uptime >= backoffReset:
		p.backoff = minBackoff
	default:
		p.backoff = min(2*p.backoff, maxBackoff)
	}
	return p.backoff, false
}

func (p *restartPolicy) count(now time.Time) int {
	p.prune(now)
	return len(p.times)
}

func (p *restartPolicy) prune(now time.Time) {
	i := 0
	for i < len(p.times) && now.Sub(p.times[i]) >= p.window {
		i++
	}
	p.times = p.times[i:]
}

func (p *restartPolicy) reset() { p.backoff, p.times = 0, nil }

// lineTail is a slog.Handler that keeps the "line" attribute of the last max records (RunCommand's output).
type lineTail struct {
	max int
	mu  sync.Mutex
	buf []string
}

func (h *lineTail) Enabled(context.Context, slog.Level) bool { return true }
func (h *lineTail) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *lineTail) WithGroup(string) slog.Handler            { return h }

func (h *lineTail) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "line" {
			return true
		}
		h.mu.Lock()
		h.buf = append(h.buf, a.Value.String())
		if len(h.buf) > h.max {
			h.buf = h.buf[len(h.buf)-h.max:]
		}
		h.mu.Unlock()
		return false
	})
	return nil
}

func (h *lineTail) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.buf...)
}
