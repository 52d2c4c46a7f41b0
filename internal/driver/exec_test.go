package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/testkit"
)

// script writes an executable shell script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// readEnv parses a file written by `env > file`.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env
}

func newExec(t *testing.T, cmds map[string][]string, opts Options) *Exec {
	t.Helper()
	opts.Cluster, opts.Group, opts.Node = "prod", "db", "n1"
	opts.Members = []string{"n1", "n2"}
	e, err := NewExec(&config.Driver{Type: "exec", DataDir: "/srv/db", Port: 6379, Commands: cmds}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecOperationsGetTheirEnvironment(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PGHOST", "leaked.invalid") // the agent's environment must not reach commands
	envTo := func(name string) []string {
		return []string{script(t, dir, name+".sh", `env > "$1"`), filepath.Join(dir, name+".env")}
	}
	cmds := map[string][]string{
		OpState:     {script(t, dir, "state.sh", "echo 'role=standby timeline=1 lsn=0/3000060'\n")},
		OpBootstrap: envTo("bootstrap"), OpPromote: envTo("promote"), OpFollow: envTo("follow"),
		OpSetSync: envTo("set_sync"), OpFence: envTo("fence"), OpStop: envTo("stop"),
	}
	e := newExec(t, cmds, Options{Env: func() []string { return []string{"BATON_PREVIOUS_OWNER=n2"} }})
	ctx := context.Background()

	st, err := e.State(ctx)
	if err != nil || st.Role != RoleStandby || st.Pos != (Position{1, 0x3000060}) {
		t.Fatalf("State = %+v, %v", st, err)
	}
	if err := e.Bootstrap(ctx, &Peer{Node: "n2", Host: "10.0.0.12", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	if err := e.Promote(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if err := e.Follow(ctx, Peer{Node: "n2", Host: "10.0.0.12", Port: 5433}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetSync(ctx, []string{"n2", "n3"}, true); err != nil {
		t.Fatal(err)
	}
	if err := e.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	want := map[string]map[string]string{
		"bootstrap": {"BATON_OPERATION": "bootstrap", "BATON_ROLE": "standby", "BATON_PRIMARY_NODE": "n2", "BATON_PRIMARY_HOST": "10.0.0.12", "BATON_PRIMARY_PORT": "5432", "BATON_EPOCH": "0"},
		"promote":   {"BATON_OPERATION": "promote", "BATON_ROLE": "primary", "BATON_EPOCH": "42"},
		"follow":    {"BATON_OPERATION": "follow", "BATON_ROLE": "standby", "BATON_PRIMARY_PORT": "5433", "BATON_EPOCH": "42"},
		"set_sync":  {"BATON_OPERATION": "set_sync", "BATON_SYNC_STANDBYS": "n2,n3", "BATON_SYNC_STRICT": "true"},
		"fence":     {"BATON_OPERATION": "fence", "BATON_ROLE": "fenced", "BATON_EPOCH": "42"},
		"stop":      {"BATON_OPERATION": "stop", "BATON_ROLE": "stopped"},
	}
	common := map[string]string{"BATON_CLUSTER": "prod", "BATON_GROUP": "db", "BATON_NODE": "n1", "BATON_MEMBERS": "n1,n2",
		"BATON_DATA_DIR": "/srv/db", "BATON_PORT": "6379", "BATON_PREVIOUS_OWNER": "n2"}
	for op, vars := range want {
		env := readEnv(t, filepath.Join(dir, op+".env"))
		for k, v := range common {
			vars[k] = v
		}
		for k, v := range vars {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", op, k, env[k], v)
			}
		}
		if _, ok := env["PGHOST"]; ok {
			t.Errorf("%s: inherited PGHOST from the agent", op)
		}
	}
}

func TestExecRunsArgvWithoutShell(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	w := script(t, dir, "args.sh", `for a in "$@"; do echo "$a"; done > "`+out+`"`+"\n")
	e := newExec(t, map[string][]string{OpState: {"true"}, OpFence: {w, "$HOME", "a b", "*;rm -rf /"}}, Options{})
	if err := e.Fence(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if got, want := string(b), "$HOME\na b\n*;rm -rf /\n"; got != want {
		t.Errorf("arguments = %q, want %q (passed verbatim)", got, want)
	}
}

func TestExecErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fail := script(t, dir, "fail.sh", "echo progress; echo 'pg_ctl: disk full' >&2; exit 3\n")
	bad := script(t, dir, "bad.sh", "echo 'role=primary position=0/1'\n")
	e := newExec(t, map[string][]string{OpState: {bad}, OpPromote: {fail}}, Options{})

	st, err := e.State(ctx)
	if err == nil || !strings.Contains(err.Error(), "state output: position=0/1: unknown key") || st.Role != RoleUnknown {
		t.Errorf("State with bad output = %+v, %v", st, err)
	}
	err = e.Promote(ctx, 1)
	if err == nil || !strings.Contains(err.Error(), "driver command promote ("+fail+"): exit status 3: pg_ctl: disk full") {
		t.Errorf("Promote error = %v", err)
	}
	err = e.Follow(ctx, Peer{Node: "n2"})
	if !errors.Is(err, ErrNotConfigured) || !strings.Contains(err.Error(), "set driver.commands.follow") {
		t.Errorf("Follow without a command: %v", err)
	}
	if e.lastEpoch() != 0 {
		t.Errorf("a failed promote recorded its epoch")
	}
}

// A command that outlives its time limit is killed with everything it started.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	hang := script(t, dir, "hang.sh", "sleep 30 &\necho $! > "+pidFile+"\nwait\n")
	e := newExec(t, map[string][]string{OpState: {"true"}, OpFence: {hang}}, Options{Timeouts: map[string]time.Duration{OpFence: 300 * time.Millisecond}})
	t0 := time.Now()
	err := e.Fence(context.Background())
	t.Logf("Fence returned after %v", time.Since(t0))
	if took := time.Since(t0); took > 3*time.Second {
		t.Errorf("Fence took %v with a 300ms limit", took)
	}
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") {
		t.Errorf("error = %v, want a timeout", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	testkit.WaitFor(t, 2*time.Second, "the script's child "+strconv.Itoa(pid)+" to die with it after the timeout", func() bool { return !alive(pid) })
}

func TestExecCancelledContext(t *testing.T) {
	e := newExec(t, map[string][]string{OpState: {"sleep", "30"}}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.State(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("State with an expiring context: %v", err)
	}
}

func TestNewExecRejectsBadCommands(t *testing.T) {
	for _, tt := range []struct {
		cmds map[string][]string
		err  string
	}{
		{map[string][]string{OpPromote: {"/bin/true"}}, "driver.commands.state is missing"},
		{map[string][]string{OpState: {"/bin/true"}, "demote": {"/bin/true"}}, "driver.commands.demote is not an operation; use state, bootstrap, promote, follow, set_sync, fence, stop"},
		{map[string][]string{OpState: {}}, "driver.commands.state: empty argv"},
		{map[string][]string{OpState: {""}}, "driver.commands.state: empty argv"},
	} {
		_, err := NewExec(&config.Driver{Type: "exec", Commands: tt.cmds}, Options{Node: "n1"})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("NewExec(%v) = %v, want %q", tt.cmds, err, tt.err)
		}
	}
	if _, err := NewExec(&config.Driver{Type: "exec", OSUser: "no-such-user-here", Commands: map[string][]string{OpState: {"true"}}}, Options{}); err == nil ||
		!strings.Contains(err.Error(), `driver.os_user "no-such-user-here"`) {
		t.Errorf("unknown os_user: %v", err)
	}
}
