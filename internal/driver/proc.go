package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osUser is the account a driver runs its commands as.
type osUser struct {
	name     string
	uid, gid uint32
	groups   []uint32
	home     string
	switchTo bool // the agent runs as someone else (root) and must switch to this user
}

// lookupOSUser resolves name (empty: the agent's own user). Switching to another user needs root.
func lookupOSUser(name string) (osUser, error) {
	var (
		u   *user.User
		err error
	)
	if name == "" {
		u, err = user.Current()
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return osUser{}, fmt.Errorf("%w: driver.os_user %q: %v; create the account or set os_user to an existing one", ErrConfig, name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	ou := osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				ou.groups = append(ou.groups, uint32(n))
			}
		}
	}
	if ou.uid != uint32(os.Geteuid()) {
		if os.Geteuid() != 0 {
			return osUser{}, fmt.Errorf("%w: driver.os_user %q: the agent runs as uid %d and cannot switch to uid %d; run the agent as root or as %s",
				ErrConfig, ou.name, os.Geteuid(), ou.uid, ou.name)
		}
		ou.switchTo = true
	}
	return ou, nil
}

// inGroup reports whether the user belongs to gid.
func (u osUser) inGroup(gid uint32) bool {
	if gid == u.gid {
		return true
	}
	for _, g := range u.groups {
		if g == gid {
			return true
		}
	}
	return false
}

// chown gives path to the user when the agent runs as someone else.
func (u osUser) chown(path string) error {
	if !u.switchTo {
		return nil
	}
	return os.Chown(path, int(u.uid), int(u.gid))
}

// cmdResult is a finished command's output.
type cmdResult struct {
	stdout, stderr []byte
}

// lastLine returns the last non-empty line of b, trimmed, for error messages.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// outputLimit caps what a command may print; the rest is dropped.
const outputLimit = 1 << 20

type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// run executes argv as u (no shell) with env and a time limit. The command runs in its own process group, and the
// whole group is killed when ctx ends or the timeout passes, so a script's children do not outlive it.
func run(ctx context.Context, u osUser, timeout time.Duration, env []string, argv ...string) (cmdResult, error) {
	if len(argv) == 0 || argv[0] == "" {
		return cmdResult{}, errors.New("empty command")
	}
	parent := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin = nil
	stdout := &limitedBuffer{limit: outputLimit}
	stderr := &limitedBuffer{limit: outputLimit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if u.switchTo {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that keeps our pipes open must not hold Wait forever.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	res := cmdResult{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	if err != nil {
		if parent.Err() != nil {
			return res, parent.Err()
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("timed out after %v (killed)", timeout)
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if msg := lastLine(res.stderr); msg != "" {
				return res, fmt.Errorf("%v: %s", err, msg)
			}
		}
		return res, err
	}
	return res, nil
}

// baseEnv is the environment of every command: a plain PATH, the user's identity, stable messages, nothing
// inherited from the agent (a stray PGHOST there must not redirect pg_basebackup).
func baseEnv(u osUser) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.home,
		"USER=" + u.name,
		"LOGNAME=" + u.name,
		"LANG=C.UTF-8",
		"LC_MESSAGES=C",
	}
}
