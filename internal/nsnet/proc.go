package nsnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// killWait bounds how long Kill waits for a SIGKILLed process to be reaped.
const killWait = 10 * time.Second

// Proc is a process started in a host namespace by Lab.Start.
type Proc struct {
	name string
	host string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	err  error         // exit status; valid after done

	l        *Lab
	killOnce sync.Once
	killErr  error
}

// Start runs argv in host's namespace (`ip netns exec NS argv...`, which
// execs argv in place, so Pid is argv's pid) as the leader of its own process
// group, with SIGKILL as its parent-death signal. env is appended to this
// process's environment. stdout and stderr are appended to logPath (created if
// needed; "" discards). Close kills the process group.
//
// Linux delivers the parent-death signal when the OS thread that forked the
// child exits, not the process; Go only ends threads of goroutines that exit
// while locked to them, so do not call Start from such a goroutine.
func (l *Lab) Start(host, name string, argv []string, env []string, logPath string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("lab: Start %s: empty argv", name)
	}
	if host == Bridge {
		return nil, fmt.Errorf("lab: Start %s: not in the bridge namespace", name)
	}
	if _, err := l.handle(host); err != nil {
		return nil, err
	}
	out := os.DevNull
	flags := os.O_WRONLY
	if logPath != "" {
		out = logPath
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(out, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: Start %s: %w", name, err)
	}
	defer f.Close() // the child holds its own copy
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.nsName(host)}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{name: name, host: host, cmd: cmd, done: make(chan struct{}), l: l}

	// Register under the lock so Close cannot miss a process that starts
	// while it runs.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: Start %s in %s: %w", name, host, err)
	}
	l.procs[p] = struct{}{}
	l.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.log.Info("started", "host", host, "name", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Name returns the name given to Start.
func (p *Proc) Name() string { return p.name }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process only (not its group): SIGSTOP freezes an
// agent while helpers it spawned keep running. It returns os.ErrProcessDone
// once the process has been reaped.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the whole process group and waits until the process is
// reaped. It returns nil if the process is gone afterwards, whatever its exit
// status.
func (p *Proc) Kill() error {
	p.killOnce.Do(func() {
		// The group may outlive the leader (children it spawned).
		if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.killErr = fmt.Errorf("lab: kill %s: %w", p.name, err)
			return
		}
		select {
		case <-p.done:
		case <-time.After(killWait):
			p.killErr = fmt.Errorf("lab: %s (pid %d) not reaped %v after SIGKILL", p.name, p.Pid(), killWait)
			return
		}
		p.l.mu.Lock()
		delete(p.l.procs, p)
		p.l.mu.Unlock()
	})
	return p.killErr
}

// Wait waits up to timeout for the process to exit and returns its exit
// status (nil for exit code 0, an *exec.ExitError otherwise), or ErrTimeout.
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("%w: %s (pid %d) still running after %v", ErrTimeout, p.name, p.Pid(), timeout)
	}
}

// Run runs argv to completion in a namespace (any host, "client" or
// "bridge") and returns its combined output. It gives up after 30 s.
func (l *Lab) Run(host string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: Run: empty argv")
	}
	if _, err := l.handle(host); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.nsName(host)}, argv...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("lab: %s: %v: %w: %s", host, argv, err, out)
	}
	return out, nil
}
