package driver

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// Operation names: the keys of driver.commands (exec) and of Options.Timeouts.
const (
	OpState     = "state"
	OpBootstrap = "bootstrap"
	OpPromote   = "promote"
	OpFollow    = "follow"
	OpSetSync   = "set_sync"
	OpFence     = "fence"
	OpStop      = "stop"
)

// Operations lists every operation name.
var Operations = []string{OpState, OpBootstrap, OpPromote, OpFollow, OpSetSync, OpFence, OpStop}

// defaultTimeouts bound each operation. State and Fence run on the heartbeat and lease paths, so they are short;
// bootstrap and follow may copy a whole database.
var defaultTimeouts = map[string]time.Duration{
	OpState:     2 * time.Second,
	OpFence:     2 * time.Second,
	OpSetSync:   10 * time.Second,
	OpPromote:   60 * time.Second,
	OpStop:      2 * time.Minute,
	OpFollow:    30 * time.Minute,
	OpBootstrap: 2 * time.Hour,
}

func timeoutFor(opts Options, op string) time.Duration {
	if d, ok := opts.Timeouts[op]; ok && d > 0 {
		return d
	}
	return defaultTimeouts[op]
}

// Exec is a driver whose every operation is a user command from driver.commands: an argv run without a shell, as
// driver.os_user when set, with a time limit and the environment below. Commands exit 0 on success; on failure the
// last line of stderr becomes the error. The state command prints a state line (see [ParseState]) on stdout.
//
// Environment of every command (nothing is inherited from the agent except a plain PATH):
//
//	BATON_CLUSTER, BATON_GROUP, BATON_NODE   who is asking
//	BATON_OPERATION                          state, bootstrap, promote, follow, set_sync, fence or stop
//	BATON_ROLE                               the role the operation leads to: primary, standby, stopped or fenced
//	BATON_EPOCH                              promote: the new epoch; otherwise the last epoch this driver saw
//	BATON_PRIMARY_NODE, _HOST, _PORT         follow, and bootstrap of a standby: the primary to replicate from
//	BATON_SYNC_STANDBYS, BATON_SYNC_STRICT   set_sync: comma-separated node names; "true" or "false"
//	BATON_MEMBERS                            comma-separated members of the group
//	BATON_DATA_DIR, BATON_BIN_DIR, BATON_PORT from the driver section, when set
//
// plus whatever Options.Env adds (the agent passes BATON_PREVIOUS_OWNER there).
type Exec struct {
	commands map[string][]string
	opts     Options
	user     osUser
	static   []string // environment shared by every command

	mu    sync.Mutex // serialises the operations that change the role; State and Fence do not take it
	emu   sync.Mutex
	epoch uint64 // guarded by emu: the highest epoch passed to Promote
}

var _ Driver = (*Exec)(nil)

// NewExec builds an exec driver. driver.commands.state is required; an operation without a command fails with
// ErrNotConfigured when called.
func NewExec(cfg *config.Driver, opts Options) (*Exec, error) {
	for k, argv := range cfg.Commands {
		if !slices.Contains(Operations, k) {
			return nil, fmt.Errorf("%w: driver.commands.%s is not an operation; use %s", ErrConfig, k, strings.Join(Operations, ", "))
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("%w: driver.commands.%s: empty argv; give the program and its arguments (there is no shell)", ErrConfig, k)
		}
	}
	if len(cfg.Commands[OpState]) == 0 {
		return nil, fmt.Errorf("%w: driver.commands.state is missing; the exec driver needs a command that prints e.g. \"role=primary timeline=1 lsn=0/3000060\"", ErrConfig)
	}
	u, err := lookupOSUser(cfg.OSUser)
	if err != nil {
		return nil, err
	}
	e := &Exec{commands: cfg.Commands, opts: opts, user: u}
	e.static = append(baseEnv(u),
		"BATON_CLUSTER="+opts.Cluster,
		"BATON_GROUP="+opts.Group,
		"BATON_NODE="+opts.Node,
		"BATON_MEMBERS="+strings.Join(opts.Members, ","),
	)
	if cfg.DataDir != "" {
		e.static = append(e.static, "BATON_DATA_DIR="+cfg.DataDir)
	}
	if cfg.BinDir != "" {
		e.static = append(e.static, "BATON_BIN_DIR="+cfg.BinDir)
	}
	if cfg.Port != 0 {
		e.static = append(e.static, "BATON_PORT="+strconv.Itoa(cfg.Port))
	}
	return e, nil
}

func (e *Exec) lastEpoch() uint64 {
	e.emu.Lock()
	defer e.emu.Unlock()
	return e.epoch
}

// run runs op's command with the operation's variables added to the environment.
func (e *Exec) run(ctx context.Context, op, role string, epoch uint64, extra ...string) (cmdResult, error) {
	argv := e.commands[op]
	if len(argv) == 0 {
		return cmdResult{}, fmt.Errorf("%s: %w: set driver.commands.%s to the argv that does it", op, ErrNotConfigured, op)
	}
	env := slices.Clone(e.static)
	env = append(env, "BATON_OPERATION="+op, "BATON_ROLE="+role, "BATON_EPOCH="+strconv.FormatUint(epoch, 10))
	env = append(env, extra...)
	if e.opts.Env != nil {
		env = append(env, e.opts.Env()...)
	}
	res, err := run(ctx, e.user, timeoutFor(e.opts, op), env, argv...)
	if err != nil {
		return res, fmt.Errorf("driver command %s (%s): %w", op, argv[0], err)
	}
	return res, nil
}

// State runs the state command and parses its stdout.
func (e *Exec) State(ctx context.Context) (State, error) {
	res, err := e.run(ctx, OpState, "", e.lastEpoch())
	if err != nil {
		return State{Role: RoleUnknown}, err
	}
	st, err := ParseState(string(res.stdout))
	if err != nil {
		return State{Role: RoleUnknown}, fmt.Errorf("driver command state (%s): %w", e.commands[OpState][0], err)
	}
	return st, nil
}

func primaryEnv(p Peer) []string {
	return []string{"BATON_PRIMARY_NODE=" + p.Node, "BATON_PRIMARY_HOST=" + p.Host, "BATON_PRIMARY_PORT=" + strconv.Itoa(p.Port)}
}

// Bootstrap runs the bootstrap command; BATON_PRIMARY_* are empty for the first primary.
func (e *Exec) Bootstrap(ctx context.Context, primary *Peer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if primary == nil {
		_, err := e.run(ctx, OpBootstrap, string(RolePrimary), e.lastEpoch(), primaryEnv(Peer{})...)
		return err
	}
	_, err := e.run(ctx, OpBootstrap, string(RoleStandby), e.lastEpoch(), primaryEnv(*primary)...)
	return err
}

// Promote runs the promote command with BATON_EPOCH set to epoch.
func (e *Exec) Promote(ctx context.Context, epoch uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.run(ctx, OpPromote, string(RolePrimary), epoch); err != nil {
		return err
	}
	e.emu.Lock()
	e.epoch = max(e.epoch, epoch)
	e.emu.Unlock()
	return nil
}

// Follow runs the follow command with BATON_PRIMARY_* set.
func (e *Exec) Follow(ctx context.Context, primary Peer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.run(ctx, OpFollow, string(RoleStandby), e.lastEpoch(), primaryEnv(primary)...)
	return err
}

// SetSync runs the set_sync command with BATON_SYNC_STANDBYS and BATON_SYNC_STRICT set.
func (e *Exec) SetSync(ctx context.Context, standbys []string, strict bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.run(ctx, OpSetSync, "", e.lastEpoch(),
		"BATON_SYNC_STANDBYS="+strings.Join(standbys, ","), "BATON_SYNC_STRICT="+strconv.FormatBool(strict))
	return err
}

// Fence runs the fence command. It does not wait for a running operation: the lease path cannot queue behind a
// base backup.
func (e *Exec) Fence(ctx context.Context) error {
	_, err := e.run(ctx, OpFence, "fenced", e.lastEpoch())
	return err
}

// Stop runs the stop command.
func (e *Exec) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.run(ctx, OpStop, string(RoleStopped), e.lastEpoch())
	return err
}
