// Package driver is Baton's data-aware layer for warm-standby stateful services: it reports a member's replication
// position, promotes a standby, makes a member follow a new primary (rewinding a returning old primary), configures
// synchronous replication and fences a primary that lost its lease.
//
// Three drivers exist: [Exec], where every operation is a user command, so any database can be wired in,
// [Postgres], for PostgreSQL 13 and later (tested with 15), and [Redis], for Redis 6.2 and later (tested with 7.0). The agent owns the decisions (who is primary, under which
// epoch, which standbys are synchronous); a driver only carries them out on the local node and reports what it sees.
package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// Role is what the local database currently is.
type Role string

// Roles a driver reports.
const (
	RolePrimary Role = "primary" // accepts writes (unless fenced)
	RoleStandby Role = "standby" // replays the primary's changes; read-only
	RoleStopped Role = "stopped" // not running; the position is the last one on disk
	RoleUnknown Role = "unknown" // running (or maybe running) but it did not say what it is
)

func (r Role) valid() bool {
	switch r {
	case RolePrimary, RoleStandby, RoleStopped, RoleUnknown:
		return true
	}
	return false
}

// Position is a point in a member's change history: a timeline (bumped by every promotion) and a byte offset in the
// write-ahead log. A higher timeline is newer whatever the LSN; on the same timeline a higher LSN is newer.
type Position struct {
	Timeline uint32
	LSN      uint64
}

// Compare returns -1 if p is older than q, +1 if newer and 0 if equal.
func (p Position) Compare(q Position) int {
	switch {
	case p.Timeline != q.Timeline:
		if p.Timeline < q.Timeline {
			return -1
		}
		return 1
	case p.LSN < q.LSN:
		return -1
	case p.LSN > q.LSN:
		return 1
	}
	return 0
}

// String formats p as "timeline/LSN", e.g. "2/0/3000060".
func (p Position) String() string {
	return strconv.FormatUint(uint64(p.Timeline), 10) + "/" + FormatLSN(p.LSN)
}

// FormatLSN writes an LSN the way PostgreSQL does: two hexadecimal 32-bit halves, "0/3000060".
func FormatLSN(lsn uint64) string {
	return strings.ToUpper(strconv.FormatUint(lsn>>32, 16) + "/" + strconv.FormatUint(lsn&0xffffffff, 16))
}

// ParseLSN reads an LSN written as PostgreSQL does ("0/3000060", hexadecimal halves) or as a plain decimal byte
// offset ("50331744").
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not an LSN (want e.g. 0/3000060 or a decimal byte offset)", s)
		}
		return n, nil
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not an LSN (want two hexadecimal halves such as 0/3000060)", s)
	}
	return h<<32 | l, nil
}

// Lag is how far one standby trails the primary, as the primary sees it.
type Lag struct {
	// Bytes is the WAL the primary has written that the standby has not yet flushed to its disk: what a failover to
	// this standby would lose right now.
	Bytes uint64
	// Seconds is the standby's replay delay (PostgreSQL's replay_lag; 0 when the primary is idle).
	Seconds float64
}

// Peer is where another member's database listens.
type Peer struct {
	Node string // member name; standbys use it as their application_name / slot name
	Host string
	Port int
}

func (p Peer) addr() string { return joinHostPort(p.Host, p.Port) }

// State is what [Driver.State] reports.
type State struct {
	Role Role
	Pos  Position
	// Sync lists the standbys that are currently synchronous (primary only), sorted.
	Sync []string
	// Lag maps each connected standby to its lag (primary only).
	Lag map[string]Lag
	// Unrelated, when set, says why the local data is not on the group's replication history (redis: its
	// replication ids are not among those recorded for the group): the leader never promotes such a member while
	// another one owns the group.
	Unrelated string
}

// Driver runs a member's database. The agent calls State from its heartbeat loop and Fence from its lease timer,
// possibly while another operation is running: those two never wait for the others. Bootstrap, Promote, Follow,
// SetSync and Stop are serialised by the driver. Every method honours ctx; a method that returns an error may have
// done part of its work, and calling it again is safe (each is idempotent).
type Driver interface {
	// State reports the local role and position. It is cheap (one query or one command) and never blocks on
	// another operation.
	State(ctx context.Context) (State, error)
	// Bootstrap prepares the local member. With a nil primary it makes this node the first primary (initialising
	// an empty data dir, or using the cluster already in it); otherwise it makes this node a standby of primary
	// (a base backup into an empty data dir, or Follow for an existing one).
	Bootstrap(ctx context.Context, primary *Peer) error
	// Promote makes this standby the primary under epoch and returns once it accepts writes. On a node that is
	// already primary it lifts a fence and records the epoch.
	Promote(ctx context.Context, epoch uint64) error
	// Follow makes this node a streaming standby of primary. A node whose history diverged from the primary's
	// (an old primary coming back) is rewound first; if that fails it is rebuilt from a fresh base backup only
	// where the configuration allows it.
	Follow(ctx context.Context, primary Peer) error
	// SetSync names the standbys a commit must reach before it is acknowledged (any one of them). With no standbys,
	// strict makes commits wait (writes block) and !strict makes replication asynchronous. On a standby the
	// setting is stored and takes effect when it is promoted, so the agent can set it before Promote.
	SetSync(ctx context.Context, standbys []string, strict bool) error
	// Fence stops the local database acknowledging writes, at once: it must finish well within the lease's guard
	// interval (tens of milliseconds). Promote, Follow and Bootstrap lift it.
	Fence(ctx context.Context) error
	// Stop shuts the local database down cleanly.
	Stop(ctx context.Context) error
}

// Errors callers can test for with errors.Is. The messages wrapping them name the thing and the fix.
var (
	ErrConfig             = errors.New("driver misconfigured")
	ErrCredentials        = errors.New("credentials rejected")
	ErrDataDirOwner       = errors.New("data dir not usable by the os user")
	ErrPrimaryUnreachable = errors.New("primary unreachable")
	ErrNotRunning         = errors.New("database not running")
	ErrRewind             = errors.New("rewind failed")
	ErrNotConfigured      = errors.New("operation has no command")
)

// Options are what the agent knows and the driver configuration does not say.
type Options struct {
	Cluster string
	Group   string
	Node    string // this member's name
	// Members are all members of the group (this node included). A primary keeps a replication slot for each
	// other member so that a standby that is briefly away can catch up without a new base backup.
	Members []string
	// MemberAddresses are the addresses the members connect from (their node addresses, this node's included):
	// a cluster the postgres driver creates admits its replication user and superuser from these only.
	MemberAddresses []string
	Logger          *slog.Logger // nil: discard
	// Peers are where every member's database listens (this node included), by member name (redis: a primary
	// names its replicas by the address they announce).
	Peers []Peer
	// Env, when set, adds variables to every command's environment (exec), e.g. BATON_PREVIOUS_OWNER.
	Env func() []string

	// AllowRebuild lets Follow replace the data dir with a fresh base backup when pg_rewind fails (postgres).
	AllowRebuild bool
	// ListenAddresses is PostgreSQL's listen_addresses (postgres; default "*").
	ListenAddresses string
	// SocketDir is PostgreSQL's unix_socket_directories (postgres; default /var/run/postgresql when it exists,
	// else the data dir).
	SocketDir string
	// LogFile receives the server's log (postgres; default <data_dir>.log).
	LogFile string
	// Timeouts overrides per-operation time limits, keyed by operation name (see [Operations]).
	Timeouts map[string]time.Duration
}

// New builds the driver cfg names. It builds exactly the types in [config.DriverTypes], the list check-config
// accepts; add a new driver to both (TestNewBuildsExactlyTheConfigDriverTypes checks they agree).
func New(cfg *config.Driver, opts Options) (Driver, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no driver section", ErrConfig)
	}
	switch cfg.Type {
	case "exec":
		return NewExec(cfg, opts)
	case "postgres":
		return NewPostgres(cfg, opts)
	case "redis":
		return NewRedis(cfg, opts)
	default:
		return nil, fmt.Errorf("%w: driver.type %q is not a driver this agent can run; use one of %s", ErrConfig, cfg.Type, strings.Join(config.DriverTypes, ", "))
	}
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
