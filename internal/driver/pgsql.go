package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connSlot is one cached connection. The driver keeps three (State, operations, Fence) so that the heartbeat
// and the lease timer never queue behind a slow operation.
type connSlot struct {
	mu sync.Mutex
	c  *pgx.Conn
}

func (s *connSlot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeConn(s.c)
	s.c = nil
}

func closeConn(c *pgx.Conn) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

// with runs fn on the slot's connection, connecting when needed. A connection that broke (the server restarted, a
// fence terminated it) is replaced and fn retried once; an SQL error is returned as it is.
func (p *Postgres) with(ctx context.Context, s *connSlot, fn func(*pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fresh := false
		if s.c == nil || s.c.IsClosed() {
			closeConn(s.c)
			c, err := p.connect(ctx, p.localHost, p.port, p.super, "local server")
			if err != nil {
				s.c = nil
				return err
			}
			s.c, fresh = c, true
		}
		err := fn(s.c)
		if err == nil {
			return nil
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Severity != "FATAL" && pe.Severity != "PANIC" && !s.c.IsClosed() {
			return err
		}
		closeConn(s.c)
		s.c = nil
		if fresh || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

// connect opens an SQL connection as c; errors name the credential and the fix.
func (p *Postgres) connect(ctx context.Context, host string, port int, c credential, what string) (*pgx.Conn, error) {
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	ssl := p.sslParams()
	if host == p.localHost && port == p.port {
		ssl = []string{"sslmode", "disable"} // loopback
	}
	cfg, err := pgx.ParseConfig(conninfo(append([]string{"host", host, "port", strconv.Itoa(port), "dbname", "postgres", "connect_timeout", "5"}, ssl...)...))
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = c.user, pw
	cfg.RuntimeParams["application_name"] = "baton"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, p.explainSQLConnError(err, joinHostPort(host, port), c, what)
	}
	return conn, nil
}

func (p *Postgres) explainSQLConnError(err error, addr string, c credential, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01":
			return fmt.Errorf("%w: %s at %s rejected %s's password; make %s.password_file (%s) hold the server's password for %s, or set it there with ALTER ROLE: %s",
				ErrCredentials, what, addr, c.user, c.field, c.passwordFile, c.user, pe.Message)
		case "28000":
			return fmt.Errorf("%w: %s at %s does not admit %s from this host (%s); add a pg_hba.conf line such as \"host all %s ADDRESS/32 scram-sha-256\" for the address it names",
				ErrCredentials, what, addr, c.user, pe.Message, c.user)
		}
		return fmt.Errorf("%s at %s: %w", what, addr, err)
	}
	if what != "local server" && isTLSError(err.Error()) {
		return fmt.Errorf("%w: %s at %s: %v; %s", ErrPrimaryUnreachable, what, addr, err, p.tlsHint())
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connect") {
		if what == "local server" {
			return fmt.Errorf("%w: %s at %s: %v", ErrNotRunning, what, addr, err)
		}
		return fmt.Errorf("%w: %s at %s: %v; check that it runs and accepts connections there (listen_addresses, firewall)", ErrPrimaryUnreachable, what, addr, err)
	}
	return fmt.Errorf("%s at %s: %w", what, addr, err)
}

// queryState reads role, position, and on a primary the standbys' lag and sync state.
func (p *Postgres) queryState(ctx context.Context, c *pgx.Conn) (State, error) {
	pos, inRecovery, err := queryPosition(ctx, c)
	if err != nil {
		return State{Role: RoleUnknown}, err
	}
	if inRecovery {
		return State{Role: RoleStandby, Pos: pos}, nil
	}
	st := State{Role: RolePrimary, Pos: pos, Lag: map[string]Lag{}}
	rows, err := c.Query(ctx, `SELECT application_name, sync_state, state,
		pg_wal_lsn_diff(pg_current_wal_lsn(), COALESCE(flush_lsn, '0/0'))::float8,
		COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication WHERE application_name <> ''`)
	if err != nil {
		return State{Role: RoleUnknown}, err
	}
	var name, syncState, state string
	var bytes, secs float64
	_, err = pgx.ForEachRow(rows, []any{&name, &syncState, &state, &bytes, &secs}, func() error {
		if len(p.opts.Members) > 0 && !slices.Contains(p.opts.Members, name) || name == p.opts.Node || strings.HasSuffix(name, "-basebackup") {
			return nil // a base backup streams too
		}
		l := Lag{Bytes: uint64(max(bytes, 0)), Seconds: secs}
		if old, dup := st.Lag[name]; !dup || l.Bytes < old.Bytes {
			st.Lag[name] = l
		}
		if state == "streaming" && (syncState == "sync" || syncState == "quorum") && !slices.Contains(st.Sync, name) {
			st.Sync = append(st.Sync, name)
		}
		return nil
	})
	if err != nil {
		return State{Role: RoleUnknown}, err
	}
	slices.Sort(st.Sync)
	return st, nil
}

// queryPosition returns the local position: on a primary the current WAL insert position, on a standby the later
// of what it received (flushed) and what it replayed, since a promoted standby replays all it received.
func queryPosition(ctx context.Context, c *pgx.Conn) (Position, bool, error) {
	var (
		inRecovery bool
		lsnText    string
		walfile    *string
		tli        int64
	)
	err := c.QueryRow(ctx, `SELECT r,
		CASE WHEN r THEN COALESCE(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0') ELSE pg_current_wal_lsn() END::text,
		CASE WHEN r THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
		CASE WHEN r THEN COALESCE(NULLIF((SELECT received_tli FROM pg_stat_wal_receiver), 0),
			greatest((pg_control_checkpoint()).timeline_id, (pg_control_recovery()).min_recovery_end_timeline)) ELSE 0 END
		FROM pg_is_in_recovery() AS r`).Scan(&inRecovery, &lsnText, &walfile, &tli)
	if err != nil {
		return Position{}, false, err
	}
	lsn, err := ParseLSN(lsnText)
	if err != nil {
		return Position{}, false, err
	}
	if walfile != nil && len(*walfile) >= 8 {
		t, err := strconv.ParseUint((*walfile)[:8], 16, 32)
		if err != nil {
			return Position{}, false, fmt.Errorf("WAL file name %q: %w", *walfile, err)
		}
		tli = int64(t)
	}
	return Position{Timeline: uint32(tli), LSN: lsn}, inRecovery, nil
}

func (p *Postgres) localPosition(ctx context.Context) (pos Position, inRecovery bool, err error) {
	err = p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		pos, inRecovery, err = queryPosition(ctx, c)
		return err
	})
	return pos, inRecovery, err
}

// diverged reports whether local history left primary's: local is on a timeline the primary's history does not
// pass through, or it went past the point where the primary's timeline forked from it. Such a node cannot stream
// from primary without a rewind.
func (p *Postgres) diverged(ctx context.Context, primary Peer, local Position) (bool, error) {
	c, err := p.connect(ctx, primary.Host, primary.Port, p.super, "primary "+primary.Node)
	if err != nil {
		return false, err
	}
	defer closeConn(c)
	their, inRecovery, err := queryPosition(ctx, c)
	if err != nil {
		return false, fmt.Errorf("primary %s at %s: %w", primary.Node, primary.addr(), err)
	}
	if inRecovery {
		return false, fmt.Errorf("%w: %s at %s is a standby, not a primary; follow the current primary", ErrConfig, primary.Node, primary.addr())
	}
	switch {
	case local.Timeline == their.Timeline:
		return local.LSN > their.LSN, nil
	case local.Timeline > their.Timeline:
		return true, nil
	}
	var history string
	err = c.QueryRow(ctx, "SELECT pg_read_file('pg_wal/' || $1 || '.history')", fmt.Sprintf("%08X", their.Timeline)).Scan(&history)
	if err != nil {
		return false, fmt.Errorf("reading timeline %d's history on %s: %w", their.Timeline, primary.Node, err)
	}
	fork, ok := forkPoint(history, local.Timeline)
	return !ok || local.LSN > fork, nil
}

// checkpointIfPromoted makes a freshly promoted primary write a checkpoint. pg_rewind reads the source's timeline
// from its control file, which a promotion updates only at its first checkpoint; before that, pg_rewind takes the
// two servers to be on one timeline and reports "no rewind required" for a node that has diverged.
func (p *Postgres) checkpointIfPromoted(ctx context.Context, primary Peer) error {
	c, err := p.connect(ctx, primary.Host, primary.Port, p.super, "primary "+primary.Node)
	if err != nil {
		return err
	}
	defer closeConn(c)
	pos, _, err := queryPosition(ctx, c)
	if err != nil {
		return fmt.Errorf("primary %s at %s: %w", primary.Node, primary.addr(), err)
	}
	var controlTLI int64
	if err := c.QueryRow(ctx, "SELECT timeline_id FROM pg_control_checkpoint()").Scan(&controlTLI); err != nil {
		return fmt.Errorf("primary %s at %s: %w", primary.Node, primary.addr(), err)
	}
	if uint32(controlTLI) >= pos.Timeline {
		return nil
	}
	t0 := time.Now()
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint on the new primary %s (pg_rewind needs it): %w", primary.Node, err)
	}
	p.log.Info("checkpoint on the new primary before pg_rewind", "primary", primary.Node, "took", time.Since(t0))
	return nil
}

// forkPoint finds where timeline tli ends in a timeline history file ("parentTLI<TAB>switchpoint<TAB>reason").
func forkPoint(history string, tli uint32) (uint64, bool) {
	for line := range strings.SplitSeq(history, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if t, err := strconv.ParseUint(f[0], 10, 32); err == nil && uint32(t) == tli {
			lsn, err := ParseLSN(f[1])
			return lsn, err == nil
		}
	}
	return 0, false
}

// ensureOwnSlot creates this member's replication slot on primary (over a replication connection, as the
// replication user), so the primary keeps the WAL this node still needs.
func (p *Postgres) ensureOwnSlot(ctx context.Context, primary Peer) error {
	pw, err := p.repl.password()
	if err != nil {
		return err
	}
	cfg, err := pgconn.ParseConfig(conninfo(append([]string{"host", primary.Host, "port", strconv.Itoa(primary.Port), "connect_timeout", "5"}, p.sslParams()...)...))
	if err != nil {
		return err
	}
	cfg.User, cfg.Password = p.repl.user, pw
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = "baton"
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		err = p.explainSQLConnError(err, primary.addr(), p.repl, "primary "+primary.Node)
		if errors.Is(err, ErrPrimaryUnreachable) {
			return fmt.Errorf("%w; nothing was changed in %s", err, p.dataDir)
		}
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Close(cctx)
	}()
	_, err = c.Exec(ctx, "CREATE_REPLICATION_SLOT "+slotName(p.opts.Node)+" PHYSICAL RESERVE_WAL").ReadAll()
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42710") { // duplicate_object: it exists
		return fmt.Errorf("creating replication slot %s on %s at %s: %w", slotName(p.opts.Node), primary.Node, primary.addr(), err)
	}
	return nil
}

// streamingFrom reports whether this standby already streams from primary with the settings the driver wants.
func (p *Postgres) streamingFrom(ctx context.Context, primary Peer) bool {
	p.smu.Lock()
	want := p.set.primary != nil && *p.set.primary == primary && !p.set.fenced
	p.smu.Unlock()
	if !want {
		return false
	}
	var streaming bool
	err := p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver
			WHERE status = 'streaming' AND sender_host = $1 AND sender_port = $2 AND slot_name = $3)`,
			primary.Host, primary.Port, slotName(p.opts.Node)).Scan(&streaming)
	})
	return err == nil && streaming
}

// dropSlots removes the driver's replication slots from this standby: a slot left from its time as primary (slots
// survive pg_rewind) would hold WAL here for ever, since nothing streams from a standby.
func (p *Postgres) dropSlots(ctx context.Context) error {
	return p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE slot_name LIKE 'baton\_%' AND NOT active`)
		return err
	})
}

// ensureSlots creates on this primary a replication slot for every other member, and drops its own (a standby
// does not stream from itself).
func (p *Postgres) ensureSlots(ctx context.Context) error {
	return p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE slot_name = $1 AND NOT active`, slotName(p.opts.Node)); err != nil {
			return err
		}
		for _, m := range p.opts.Members {
			if m == p.opts.Node {
				continue
			}
			_, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)
				WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slotName(m))
			var pe *pgconn.PgError
			if err != nil && !(errors.As(err, &pe) && pe.Code == "42710") {
				return fmt.Errorf("creating replication slot %s: %w", slotName(m), err)
			}
		}
		return nil
	})
}

// ensureReplicationRole creates the replication user with the password from its file, if it does not exist. An
// existing role keeps its password: the operator may manage it.
func (p *Postgres) ensureReplicationRole(ctx context.Context) error {
	pw, err := p.repl.password()
	if err != nil {
		return err
	}
	return p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		var exists bool
		if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", p.repl.user).Scan(&exists); err != nil {
			return err
		}
		verb := "ALTER"
		if !exists {
			verb = "CREATE"
		}
		stmt := verb + " ROLE " + pgx.Identifier{p.repl.user}.Sanitize() + " WITH REPLICATION LOGIN"
		if !exists {
			stmt += " PASSWORD " + quoteLiteral(pw)
		}
		if _, err := c.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s ROLE %s: %w", verb, p.repl.user, err)
		}
		return nil
	})
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// reloadAndWait makes the server re-read its configuration and waits until it has (the generation it reports
// is gen or later), so the caller knows the settings apply to every new transaction.
func (p *Postgres) reloadAndWait(ctx context.Context, s *connSlot, gen uint64) error {
	return p.with(ctx, s, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return err
		}
		return waitGeneration(ctx, c, gen)
	})
}

// waitGeneration polls until the postmaster has re-read the managed file: a backend applies a reload the
// postmaster signalled before its next command, so the setting seen here is what new sessions get.
func waitGeneration(ctx context.Context, c *pgx.Conn, gen uint64) error {
	for {
		var s string
		if err := c.QueryRow(ctx, "SELECT COALESCE(current_setting('baton.generation', true), '')").Scan(&s); err != nil {
			return err
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= gen {
			return nil
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("waiting for the server to reload its configuration: %w", err)
		}
	}
}

// restartIfPending restarts the server when a changed setting needs it (port, wal_log_hints, ...).
func (p *Postgres) restartIfPending(ctx context.Context) error {
	var pending []string
	err := p.with(ctx, &p.adminConn, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT name FROM pg_settings WHERE pending_restart")
		if err != nil {
			return err
		}
		pending, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	p.log.Info("restarting postgres for changed settings", "settings", pending)
	if err := p.stop(ctx); err != nil {
		return err
	}
	return p.start(ctx)
}

// isTLSError tells a failed TLS negotiation or certificate check (pgx's and libpq's wording) from other
// connection failures.
func isTLSError(msg string) bool {
	for _, s := range []string{"tls error", "tls:", "x509:", "SSL", "certificate verify failed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// tlsHint is the fix for a TLS failure between members.
func (p *Postgres) tlsHint() string {
	return fmt.Sprintf("driver.ssl_mode is %s: give the servers a certificate (ssl = on, ssl_cert_file, ssl_key_file in postgresql.conf)%s, or lower ssl_mode",
		p.sslMode, map[bool]string{true: " that ssl_root_cert (" + p.sslRootCert + ") verifies for the member's address", false: ""}[p.sslRootCert != ""])
}
