// Package service runs the commands Baton starts on behalf of a group: hooks
// on role changes (hooks.go) and the group's supervised service
// (supervisor.go). Commands are argv lists run directly (never through a
// shell), in their own process group so a timeout kills the whole tree, with
// the BATON_* environment and their output logged.
package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Env is the environment handed to every hook and driver command.
type Env struct {
	Cluster, Node, Group, Role string
	Epoch                      uint64
	PreviousOwner              string
	Reason                     string
	// Unit and VIP name the unit of an active-active group the change is
	// about (e.g. "web[1]" and "10.0.0.101/24"); empty for active-passive.
	Unit, VIP string
}

// Vars returns the BATON_* variables.
func (e Env) Vars() []string {
	vars := []string{
		"BATON_CLUSTER=" + e.Cluster,
		"BATON_NODE=" + e.Node,
		"BATON_GROUP=" + e.Group,
		"BATON_ROLE=" + e.Role,
		"BATON_EPOCH=" + strconv.FormatUint(e.Epoch, 10),
		"BATON_PREVIOUS_OWNER=" + e.PreviousOwner,
		"BATON_REASON=" + e.Reason,
	}
	if e.Unit != "" {
		vars = append(vars, "BATON_UNIT="+e.Unit, "BATON_VIP="+e.VIP)
	}
	return vars
}

// Result of one command.
type Result struct {
	Argv     []string
	Err      error // nil: exit 0
	TimedOut bool
	Took     time.Duration
}

// RunCommand runs argv with env and timeout, logging each output line at info
// with the given prefix. The process and its children are killed at the
// timeout (its own process group).
func RunCommand(ctx context.Context, argv []string, env []string, timeout time.Duration, log *slog.Logger) Result {
	start := time.Now()
	res := Result{Argv: argv}
	if len(argv) == 0 || argv[0] == "" {
		res.Err = errors.New("empty command")
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 64*1024)
		for sc.Scan() {
			log.Info("hook output", "line", sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		wg.Wait()
		res.Err = fmt.Errorf("start %s: %w", argv[0], err)
		res.Took = time.Since(start)
		return res
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		res.Err = err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		res.Err = <-done
		res.TimedOut = ctx.Err() == context.DeadlineExceeded
		if res.TimedOut {
			res.Err = fmt.Errorf("timed out after %v (killed)", timeout)
		}
	}
	pw.Close()
	wg.Wait()
	res.Took = time.Since(start)
	return res
}

// HookJob is one hook invocation.
type HookJob struct {
	Argv    []string
	Env     Env
	Timeout time.Duration
	// Done, if set, is called with the result (from the runner's goroutine).
	Done func(Result)
}

// HookRunner runs hooks one at a time per group, in the order they were
// queued, so "standby" never overtakes the "active" before it. Enqueue never
// blocks the caller.
type HookRunner struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	queues map[string]chan HookJob
	busy   sync.WaitGroup // queued or running jobs
	wg     sync.WaitGroup
}

// NewHookRunner returns a runner; Close waits for running hooks.
func NewHookRunner(log *slog.Logger) *HookRunner {
	ctx, cancel := context.WithCancel(context.Background())
	return &HookRunner{log: log, ctx: ctx, cancel: cancel, queues: map[string]chan HookJob{}}
}

// Enqueue queues a job for a group. When the queue is full (a hook is hung and
// many transitions piled up) the job is dropped with an error log rather than
// blocking the agent.
func (r *HookRunner) Enqueue(group string, j HookJob) {
	r.mu.Lock()
	q, ok := r.queues[group]
	if !ok {
		q = make(chan HookJob, 64)
		r.queues[group] = q
		r.wg.Add(1)
		go r.loop(group, q)
	}
	r.mu.Unlock()
	r.busy.Add(1)
	select {
	case q <- j:
	default:
		r.busy.Done()
		r.log.Error("hook queue full; dropping hook", "group", group, "role", j.Env.Role, "argv", j.Argv)
	}
}

func (r *HookRunner) loop(group string, q chan HookJob) {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			for {
				select {
				case <-q:
					r.busy.Done()
				default:
					return
				}
			}
		case j := <-q:
			log := r.log.With("group", group, "role", j.Env.Role, "epoch", j.Env.Epoch, "hook", j.Argv[0])
			res := RunCommand(r.ctx, j.Argv, j.Env.Vars(), j.Timeout, log)
			if res.Err != nil {
				log.Error("hook failed", "err", res.Err, "took", res.Took.Round(time.Millisecond))
			} else {
				log.Info("hook done", "took", res.Took.Round(time.Millisecond))
			}
			if j.Done != nil {
				j.Done(res)
			}
			r.busy.Done()
		}
	}
}

// Drain waits up to timeout for queued and running hooks to finish.
func (r *HookRunner) Drain(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { r.busy.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close stops the runner: running hooks are killed, queued ones dropped.
func (r *HookRunner) Close() {
	r.cancel()
	r.wg.Wait()
}
