package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// Redis drives a Redis server (6.2 or later, or Valkey; tested with Debian's 7.0) on the local node.
//
// It runs redis-server itself (daemonised, from a config file it writes, baton-redis.conf in the data dir) when
// nothing answers on the port, and otherwise adopts the server it finds there. Every server it writes a config for
// starts fenced (min-replicas-to-write at its maximum), so a Redis restarted behind the agent's back never
// acknowledges a write before the agent promotes it.
//
// Positions are the replication offset (master_repl_offset) plus one, so that 0 keeps meaning "no copy of the
// data": Redis keeps counting the offset across a promotion (the promoted replica's offset continues where the
// stream it received ended), so offsets of the members of one replication history compare directly. Members of
// different histories do not: the driver records, in baton-redis.state in the data dir, every replication id it has
// seen its data carry as a member of the group (its own as primary, its primary's once the link is up), and a server
// whose master_replid and master_replid2 are both missing from that record reports [State.Unrelated]: the leader
// never promotes it while another member owns the group (--allow-data-loss overrides).
//
// Close releases the driver's connections; the server keeps running.
type Redis struct {
	bin, dataDir, confFile, logFile, pidFile, stateFile string
	localHost                                           string
	port                                                int
	super, repl                                         *credential // nil: no password
	user                                                osUser
	opts                                                Options
	log                                                 *slog.Logger
	self                                                Peer // this member's address as the others reach it
	peers                                               []Peer

	mu sync.Mutex // serialises Bootstrap, Promote, Follow, SetSync and Stop

	smu       sync.Mutex // guards st, fenced, unrelated, savedAt
	st        redisState
	fenced    bool // the fence was put up and not lifted since
	unrelated string
	savedAt   time.Time

	cmu                   sync.Mutex // guards the clients
	stateC, adminC, fence *respClient
}

var _ Driver = (*Redis)(nil)

// redisState is what the driver keeps across agent restarts.
type redisState struct {
	Epoch uint64 `json:"epoch,omitempty"`
	// Lineage lists the replication ids this member's data carried while it was a member of the group, newest
	// last (at most redisLineageMax).
	Lineage []string `json:"lineage,omitempty"`
	// Primary is the member this one last followed (a managed server restarts as its replica).
	Primary *Peer `json:"primary,omitempty"`
	// Sync and Strict are the last SetSync; LastPos the newest position seen (reported while stopped).
	Sync    []string `json:"sync,omitempty"`
	Strict  bool     `json:"strict,omitempty"`
	LastPos uint64   `json:"last_pos,omitempty"`
	// Rejoining: this node was a primary and was told to follow another one; until its replication link is up its
	// data is the old primary's, which may hold writes the group discarded, so it is not promotable.
	Rejoining string `json:"rejoining,omitempty"`
}

const (
	redisLineageMax = 64
	// redisFenceReplicas is min-replicas-to-write while fenced: no server has that many replicas, so every write
	// is refused at once with NOREPLICAS.
	redisFenceReplicas = "2147483647"
	// redisMaxLag is min-replicas-max-lag in sync: on: replicas acknowledge once a second, so a lag of 0 or 1 is a
	// healthy replica; 2 tolerates one late acknowledgement without refusing writes.
	redisMaxLag  = "2"
	redisMaxLagS = 2
	// redisPauseMs is the CLIENT PAUSE of a fence: until lifted (a year; UNPAUSE ends it).
	redisPauseMs = "31536000000"
)

// NewRedis checks the configuration (binary, os user, credentials) and builds the driver. It does not touch the
// server.
func NewRedis(cfg *config.Driver, opts Options) (*Redis, error) {
	if opts.Node == "" {
		return nil, fmt.Errorf("%w: no node name", ErrConfig)
	}
	r := &Redis{dataDir: cfg.DataDir, port: cfg.Port, opts: opts, log: discardLogger(opts.Logger), fenced: true}
	if r.port == 0 {
		r.port = 6379
	}
	if r.dataDir == "" || !filepath.IsAbs(r.dataDir) {
		return nil, fmt.Errorf("%w: driver.data_dir %q: need an absolute path, e.g. /var/lib/baton/redis", ErrConfig, r.dataDir)
	}
	r.dataDir = filepath.Clean(r.dataDir)
	binDir := cfg.BinDir
	if binDir == "" {
		binDir = "/usr/bin"
	}
	r.bin = filepath.Join(binDir, "redis-server")
	if fi, err := os.Stat(r.bin); err != nil || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("%w: driver.bin_dir %s has no redis-server; install Redis (Debian: apt-get install redis-server) or set bin_dir to the directory holding redis-server", ErrConfig, binDir)
	}
	var err error
	if r.user, err = lookupOSUser(cfg.OSUser); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		cfg   *config.Credential
		dst   **credential
		field string
	}{{cfg.Superuser, &r.super, "driver.superuser"}, {cfg.Replication, &r.repl, "driver.replication"}} {
		if c.cfg == nil {
			continue
		}
		if c.cfg.PasswordFile == "" {
			return nil, fmt.Errorf("%w: %s: need a password_file (and a user, default \"default\"), e.g. {user: default, password_file: /etc/baton/redis.pass}", ErrConfig, c.field)
		}
		u := c.cfg.User
		if u == "" {
			u = "default"
		}
		*c.dst = &credential{user: u, passwordFile: c.cfg.PasswordFile, field: c.field}
		if _, err := (*c.dst).password(); err != nil {
			return nil, err
		}
	}
	if r.repl == nil {
		r.repl = r.super // replicas authenticate like the agent unless told otherwise
	}
	r.localHost = "127.0.0.1"
	if l := strings.TrimSpace(opts.ListenAddresses); l != "" {
		if first, _, _ := strings.Cut(l, ","); !slices.Contains([]string{"*", "0.0.0.0", "127.0.0.1", "localhost", "::", "::1"}, strings.TrimSpace(first)) {
			r.localHost = strings.TrimSpace(first)
		}
	}
	r.confFile = filepath.Join(r.dataDir, "baton-redis.conf")
	r.pidFile = filepath.Join(r.dataDir, "redis.pid")
	r.stateFile = filepath.Join(r.dataDir, "baton-redis.state")
	r.logFile = opts.LogFile
	if r.logFile == "" {
		r.logFile = r.dataDir + ".log"
	}
	r.self = Peer{Node: opts.Node, Host: r.localHost, Port: r.port}
	for _, p := range opts.Peers {
		if p.Node == opts.Node {
			r.self = p
		} else {
			r.peers = append(r.peers, p)
		}
	}
	if b, err := os.ReadFile(r.stateFile); err == nil {
		if err := json.Unmarshal(b, &r.st); err != nil {
			return nil, fmt.Errorf("%w: %s is not a state file this driver wrote (%v); move it away to start afresh", ErrConfig, r.stateFile, err)
		}
	}
	return r, nil
}

func (r *Redis) addr() string { return joinHostPort(r.localHost, r.port) }

// client returns (creating it) one of the driver's connections to the local server: state polls, the serialised
// operations and the fence each have their own, so none waits for another.
func (r *Redis) client(slot **respClient) *respClient {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if *slot == nil {
		// Short timeouts: a healthy server answers everything the driver asks in microseconds.
		*slot = newRESPClient(r.addr(), r.super, time.Second, 2*time.Second)
	}
	return *slot
}

// Close releases the driver's connections. The server keeps running.
func (r *Redis) Close() error {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	for _, s := range []**respClient{&r.stateC, &r.adminC, &r.fence} {
		if *s != nil {
			(*s).Close()
			*s = nil
		}
	}
	return nil
}

// explain turns a failed command against addr (who: "the local Redis", "primary n1") into an error naming the
// thing and the fix.
func (r *Redis) explain(err error, who, addr string, c *credential) error {
	msg := err.Error()
	field := "driver.superuser"
	if c != nil {
		field = c.field
	}
	switch {
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password"):
		u := "default"
		if c != nil {
			u = c.user
		}
		return fmt.Errorf("%w: %s at %s rejected user %s's password; make %s.password_file hold the password that server has for %s: %v", ErrCredentials, who, addr, u, field, u, err)
	case strings.Contains(msg, "NOAUTH"):
		return fmt.Errorf("%w: %s at %s needs a password; set %s: {user: default, password_file: ...}: %v", ErrCredentials, who, addr, field, err)
	case strings.Contains(msg, "NOPERM"):
		return fmt.Errorf("%w: %s at %s: the ACL user lacks a permission the driver needs (%v); grant it +@all or at least +info +config +client +replicaof +role +ping +psync +replconf", ErrCredentials, who, addr, err)
	case strings.Contains(msg, "connection refused"):
		return fmt.Errorf("%w: %s at %s refuses connections (%v); check that redis-server runs there and listens on that port (driver.port)", ErrPrimaryUnreachable, who, addr, err)
	case isTimeout(err) || strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "no route to host"):
		return fmt.Errorf("%w: %s at %s does not answer (%v); check the address, the port and firewalls", ErrPrimaryUnreachable, who, addr, err)
	case errors.Is(err, errNotRESP) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "connection reset"):
		return fmt.Errorf("%w: %s at %s does not speak the Redis protocol (%v); driver.port must be redis-server's port", ErrConfig, who, addr, err)
	}
	return fmt.Errorf("%s at %s: %w", who, addr, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// replInfo is INFO replication, parsed.
type replInfo struct {
	role                    string // master | slave
	replid, replid2         string
	offset                  int64
	masterHost              string
	masterPort              int
	linkUp, syncing         bool
	replicas                []replicaInfo
	minReplicas, readOnlyOK int // -1: not asked
}

type replicaInfo struct {
	ip           string
	port         int
	state        string
	offset, lagS int64
}

func parseReplInfo(s string) (replInfo, error) {
	ri := replInfo{minReplicas: -1, readOnlyOK: -1}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			ri.role = v
		case k == "master_replid":
			ri.replid = v
		case k == "master_replid2":
			ri.replid2 = v
		case k == "master_repl_offset":
			ri.offset, _ = strconv.ParseInt(v, 10, 64)
		case k == "master_host":
			ri.masterHost = v
		case k == "master_port":
			ri.masterPort, _ = strconv.Atoi(v)
		case k == "master_link_status":
			ri.linkUp = v == "up"
		case k == "master_sync_in_progress":
			ri.syncing = v == "1"
		case strings.HasPrefix(k, "slave") && strings.Contains(v, "ip="):
			var rp replicaInfo
			for kv := range strings.SplitSeq(v, ",") {
				a, b, _ := strings.Cut(kv, "=")
				switch a {
				case "ip":
					rp.ip = b
				case "port":
					rp.port, _ = strconv.Atoi(b)
				case "state":
					rp.state = b
				case "offset":
					rp.offset, _ = strconv.ParseInt(b, 10, 64)
				case "lag":
					rp.lagS, _ = strconv.ParseInt(b, 10, 64)
				}
			}
			ri.replicas = append(ri.replicas, rp)
		}
	}
	if ri.role != "master" && ri.role != "slave" {
		return ri, fmt.Errorf("INFO replication has no role (got %q): not a Redis server", firstLine(s))
	}
	return ri, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 80 {
		l = l[:80]
	}
	return strings.TrimSpace(l)
}

func (r *Redis) info(ctx context.Context, c *respClient) (replInfo, error) {
	v, err := c.Do(ctx, "INFO", "replication")
	if err != nil {
		return replInfo{}, err
	}
	s, ok := v.(string)
	if !ok {
		return replInfo{}, fmt.Errorf("%w: INFO answered %T", errNotRESP, v)
	}
	return parseReplInfo(s)
}

// nodeOf names the member a replica entry on the primary is: replicas announce their member address
// (replica-announce-ip / -port), so ip and port match one of Options.Peers.
func (r *Redis) nodeOf(rp replicaInfo) string {
	for _, p := range r.peers {
		if p.Port == rp.port && (p.Host == rp.ip || sameIP(p.Host, rp.ip)) {
			return p.Node
		}
	}
	return ""
}

func sameIP(a, b string) bool {
	x, y := net.ParseIP(a), net.ParseIP(b)
	return x != nil && y != nil && x.Equal(y)
}

// running reports whether something answers on the port (and what it said when it is not a usable Redis).
func (r *Redis) running(ctx context.Context) (bool, error) {
	_, err := r.client(&r.adminC).Do(ctx, "PING")
	if err == nil {
		return true, nil
	}
	if strings.Contains(err.Error(), "connection refused") {
		return false, nil
	}
	return true, r.explain(err, "the local Redis", r.addr(), r.super)
}

// State reports role and position from INFO replication (one round trip); while the server is down, the last
// position seen.
func (r *Redis) State(ctx context.Context) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpState))
	defer cancel()
	ri, err := r.info(ctx, r.client(&r.stateC))
	if err != nil {
		if strings.Contains(err.Error(), "connection refused") {
			r.smu.Lock()
			defer r.smu.Unlock()
			pos := uint64(0)
			if _, serr := os.Stat(filepath.Join(r.dataDir, "dump.rdb")); serr == nil {
				pos = max(r.st.LastPos, 1)
			}
			return State{Role: RoleStopped, Pos: Position{LSN: pos}}, nil
		}
		return State{Role: RoleUnknown}, r.explain(err, "the local Redis", r.addr(), r.super)
	}
	st := State{Pos: Position{LSN: uint64(ri.offset) + 1}}
	if ri.role == "master" {
		st.Role = RolePrimary
		st.Lag = map[string]Lag{}
		r.smu.Lock()
		syncOn := len(r.st.Sync) > 0
		r.smu.Unlock()
		for _, rp := range ri.replicas {
			n := r.nodeOf(rp)
			if n == "" || rp.state != "online" {
				continue
			}
			lag := Lag{Seconds: float64(rp.lagS)}
			if ri.offset > rp.offset {
				lag.Bytes = uint64(ri.offset - rp.offset)
			}
			st.Lag[n] = lag
			// Synchronous: counted by min-replicas-to-write (online, acknowledged within min-replicas-max-lag).
			if syncOn && rp.lagS <= redisMaxLagS {
				st.Sync = append(st.Sync, n)
			}
		}
		slices.Sort(st.Sync)
	} else {
		st.Role = RoleStandby
	}
	st.Unrelated = r.lineage(ri)
	return st, nil
}

// lineage records the replication ids the member's data carries (a primary's own once it is this group's primary,
// a replica's once its link to the group's primary is up) and says why the data is unrelated to the group's
// history, if it is.
func (r *Redis) lineage(ri replInfo) string {
	r.smu.Lock()
	defer r.smu.Unlock()
	pos := uint64(ri.offset) + 1
	save := false
	if pos != r.st.LastPos && time.Since(r.savedAt) > time.Second {
		r.st.LastPos, save = pos, true
	}
	known := func(id string) bool {
		return id != "" && id != strings.Repeat("0", 40) && slices.Contains(r.st.Lineage, id)
	}
	if (ri.role == "slave" && ri.linkUp) || (ri.role == "master" && r.st.Epoch > 0 && !r.fenced) {
		if !known(ri.replid) {
			r.addLineage(ri.replid)
			save = true
		}
	}
	if ri.role == "slave" && ri.linkUp && !ri.syncing && r.st.Rejoining != "" {
		r.st.Rejoining, save = "", true
	}
	var why string
	switch {
	case ri.role == "slave" && ri.syncing:
		why = fmt.Sprintf("a full resynchronisation from %s:%d is in progress: the data here is the old dataset until it completes, so this member is not promotable meanwhile", ri.masterHost, ri.masterPort)
	case r.st.Rejoining != "" && ri.role == "slave":
		why = fmt.Sprintf("this old primary is rejoining as a replica of %s: until its replication link is up its data may hold writes the group discarded, so it is not promotable", r.st.Rejoining)
	case known(ri.replid) || known(ri.replid2):
	case len(r.st.Lineage) == 0:
		why = fmt.Sprintf("this dataset (replication id %s, offset %d) has not been part of the group's replication yet: it is never promoted while another member owns the group (--allow-data-loss overrides), and following the primary replaces it with a full copy", ri.replid, ri.offset)
	default:
		why = fmt.Sprintf("this dataset (replication id %s, replid2 %s) is not on the group's replication history (last id %s): a different dataset (restored, or restarted without persistence); it is never promoted while another member owns the group (--allow-data-loss overrides), and following the primary replaces it with a full copy",
			ri.replid, ri.replid2, r.st.Lineage[len(r.st.Lineage)-1])
	}
	if why != r.unrelated {
		if why != "" {
			r.log.Warn("redis dataset unrelated to the group", "why", why)
		} else if r.unrelated != "" {
			r.log.Info("redis dataset is on the group's replication history again", "replid", ri.replid)
		}
		r.unrelated = why
	}
	if save {
		r.saveLocked()
	}
	return why
}

func (r *Redis) addLineage(id string) {
	if id == "" || slices.Contains(r.st.Lineage, id) {
		return
	}
	r.st.Lineage = append(r.st.Lineage, id)
	if len(r.st.Lineage) > redisLineageMax {
		r.st.Lineage = r.st.Lineage[len(r.st.Lineage)-redisLineageMax:]
	}
}

// saveLocked writes the state file (smu held); a failure is logged, the next change retries.
func (r *Redis) saveLocked() {
	r.savedAt = time.Now()
	b, _ := json.Marshal(r.st)
	if err := os.MkdirAll(r.dataDir, 0o750); err != nil {
		r.log.Warn("writing the driver state file", "file", r.stateFile, "err", err)
		return
	}
	tmp := r.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		r.log.Warn("writing the driver state file", "file", r.stateFile, "err", err)
		return
	}
	if err := os.Rename(tmp, r.stateFile); err != nil {
		r.log.Warn("writing the driver state file", "file", r.stateFile, "err", err)
	}
}

func (r *Redis) update(change func(*redisState)) {
	r.smu.Lock()
	defer r.smu.Unlock()
	change(&r.st)
	r.saveLocked()
}

// ensureDataDir creates the data dir (0750, owned by os_user).
func (r *Redis) ensureDataDir() error {
	if err := os.MkdirAll(r.dataDir, 0o750); err != nil {
		return fmt.Errorf("%w: driver.data_dir %s: %v", ErrDataDirOwner, r.dataDir, err)
	}
	if err := r.user.chown(r.dataDir); err != nil {
		return fmt.Errorf("%w: driver.data_dir %s: %v", ErrDataDirOwner, r.dataDir, err)
	}
	return nil
}

// renderConf is the managed server's config: everything Baton needs, fenced; an operator's redis.local.conf in
// the data dir (when present) is included first, so these settings win.
func (r *Redis) renderConf(primary *Peer) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by baton at every start of the server it manages; edit redis.local.conf beside it instead.\n")
	if _, err := os.Stat(filepath.Join(r.dataDir, "redis.local.conf")); err == nil {
		fmt.Fprintf(&b, "include %s\n", filepath.Join(r.dataDir, "redis.local.conf"))
	}
	bind := "* -::*"
	if l := strings.TrimSpace(r.opts.ListenAddresses); l != "" && l != "*" {
		bind = strings.ReplaceAll(l, ",", " ")
	}
	fmt.Fprintf(&b, "port %d\nbind %s\nprotected-mode no\ndaemonize yes\npidfile %s\nlogfile %s\ndir %s\n", r.port, bind, r.pidFile, r.logFile, r.dataDir)
	b.WriteString("replica-read-only yes\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n")
	fmt.Fprintf(&b, "min-replicas-to-write %s\nmin-replicas-max-lag %s\n", redisFenceReplicas, redisMaxLag)
	fmt.Fprintf(&b, "replica-announce-ip %s\nreplica-announce-port %d\n", r.self.Host, r.self.Port)
	if r.super != nil {
		pw, err := r.super.password()
		if err != nil {
			return "", err
		}
		if r.super.user == "default" {
			fmt.Fprintf(&b, "requirepass %s\n", quoteRedis(pw))
		} else {
			fmt.Fprintf(&b, "user %s on %s ~* &* +@all\n", r.super.user, quoteRedis(">"+pw))
		}
	}
	if r.repl != nil {
		pw, err := r.repl.password()
		if err != nil {
			return "", err
		}
		if r.repl != r.super && r.repl.user != "default" {
			fmt.Fprintf(&b, "user %s on %s +psync +replconf +ping\n", r.repl.user, quoteRedis(">"+pw))
		}
		if r.repl.user != "default" {
			fmt.Fprintf(&b, "masteruser %s\n", r.repl.user)
		}
		fmt.Fprintf(&b, "masterauth %s\n", quoteRedis(pw))
	}
	if primary != nil {
		fmt.Fprintf(&b, "replicaof %s %d\n", primary.Host, primary.Port)
	}
	return b.String(), nil
}

// quoteRedis quotes s for a redis.conf line.
func quoteRedis(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

// start runs the managed server (fenced; a replica of primary when given) and waits until it answers.
func (r *Redis) start(ctx context.Context, primary *Peer) error {
	if err := r.ensureDataDir(); err != nil {
		return err
	}
	conf, err := r.renderConf(primary)
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.confFile, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", r.confFile, err)
	}
	if err := r.user.chown(r.confFile); err != nil {
		return err
	}
	f, err := os.OpenFile(r.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("server log %s: %w; set a writable log file", r.logFile, err)
	}
	f.Close()
	if err := r.user.chown(r.logFile); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := run(ctx, r.user, 30*time.Second, baseEnv(r.user), r.bin, r.confFile); err != nil {
		return fmt.Errorf("starting %s %s: %w; server log %s", r.bin, r.confFile, err, r.logFile)
	}
	for {
		up, err := r.running(ctx)
		if up && err == nil {
			break
		}
		if err != nil && !strings.Contains(err.Error(), "LOADING") {
			return err
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("redis-server did not answer on %s after start: %w; server log %s ends: %s", r.addr(), err, r.logFile, r.logTail())
		}
	}
	r.log.Info("redis started", "port", r.port, "data_dir", r.dataDir, "took", time.Since(t0), "replica_of", primary)
	return nil
}

func (r *Redis) logTail() string {
	b, err := os.ReadFile(r.logFile)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], " | ")
}

// ensureRunning starts the managed server when nothing answers; an adopted one must be usable.
func (r *Redis) ensureRunning(ctx context.Context, primary *Peer) error {
	up, err := r.running(ctx)
	if err != nil {
		return err
	}
	if !up {
		if err := r.start(ctx, primary); err != nil {
			return err
		}
	}
	return r.checkServer(ctx)
}

// checkServer refuses a server Baton cannot run safely.
func (r *Redis) checkServer(ctx context.Context) error {
	v, err := r.client(&r.adminC).Do(ctx, "CONFIG", "GET", "replica-read-only")
	if err != nil {
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	got := ""
	if a, ok := v.([]any); ok && len(a) == 2 {
		got, _ = a[1].(string)
	}
	if got != "yes" {
		return fmt.Errorf("%w: the local Redis at %s has replica-read-only %q: a replica would accept writes that its next resync silently discards; set replica-read-only yes in its config", ErrConfig, r.addr(), got)
	}
	return nil
}

// configRewrite persists the running settings when the server was adopted from a config file of its own that
// it can write (the managed server's file is rewritten by the driver at every start instead).
func (r *Redis) configRewrite(ctx context.Context, c *respClient) {
	v, err := c.Do(ctx, "INFO", "server")
	info, _ := v.(string)
	if err != nil {
		return
	}
	var file string
	for line := range strings.SplitSeq(info, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == "config_file" {
			file = val
		}
	}
	if file == "" || file == r.confFile {
		return
	}
	if _, err := c.Do(ctx, "CONFIG", "REWRITE"); err != nil {
		r.log.Warn("CONFIG REWRITE failed; the setting holds until the server restarts", "config_file", file, "err", err)
	}
}

// Bootstrap makes this node the first primary (primary == nil; still fenced until Promote) or a replica of
// primary.
func (r *Redis) Bootstrap(ctx context.Context, primary *Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpBootstrap))
	defer cancel()
	if primary != nil {
		return r.follow(ctx, *primary)
	}
	return r.ensureRunning(ctx, nil)
}

// Promote makes this node the primary under epoch: REPLICAOF NO ONE when it is a replica (after catching up
// with the old primary when that still answers and is fenced: a planned switchover loses nothing), then the
// sync setting instead of the fence, then CLIENT UNPAUSE.
func (r *Redis) Promote(ctx context.Context, epoch uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpPromote))
	defer cancel()
	if err := r.ensureRunning(ctx, nil); err != nil {
		return err
	}
	c := r.client(&r.adminC)
	t0 := time.Now()
	ri, err := r.info(ctx, c)
	if err != nil {
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	if ri.role == "slave" {
		r.catchUp(ctx, c, ri)
		if _, err := c.Do(ctx, "REPLICAOF", "NO", "ONE"); err != nil {
			return fmt.Errorf("promote: REPLICAOF NO ONE: %w", r.explain(err, "the local Redis", r.addr(), r.super))
		}
	}
	r.smu.Lock()
	minRep := r.minReplicasLocked()
	r.smu.Unlock()
	if err := pipeline(ctx, c, []string{"CONFIG", "SET", "min-replicas-max-lag", redisMaxLag},
		[]string{"CONFIG", "SET", "min-replicas-to-write", minRep}, []string{"CLIENT", "UNPAUSE"}); err != nil {
		return fmt.Errorf("promote: lifting the fence: %w", r.explain(err, "the local Redis", r.addr(), r.super))
	}
	ri, err = r.info(ctx, c)
	if err != nil {
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	r.smu.Lock()
	r.fenced = false
	r.st.Epoch, r.st.Primary, r.st.Rejoining = max(r.st.Epoch, epoch), nil, ""
	r.addLineage(ri.replid2)
	r.addLineage(ri.replid)
	r.saveLocked()
	r.smu.Unlock()
	r.log.Info("promoted", "epoch", epoch, "took", time.Since(t0), "replid", ri.replid, "offset", ri.offset, "min_replicas_to_write", minRep)
	r.configRewrite(ctx, c)
	_, err = r.client(&r.fence).Do(ctx, "PING") // ready for a quick Fence
	return err
}

// minReplicasLocked is min-replicas-to-write for the current sync setting.
func (r *Redis) minReplicasLocked() string {
	if len(r.st.Sync) > 0 || r.st.Strict {
		return "1"
	}
	return "0"
}

// catchUp waits (at most a second) until this replica has everything its primary has, when the primary still
// answers: its offset does not move once it is fenced (CLIENT PAUSE WRITE also stops its pings), so a planned
// switchover promotes a replica that lacks nothing. An unreachable primary (a failover) costs one short dial.
func (r *Redis) catchUp(ctx context.Context, c *respClient, ri replInfo) {
	if !ri.linkUp || ri.masterHost == "" {
		return
	}
	pc := newRESPClient(joinHostPort(ri.masterHost, ri.masterPort), r.super, 50*time.Millisecond, 100*time.Millisecond)
	defer pc.Close()
	pri, err := r.info(ctx, pc)
	if err != nil || pri.role != "master" {
		return
	}
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		cur, err := r.info(wctx, c)
		if err != nil {
			return
		}
		if cur.offset >= pri.offset {
			r.log.Info("caught up with the old primary before promotion", "offset", cur.offset, "waited", time.Since(t0))
			return
		}
		if sleepCtx(wctx, time.Millisecond) != nil {
			r.log.Warn("did not catch up with the old primary within 1s; promoting anyway", "have", cur.offset, "old_primary", pri.offset)
			return
		}
	}
}

// pipeline runs cmds at once; the first error reply is the error.
func pipeline(ctx context.Context, c *respClient, cmds ...[]string) error {
	res, err := c.Pipeline(ctx, cmds...)
	if err != nil {
		return err
	}
	for i, v := range res {
		if e, ok := v.(respError); ok {
			return fmt.Errorf("%s: %w", strings.Join(cmds[i][:min(2, len(cmds[i]))], " "), e)
		}
	}
	return nil
}

func (r *Redis) pwOf(c *credential) string {
	if c == nil {
		return ""
	}
	pw, _ := c.password()
	return pw
}

// Follow makes this node a replica of primary: it checks that primary answers as a Redis primary with the
// replication credentials, then REPLICAOF, and waits until the link is up (a full copy done, when one is needed).
func (r *Redis) Follow(ctx context.Context, primary Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpFollow))
	defer cancel()
	return r.follow(ctx, primary)
}

func (r *Redis) follow(ctx context.Context, primary Peer) error {
	if primary.Node == r.opts.Node {
		return fmt.Errorf("%w: cannot follow %s: that is this node", ErrConfig, primary.Node)
	}
	if err := r.ensureRunning(ctx, &primary); err != nil {
		return err
	}
	c := r.client(&r.adminC)
	ri, err := r.info(ctx, c)
	if err != nil {
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	if ri.role == "slave" && ri.linkUp && ri.masterHost == primary.Host && ri.masterPort == primary.Port {
		return nil // the agent calls Follow on every pass; this is the common case
	}
	if err := r.checkPrimary(ctx, primary); err != nil {
		return err
	}
	t0 := time.Now()
	var cmds [][]string
	if r.repl != nil {
		if r.repl.user != "default" {
			cmds = append(cmds, []string{"CONFIG", "SET", "masteruser", r.repl.user})
		}
		cmds = append(cmds, []string{"CONFIG", "SET", "masterauth", r.pwOf(r.repl)})
	}
	cmds = append(cmds, []string{"CONFIG", "SET", "replica-announce-ip", r.self.Host},
		[]string{"CONFIG", "SET", "replica-announce-port", strconv.Itoa(r.self.Port)},
		[]string{"CONFIG", "SET", "min-replicas-to-write", redisFenceReplicas}) // if anything promotes it behind Baton's back
	if !(ri.role == "slave" && ri.masterHost == primary.Host && ri.masterPort == primary.Port) {
		cmds = append(cmds, []string{"REPLICAOF", primary.Host, strconv.Itoa(primary.Port)})
	}
	cmds = append(cmds, []string{"CLIENT", "UNPAUSE"})
	if err := pipeline(ctx, c, cmds...); err != nil {
		return fmt.Errorf("follow %s: %w", primary.Node, r.explain(err, "the local Redis", r.addr(), r.super))
	}
	r.smu.Lock()
	r.fenced = true // a replica acknowledges no writes; Promote lifts the write fence
	r.st.Primary = &primary
	if ri.role == "master" {
		r.st.Rejoining = primary.Node
	}
	r.saveLocked()
	r.smu.Unlock()
	for {
		cur, err := r.info(ctx, c)
		if err == nil && cur.role == "slave" && cur.linkUp {
			r.lineage(cur)
			break
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("%w: following %s at %s: the replication link did not come up: %v; the local server log %s ends: %s",
				ErrPrimaryUnreachable, primary.Node, primary.addr(), err, r.logFile, r.logTail())
		}
	}
	r.log.Info("following", "primary", primary.Node, "addr", primary.addr(), "took", time.Since(t0))
	r.configRewrite(ctx, c)
	return nil
}

// checkPrimary connects to primary as a replica will and names what is wrong: the password, the port, a server
// that is not Redis, one that is not a primary.
func (r *Redis) checkPrimary(ctx context.Context, primary Peer) error {
	pc := newRESPClient(primary.addr(), r.repl, 2*time.Second, 5*time.Second)
	defer pc.Close()
	who := "primary " + primary.Node
	if _, err := pc.Do(ctx, "PING"); err != nil {
		return r.explain(err, who, primary.addr(), r.repl)
	}
	v, err := pc.Do(ctx, "ROLE")
	role, _ := v.([]any)
	if err != nil {
		if strings.Contains(err.Error(), "NOPERM") {
			return nil // a replication-only ACL user may not run ROLE; PSYNC will tell
		}
		return r.explain(err, who, primary.addr(), r.repl)
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("%w: %s at %s is not a primary (ROLE says %v); it may still be promoting", ErrPrimaryUnreachable, who, primary.addr(), role)
	}
	return nil
}

// SetSync sets min-replicas-to-write: 1 when standbys are named (sync: on | strict) or strict, else 0. Redis cannot
// name which replica must have a write: see the package README for what that means for clients (WAIT).
func (r *Redis) SetSync(ctx context.Context, standbys []string, strict bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpSetSync))
	defer cancel()
	names := slices.DeleteFunc(slices.Clone(standbys), func(n string) bool { return n == r.opts.Node })
	slices.Sort(names)
	names = slices.Compact(names)
	r.smu.Lock()
	r.st.Sync, r.st.Strict = names, strict
	r.saveLocked()
	minRep, fenced := r.minReplicasLocked(), r.fenced
	r.smu.Unlock()
	if fenced {
		return nil // Promote applies it
	}
	if _, err := r.client(&r.adminC).Do(ctx, "CONFIG", "SET", "min-replicas-to-write", minRep); err != nil {
		if strings.Contains(err.Error(), "connection refused") {
			return nil
		}
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	return nil
}

// Fence stops the server acknowledging writes, at once: min-replicas-to-write at its maximum (every write fails
// with NOREPLICAS), CLIENT PAUSE WRITE on a primary (scripts and expiry stop too, and the offset stops moving), and
// every normal and pub/sub client connection killed so blocked clients learn at once. Replicas keep their link and
// receive what this node has. A server that does not answer is killed (managed servers; SIGKILL by its pid file).
func (r *Redis) Fence(ctx context.Context) error {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpFence))
	defer cancel()
	r.smu.Lock()
	r.fenced = true
	r.smu.Unlock()
	c := r.client(&r.fence)
	res, err := c.Pipeline(ctx, []string{"CONFIG", "SET", "min-replicas-to-write", redisFenceReplicas}, []string{"ROLE"})
	if err == nil {
		if e, ok := res[0].(respError); ok {
			err = e
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "connection refused") {
			return nil // not running: nothing acknowledges writes
		}
		return r.fenceByKill(err)
	}
	if role, _ := res[1].([]any); len(role) > 0 && role[0] == "master" {
		// Not on a replica: a paused replica would also hold back the stream from its primary.
		if err := pipeline(ctx, c, []string{"CLIENT", "PAUSE", redisPauseMs, "WRITE"},
			[]string{"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"},
			[]string{"CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes"}); err != nil {
			return r.fenceByKill(err)
		}
	}
	r.log.Info("fenced", "took", time.Since(t0))
	return nil
}

// fenceByKill stops a managed server that did not take the fence (SIGKILL: it must not acknowledge anything).
func (r *Redis) fenceByKill(cause error) error {
	pid := r.serverPID()
	if pid == 0 {
		return fmt.Errorf("fence: %w, and there is no pid file %s to stop the server by: stop it yourself", cause, r.pidFile)
	}
	r.log.Warn("fence through commands failed; killing the server", "err", cause, "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("fence: %v, and killing pid %d failed too: %w", cause, pid, err)
	}
	return nil
}

func (r *Redis) serverPID() int {
	b, err := os.ReadFile(r.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !alive(pid) {
		return 0
	}
	return pid
}

// Stop shuts the server down (SHUTDOWN: an RDB snapshot is written when persistence is configured) and waits
// for it to exit.
func (r *Redis) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(r.opts, OpStop))
	defer cancel()
	pid := r.serverPID()
	r.smu.Lock()
	r.saveLocked()
	r.smu.Unlock()
	_, err := r.client(&r.adminC).Do(ctx, "SHUTDOWN")
	if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "connection refused") && !strings.Contains(err.Error(), "reset") {
		return r.explain(err, "the local Redis", r.addr(), r.super)
	}
	r.Close()
	if pid != 0 {
		if err := waitExit(ctx, pid); err != nil {
			return fmt.Errorf("redis-server %d did not exit: %w", pid, err)
		}
	}
	r.log.Info("redis stopped", "port", r.port)
	return nil
}
