package driver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/baton-ha/baton/internal/config"
)

// Postgres drives a PostgreSQL server (13 or later; tested with 15) on the local node: pg_ctl, initdb,
// pg_basebackup and pg_rewind from bin_dir run as os_user; SQL goes over TCP to the local server as the superuser.
//
// Every setting the driver manages lives in postgresql.baton.conf in the data dir (included from
// postgresql.conf) and is rewritten whole on each change: port and listen addresses, wal_log_hints (for pg_rewind),
// synchronous_standby_names, the fence, and on a standby primary_conninfo (application_name = node name) and
// primary_slot_name (baton_<node>). Everything else in postgresql.conf stays the operator's.
//
// Close releases the driver's connections; the server keeps running.
type Postgres struct {
	binDir, dataDir, logFile string
	socketDir, listen        string
	sslMode, sslRootCert     string   // driver.ssl_mode (default config.DefaultSSLMode), driver.ssl_root_cert
	clientNetworks           []string // driver.client_networks, as prefixes
	localHost                string   // where the agent connects to its own server
	port, major              int
	super, repl              credential
	opts                     Options
	user                     osUser
	log                      *slog.Logger

	mu sync.Mutex // serialises Bootstrap, Promote, Follow, SetSync and Stop
	// syncPending (under mu): synchronous_standby_names went from empty to naming a standby and the checkpointer
	// has not been seen to put it in force yet (awaitSyncRepInForce).
	syncPending bool

	smu sync.Mutex // guards set and the managed settings file
	set settings

	stateConn, adminConn, fenceConn connSlot
}

var _ Driver = (*Postgres)(nil)

// credential is a database user and where its password is.
type credential struct {
	user, passwordFile, field string // field: the config path, for errors
}

func (c credential) password() (string, error) {
	// The same rules as for the cluster secret: a password others can read, or rewrite, is refused.
	b, err := config.ReadSecretFile(c.passwordFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: %s.password_file: %v; create it holding %s's password (mode 0600)", ErrConfig, c.field, err, c.user)
	case err != nil:
		return "", fmt.Errorf("%w: %s.password_file: %v (it holds %s's password)", ErrConfig, c.field, err, c.user)
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%w: %s.password_file %s is empty; write %s's password into it", ErrConfig, c.field, c.passwordFile, c.user)
	}
	return pw, nil
}

// pgTools are the programs the driver runs; bin_dir must hold them all.
var pgTools = []string{"pg_ctl", "initdb", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata"}

// NewPostgres checks the configuration (binaries, os user, credentials) and builds the driver. It does not touch
// the data dir or the server.
func NewPostgres(cfg *config.Driver, opts Options) (*Postgres, error) {
	if opts.Node == "" {
		return nil, fmt.Errorf("%w: no node name; standbys stream under it (application_name, slot)", ErrConfig)
	}
	p := &Postgres{binDir: cfg.BinDir, dataDir: cfg.DataDir, port: cfg.Port, opts: opts, log: discardLogger(opts.Logger)}
	if p.port == 0 {
		p.port = 5432
	}
	if p.dataDir == "" || !filepath.IsAbs(p.dataDir) {
		return nil, fmt.Errorf("%w: driver.data_dir %q: need an absolute path, e.g. /var/lib/baton/pg", ErrConfig, p.dataDir)
	}
	p.dataDir = filepath.Clean(p.dataDir)
	if err := p.findBinDir(); err != nil {
		return nil, err
	}
	osUserName := cfg.OSUser
	if osUserName == "" {
		osUserName = "postgres"
	}
	var err error
	if p.user, err = lookupOSUser(osUserName); err != nil {
		return nil, err
	}
	if p.user.uid == 0 {
		return nil, fmt.Errorf("%w: driver.os_user %s is root; PostgreSQL refuses to run as root: use the postgres account", ErrConfig, p.user.name)
	}
	for _, c := range []struct {
		cfg   *config.Credential
		dst   *credential
		field string
		eg    string
	}{
		{cfg.Superuser, &p.super, "driver.superuser", "{user: postgres, password_file: /etc/baton/pg.pass}"},
		{cfg.Replication, &p.repl, "driver.replication", "{user: replicator, password_file: /etc/baton/repl.pass}"},
	} {
		if c.cfg == nil || c.cfg.User == "" || c.cfg.PasswordFile == "" {
			return nil, fmt.Errorf("%w: %s: need a user and a password_file, e.g. %s", ErrConfig, c.field, c.eg)
		}
		*c.dst = credential{user: c.cfg.User, passwordFile: c.cfg.PasswordFile, field: c.field}
		if _, err := c.dst.password(); err != nil {
			return nil, err
		}
	}
	p.sslMode, p.sslRootCert = cmp.Or(cfg.SSLMode, config.DefaultSSLMode), cfg.SSLRootCert
	for i, n := range cfg.ClientNetworks {
		pr, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("%w: driver.client_networks[%d]: %q is not a network (e.g. 10.0.0.0/24)", ErrConfig, i, n)
		}
		p.clientNetworks = append(p.clientNetworks, pr.Masked().String())
	}
	if !slices.Contains(config.SSLModes, p.sslMode) {
		return nil, fmt.Errorf("%w: driver.ssl_mode %q is not an sslmode; use one of %s", ErrConfig, p.sslMode, strings.Join(config.SSLModes, ", "))
	}
	p.listen = opts.ListenAddresses
	if p.listen == "" {
		p.listen = "*"
	}
	p.localHost = "127.0.0.1"
	if first, _, _ := strings.Cut(p.listen, ","); !slices.Contains([]string{"*", "0.0.0.0", "127.0.0.1", "localhost", "::", "::1"}, strings.TrimSpace(first)) {
		p.localHost = strings.TrimSpace(first)
	}
	p.socketDir = opts.SocketDir
	if p.socketDir == "" {
		p.socketDir = p.dataDir
		if fi, err := os.Stat("/var/run/postgresql"); err == nil && fi.IsDir() {
			p.socketDir = "/var/run/postgresql"
		}
	}
	p.set = p.loadSettings()
	// The generation only grows, also across agent restarts, so a reload is never confirmed by an older file.
	p.set.generation = uint64(time.Now().UnixNano())
	p.logFile = opts.LogFile
	if p.logFile == "" {
		p.logFile = p.dataDir + ".log"
	}
	return p, nil
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// findBinDir checks bin_dir (default: the newest /usr/lib/postgresql/*/bin) and the server's major version.
func (p *Postgres) findBinDir() error {
	if p.binDir == "" {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		slices.SortFunc(dirs, func(a, b string) int {
			va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
			vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
			return va - vb
		})
		if len(dirs) == 0 {
			return fmt.Errorf("%w: driver.bin_dir is not set and no /usr/lib/postgresql/*/bin exists; install PostgreSQL (Debian: apt-get install postgresql) or set bin_dir to the directory holding pg_ctl", ErrConfig)
		}
		p.binDir = dirs[len(dirs)-1]
	}
	if fi, err := os.Stat(p.binDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: driver.bin_dir %s does not exist; install PostgreSQL (Debian: apt-get install postgresql-15) or set bin_dir to the directory holding pg_ctl, e.g. /usr/lib/postgresql/15/bin", ErrConfig, p.binDir)
	}
	for _, t := range pgTools {
		if fi, err := os.Stat(p.bin(t)); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: driver.bin_dir %s has no %s; set bin_dir to the directory holding the PostgreSQL server binaries, e.g. /usr/lib/postgresql/15/bin", ErrConfig, p.binDir, t)
		}
	}
	out, err := run(context.Background(), osUser{}, 10*time.Second, nil, p.bin("pg_ctl"), "--version")
	if err != nil {
		return fmt.Errorf("%w: %s --version: %v", ErrConfig, p.bin("pg_ctl"), err)
	}
	m := versionRE.FindSubmatch(out.stdout)
	if m == nil {
		return fmt.Errorf("%w: %s --version printed %q, not a PostgreSQL version", ErrConfig, p.bin("pg_ctl"), strings.TrimSpace(string(out.stdout)))
	}
	p.major, _ = strconv.Atoi(string(m[1]))
	if p.major < 13 {
		return fmt.Errorf("%w: driver.bin_dir %s is PostgreSQL %d; the driver needs 13 or later (reloadable primary_conninfo, pg_rewind that recovers a crashed target)", ErrConfig, p.binDir, p.major)
	}
	return nil
}

func (p *Postgres) bin(tool string) string { return filepath.Join(p.binDir, tool) }

// pgRun runs a PostgreSQL tool as the os user.
func (p *Postgres) pgRun(ctx context.Context, timeout time.Duration, env []string, tool string, args ...string) (cmdResult, error) {
	res, err := run(ctx, p.user, timeout, append(baseEnv(p.user), env...), append([]string{p.bin(tool)}, args...)...)
	if err != nil {
		return res, fmt.Errorf("%s: %w", tool, err)
	}
	return res, nil
}

// update changes the desired settings and rewrites the managed file; it returns the new generation.
func (p *Postgres) update(change func(*settings)) (uint64, error) {
	p.smu.Lock()
	defer p.smu.Unlock()
	change(&p.set)
	p.set.generation++
	pw := ""
	if p.set.primary != nil {
		var err error
		if pw, err = p.repl.password(); err != nil {
			return 0, err
		}
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "PG_VERSION")); err != nil {
		return p.set.generation, nil // no cluster yet: the file is written once there is one
	}
	if err := p.writeFileAs(filepath.Join(p.dataDir, batonConf), []byte(p.renderConf(p.set, pw))); err != nil {
		return 0, fmt.Errorf("writing %s: %w", filepath.Join(p.dataDir, batonConf), err)
	}
	return p.set.generation, nil
}

// setStandbySignal creates or removes standby.signal (PostgreSQL deletes it itself on promotion).
func (p *Postgres) setStandbySignal(on bool) error {
	path := filepath.Join(p.dataDir, "standby.signal")
	os.Remove(filepath.Join(p.dataDir, "recovery.signal"))
	if !on {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return p.writeFileAs(path, nil)
}

// start starts the server and waits until it accepts connections (a standby: until it is consistent).
func (p *Postgres) start(ctx context.Context) error {
	if p.running() {
		return nil
	}
	f, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("server log %s: %w; set a writable log file", p.logFile, err)
	}
	f.Close()
	if err := p.user.chown(p.logFile); err != nil {
		return fmt.Errorf("server log %s: %w", p.logFile, err)
	}
	wait := 600
	if dl, ok := ctx.Deadline(); ok {
		wait = max(1, int(time.Until(dl).Seconds()))
	}
	t0 := time.Now()
	if _, err := p.pgRun(ctx, 0, nil, "pg_ctl", "start", "-D", p.dataDir, "-l", p.logFile, "-w", "-t", strconv.Itoa(wait), "-s"); err != nil {
		return fmt.Errorf("%w; server log %s ends: %s", err, p.logFile, p.logTail(4))
	}
	p.log.Info("postgres started", "data_dir", p.dataDir, "port", p.port, "took", time.Since(t0))
	return nil
}

// stop shuts the server down: fast (clean: clients are disconnected, a checkpoint is written), immediate if that
// does not finish within the stop timeout. It signals the postmaster itself rather than through pg_ctl, which
// polls only every 100 ms.
func (p *Postgres) stop(ctx context.Context) error {
	p.closeConns()
	pid := p.postmasterPID()
	if pid == 0 {
		return nil
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping postmaster %d: %w", pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, timeoutFor(p.opts, OpStop))
	err := waitExit(wctx, pid)
	cancel()
	if err != nil {
		p.log.Warn("fast stop did not finish; stopping immediately", "err", err)
		return p.kill(ctx)
	}
	p.log.Info("postgres stopped", "data_dir", p.dataDir, "took", time.Since(t0))
	return nil
}

// kill stops the server immediately (SIGQUIT to the postmaster: no checkpoint; crash recovery on the next start).
func (p *Postgres) kill(ctx context.Context) error {
	pid := p.postmasterPID()
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("immediate stop of postmaster %d: %w", pid, err)
	}
	return waitExit(ctx, pid)
}

// Close releases the driver's database connections. The server keeps running.
func (p *Postgres) Close() error {
	p.closeConns()
	return nil
}

func (p *Postgres) closeConns() {
	for _, s := range []*connSlot{&p.stateConn, &p.adminConn, &p.fenceConn} {
		s.close()
	}
}

// State reports role and position: from the server when it runs, from pg_control when it does not.
func (p *Postgres) State(ctx context.Context) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(p.opts, OpState))
	defer cancel()
	if !p.running() {
		if ok, err := p.hasCluster(); err != nil || !ok {
			return State{Role: RoleStopped}, err
		}
		pos, err := p.controlPosition(ctx)
		return State{Role: RoleStopped, Pos: pos}, err
	}
	var st State
	err := p.with(ctx, &p.stateConn, func(c *pgx.Conn) error {
		var err error
		st, err = p.queryState(ctx, c)
		return err
	})
	if err != nil {
		return State{Role: RoleUnknown}, err
	}
	return st, nil
}

// Bootstrap makes this node the first primary (primary == nil) or a standby of primary.
func (p *Postgres) Bootstrap(ctx context.Context, primary *Peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkDataDir(); err != nil {
		return err
	}
	if primary != nil {
		return p.follow(ctx, *primary)
	}
	return p.bootstrapPrimary(ctx)
}

func (p *Postgres) bootstrapPrimary(ctx context.Context) error {
	if _, err := p.super.password(); err != nil {
		return err
	}
	ok, err := p.hasCluster()
	if err != nil {
		return err
	}
	if !ok {
		if err := p.initdb(ctx); err != nil {
			return err
		}
	}
	if err := p.ensureInclude(); err != nil {
		return err
	}
	gen, err := p.update(func(s *settings) { s.primary, s.fenced = nil, false })
	if err != nil {
		return err
	}
	if p.running() {
		// An agent restart finds its server up: apply the settings, restarting for those that need it.
		if err := p.reloadAndWait(ctx, &p.adminConn, gen); err != nil {
			return err
		}
		if err := p.restartIfPending(ctx); err != nil {
			return err
		}
		if err := p.promote(ctx, p.currentEpoch()); err != nil {
			return err
		}
	} else {
		if err := p.setStandbySignal(false); err != nil {
			return err
		}
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	if err := p.ensureReplicationRole(ctx); err != nil {
		return err
	}
	if err := p.ensureSlots(ctx); err != nil {
		return err
	}
	return p.with(ctx, &p.fenceConn, func(c *pgx.Conn) error { return c.Ping(ctx) }) // ready for a quick Fence
}

func (p *Postgres) currentEpoch() uint64 {
	p.smu.Lock()
	defer p.smu.Unlock()
	return p.set.epoch
}

// initdb creates a cluster in the (empty) data dir with the superuser's password, scram authentication over TCP,
// and pg_hba entries for the replication user and the superuser (pg_rewind, the agents' SQL) from the members'
// addresses only (hostssl when ssl_mode requires encryption: the server then refuses what the clients would).
func (p *Postgres) initdb(ctx context.Context) error {
	pw, err := p.super.password()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "baton-initdb-pw-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(pw + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.user.chown(f.Name())
	}
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := p.pgRun(ctx, 10*time.Minute, nil, "initdb", "-D", p.dataDir, "-U", p.super.user, "--pwfile="+f.Name(),
		"--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"); err != nil {
		return fmt.Errorf("creating a cluster in %s: %w", p.dataDir, err)
	}
	hba := filepath.Join(p.dataDir, "pg_hba.conf")
	b, err := os.ReadFile(hba)
	if err != nil {
		return err
	}
	b = append(b, p.hbaLines()...)
	if err := p.writeFileAs(hba, b); err != nil {
		return err
	}
	p.log.Info("initdb done", "data_dir", p.dataDir, "took", time.Since(t0))
	return nil
}

// hbaLines are the pg_hba.conf lines initdb's cluster gets: the replication user and the superuser, with scram,
// from each member's address (a /32 or /128; loopback is admitted by initdb's own lines).
func (p *Postgres) hbaLines() []byte {
	typ := "host"
	if slices.Index(config.SSLModes, p.sslMode) >= slices.Index(config.SSLModes, "require") {
		typ = "hostssl"
	}
	var b []byte
	b = fmt.Appendf(b, "\n# Added by baton: standbys stream as %s; pg_rewind and the agents connect as %s; from the members' addresses only.\n", p.repl.user, p.super.user)
	for _, a := range p.opts.MemberAddresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue // a name, not an address: the operator adds its line
		}
		cidr := netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()).String()
		b = fmt.Appendf(b, "%s\treplication\t%s\t%s\tscram-sha-256\n%s\tall\t%s\t%s\tscram-sha-256\n", typ, p.repl.user, cidr, typ, p.super.user, cidr)
	}
	if len(p.clientNetworks) > 0 {
		b = append(b, "# Added by baton: the application's clients (driver.client_networks).\n"...)
	}
	for _, n := range p.clientNetworks {
		b = fmt.Appendf(b, "host\tall\tall\t%s\tscram-sha-256\n", n)
	}
	return b
}

// sslParams are the conninfo keywords for a connection to another member: sslmode, and sslrootcert when set.
func (p *Postgres) sslParams() []string {
	kv := []string{"sslmode", p.sslMode}
	if p.sslRootCert != "" {
		kv = append(kv, "sslrootcert", p.sslRootCert)
	}
	return kv
}

// Promote makes this node the primary under epoch.
func (p *Postgres) Promote(ctx context.Context, epoch uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(p.opts, OpPromote))
	defer cancel()
	if ok, err := p.hasCluster(); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("%w: promote: data dir %s holds no cluster; Bootstrap this node first", ErrNotRunning, p.dataDir)
	}
	if !p.running() {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return p.promote(ctx, epoch)
}

// promote ends recovery (when in recovery), lifts the fence and records epoch; it returns once new transactions
// are writable.
func (p *Postgres) promote(ctx context.Context, epoch uint64) error {
	t0 := time.Now()
	var inRecovery bool
	err := p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return err
		}
		if !inRecovery {
			return nil
		}
		// Not pg_promote(wait => true): that polls every 100 ms.
		if _, err := c.Exec(ctx, "SELECT pg_promote(false)"); err != nil {
			return err
		}
		for inRecovery {
			if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
				return fmt.Errorf("waiting for the end of recovery: %w", err)
			}
			if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	recoveryEnded := time.Since(t0)
	gen, err := p.update(func(s *settings) {
		s.primary, s.fenced, s.epoch = nil, false, max(s.epoch, epoch)
		// A standby list set while this node was an earlier primary may name it; it cannot wait for itself.
		s.sync = slices.DeleteFunc(slices.Clone(s.sync), func(n string) bool { return n == p.opts.Node })
	})
	if err != nil {
		return err
	}
	if err := p.reloadAndWait(ctx, &p.adminConn, gen); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	p.log.Info("promoted", "epoch", epoch, "took", time.Since(t0), "recovery_ended_after", recoveryEnded)
	// Not needed for writes; done after them so the outage does not include it.
	if err := p.ensureSlots(ctx); err != nil {
		return err
	}
	return p.with(ctx, &p.fenceConn, func(c *pgx.Conn) error { return c.Ping(ctx) }) // ready for a quick Fence
}

// Follow makes this node a streaming standby of primary.
func (p *Postgres) Follow(ctx context.Context, primary Peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.checkDataDir(); err != nil {
		return err
	}
	return p.follow(ctx, primary)
}

func (p *Postgres) follow(ctx context.Context, primary Peer) error {
	if primary.Node == p.opts.Node {
		return fmt.Errorf("%w: cannot follow %s: that is this node", ErrConfig, primary.Node)
	}
	ok, err := p.hasCluster()
	if err != nil {
		return err
	}
	if !ok {
		return p.bootstrapStandby(ctx, primary)
	}
	if err := p.ensureInclude(); err != nil {
		return err
	}
	if p.running() && p.streamingFrom(ctx, primary) {
		return nil // the agent calls Follow on every pass; this is the common case
	}
	if err := p.ensureOwnSlot(ctx, primary); err != nil {
		return err
	}
	if p.running() {
		local, inRecovery, err := p.localPosition(ctx)
		if err != nil {
			return err
		}
		if inRecovery {
			diverged, err := p.diverged(ctx, primary, local)
			if err != nil {
				return err
			}
			if !diverged {
				gen, err := p.update(func(s *settings) { s.primary, s.fenced = &primary, false })
				if err != nil {
					return err
				}
				if err := p.reloadAndWait(ctx, &p.adminConn, gen); err != nil {
					return err
				}
				p.log.Info("following", "primary", primary.Node, "addr", primary.addr())
				return p.dropSlots(ctx)
			}
			p.log.Info("standby diverged from the new primary; rewinding", "primary", primary.Node, "local", local)
		}
		if err := p.stop(ctx); err != nil {
			return err
		}
	}
	if err := p.rewind(ctx, primary); err != nil {
		if !p.opts.AllowRebuild {
			return fmt.Errorf("%w: %v; the data dir is unchanged apart from what pg_rewind did. Fix: allow a rebuild from a fresh base backup (driver option allow_rebuild), or empty %s and bootstrap this node again",
				ErrRewind, err, p.dataDir)
		}
		p.log.Warn("pg_rewind failed; rebuilding from a fresh base backup", "err", err)
		if err := p.emptyDataDir(); err != nil {
			return err
		}
		return p.bootstrapStandby(ctx, primary)
	}
	return p.startStandby(ctx, primary)
}

func (p *Postgres) startStandby(ctx context.Context, primary Peer) error {
	if err := p.ensureInclude(); err != nil {
		return err
	}
	if _, err := p.update(func(s *settings) { s.primary, s.fenced = &primary, false }); err != nil {
		return err
	}
	if err := p.setStandbySignal(true); err != nil {
		return err
	}
	if err := p.start(ctx); err != nil {
		return err
	}
	p.log.Info("following", "primary", primary.Node, "addr", primary.addr())
	return p.dropSlots(ctx)
}

// bootstrapStandby fills the empty data dir with a base backup of primary and starts streaming.
func (p *Postgres) bootstrapStandby(ctx context.Context, primary Peer) error {
	if err := p.ensureOwnSlot(ctx, primary); err != nil {
		return err
	}
	pw, err := p.repl.password()
	if err != nil {
		return err
	}
	passfile, cleanup, err := p.tempPassfile(p.repl, pw)
	if err != nil {
		return err
	}
	defer cleanup()
	t0 := time.Now()
	_, err = p.pgRun(ctx, timeoutFor(p.opts, OpBootstrap), []string{"PGPASSFILE=" + passfile}, "pg_basebackup",
		"-D", p.dataDir, "-X", "stream", "-c", "fast", "-S", slotName(p.opts.Node), "-w",
		"-d", conninfo(append([]string{"host", primary.Host, "port", strconv.Itoa(primary.Port), "user", p.repl.user,
			"application_name", p.opts.Node + "-basebackup", "connect_timeout", "5"}, p.sslParams()...)...))
	if err != nil {
		return p.explainConnError(err, primary, p.repl, "base backup")
	}
	p.log.Info("base backup done", "primary", primary.Node, "took", time.Since(t0))
	return p.startStandby(ctx, primary)
}

// rewind runs pg_rewind against primary; it needs the server stopped.
func (p *Postgres) rewind(ctx context.Context, primary Peer) error {
	pw, err := p.super.password()
	if err != nil {
		return err
	}
	passfile, cleanup, err := p.tempPassfile(p.super, pw)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := p.checkpointIfPromoted(ctx, primary); err != nil {
		return err
	}
	t0 := time.Now()
	res, err := p.pgRun(ctx, timeoutFor(p.opts, OpFollow), []string{"PGPASSFILE=" + passfile}, "pg_rewind",
		"-D", p.dataDir, "--source-server="+conninfo(append([]string{"host", primary.Host, "port", strconv.Itoa(primary.Port),
			"user", p.super.user, "dbname", "postgres", "connect_timeout", "5"}, p.sslParams()...)...))
	if err != nil {
		return p.explainConnError(err, primary, p.super, "pg_rewind")
	}
	p.log.Info("pg_rewind done", "primary", primary.Node, "took", time.Since(t0), "said", lastLine(append(res.stdout, res.stderr...)))
	return nil
}

// explainConnError turns a tool's connection failure into an error naming the credential or the peer.
func (p *Postgres) explainConnError(err error, primary Peer, c credential, what string) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "password authentication failed"):
		return fmt.Errorf("%w: %s from %s at %s: %s rejected %s's password; make %s.password_file (%s) hold the password the primary has for %s: %v",
			ErrCredentials, what, primary.Node, primary.addr(), primary.Node, c.user, c.field, c.passwordFile, c.user, err)
	case strings.Contains(msg, "no pg_hba.conf entry"):
		return fmt.Errorf("%w: %s from %s at %s: the primary's pg_hba.conf does not admit %s from this host; add e.g. \"host replication %s ADDRESS/32 scram-sha-256\" there for the address it names: %v",
			ErrCredentials, what, primary.Node, primary.addr(), c.user, c.user, err)
	case isTLSError(msg):
		return fmt.Errorf("%w: %s from %s at %s: %v; %s", ErrPrimaryUnreachable, what, primary.Node, primary.addr(), err, p.tlsHint())
	case strings.Contains(msg, "could not connect") || strings.Contains(msg, "Connection refused") || strings.Contains(msg, "timeout expired"):
		return fmt.Errorf("%w: %s from %s at %s: %v; check that it runs and accepts connections there (listen_addresses, firewall)",
			ErrPrimaryUnreachable, what, primary.Node, primary.addr(), err)
	}
	return fmt.Errorf("%s from %s at %s: %w", what, primary.Node, primary.addr(), err)
}

// SetSync sets synchronous_standby_names to ANY 1 (standbys...).
func (p *Postgres) SetSync(ctx context.Context, standbys []string, strict bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(p.opts, OpSetSync))
	defer cancel()
	names := slices.DeleteFunc(slices.Clone(standbys), func(n string) bool { return n == p.opts.Node })
	slices.Sort(names)
	names = slices.Compact(names)
	var waitedBefore bool
	gen, err := p.update(func(s *settings) {
		waitedBefore = s.syncNames() != ""
		s.sync, s.strict = names, strict
	})
	if err != nil {
		return err
	}
	if !p.running() {
		return nil
	}
	if err := p.reloadAndWait(ctx, &p.adminConn, gen); err != nil {
		return err
	}
	if len(names) == 0 && !strict {
		p.syncPending = false
		return nil
	}
	if p.syncPending = p.syncPending || !waitedBefore; !p.syncPending {
		return nil
	}
	if err := p.awaitSyncRepInForce(ctx); err != nil {
		return err // still pending: the core retries, and the retry waits again
	}
	p.syncPending = false
	return nil
}

// awaitSyncRepInForce returns once commits wait for synchronous standbys after synchronous_standby_names went from
// empty to naming one. Whether a commit waits is a flag in shared memory that only the checkpointer sets, when it
// re-reads the configuration — after every backend already shows the new setting, and a checkpointer busy with a
// checkpoint can take seconds. The core records the standby as synchronous once this returns; a commit acknowledged
// asynchronously in between could be missing on it after a failover. CHECKPOINT returns only after a checkpoint that
// began after the request, and the checkpointer re-reads the configuration before beginning one.
func (p *Postgres) awaitSyncRepInForce(ctx context.Context) error {
	t0 := time.Now()
	err := p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		var standby bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil || standby {
			return err // a standby acknowledges no commits; Promote does not change the setting
		}
		_, err := c.Exec(ctx, "CHECKPOINT")
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for the checkpointer to put synchronous replication in force: %w", err)
	}
	p.log.Info("synchronous replication in force", "took", time.Since(t0))
	return nil
}

// Fence stops the primary acknowledging writes: every commit waits for a standby that does not exist, new
// transactions are read-only, and every client session is terminated (walsenders stay, so standbys still receive
// what this node has). If the server cannot be reached it is stopped immediately. A standby is left as it is.
func (p *Postgres) Fence(ctx context.Context) error {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeoutFor(p.opts, OpFence))
	defer cancel()
	gen, err := p.update(func(s *settings) { s.fenced = true })
	if err != nil {
		return p.fenceByStop(ctx, err)
	}
	if !p.running() {
		return nil
	}
	const terminate = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`
	err = p.with(ctx, &p.fenceConn, func(c *pgx.Conn) error {
		// One round trip: re-read the file and end every client session, on a primary only.
		tag, err := c.Exec(ctx, "SELECT pg_reload_conf(), ("+terminate+") WHERE NOT pg_is_in_recovery()")
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		// Sessions forked before the postmaster re-read the file missed the first round.
		if err := waitGeneration(ctx, c, gen); err != nil {
			return err
		}
		_, err = c.Exec(ctx, terminate)
		return err
	})
	if err != nil {
		return p.fenceByStop(ctx, err)
	}
	p.log.Info("fenced", "took", time.Since(t0))
	return nil
}

func (p *Postgres) fenceByStop(ctx context.Context, cause error) error {
	p.log.Warn("fence through SQL failed; stopping the server immediately", "err", cause)
	if err := p.kill(ctx); err != nil {
		return fmt.Errorf("fence: %v, and the immediate stop failed too: %w", cause, err)
	}
	return nil
}

// Stop shuts the server down cleanly (fast mode: clients are disconnected, a checkpoint is written).
func (p *Postgres) Stop(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop(ctx)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
