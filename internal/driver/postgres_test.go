package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/testkit"
)

// pgBinDir returns the PostgreSQL binaries, or fails the test with what is missing: these tests need root (to run
// the server as postgres) and a PostgreSQL installation; scripts/test provides both. -short skips them.
func pgBinDir(t *testing.T) string {
	t.Helper()
	why := ""
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	switch {
	case os.Geteuid() != 0:
		why = "the PostgreSQL driver tests need root (the server runs as the postgres user); run scripts/test as root"
	case len(dirs) == 0:
		why = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); apt-get install postgresql, or run scripts/test"
	default:
		if _, err := user.Lookup("postgres"); err != nil {
			why = "there is no postgres OS user; apt-get install postgresql creates it"
		}
	}
	if why != "" {
		if testing.Short() {
			t.Skip(why)
		}
		t.Fatal(why)
	}
	slices.Sort(dirs)
	return filepath.Dir(dirs[len(dirs)-1])
}

const (
	superPassword = "su'per \\secret"
	replPassword  = "repl:secret"
)

// pgWorld is a scratch directory the postgres user can reach, with password files.
type pgWorld struct {
	bin, base, sock  string
	suFile, replFile string
	badFile          string
	log              *slog.Logger
}

func newPGWorld(t *testing.T) *pgWorld {
	t.Helper()
	w := &pgWorld{bin: pgBinDir(t)}
	base, err := os.MkdirTemp("", "baton-driver-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // MkdirTemp makes 0700: postgres could not reach the data dirs
		t.Fatal(err)
	}
	w.base = base
	w.sock = filepath.Join(base, "sock")
	pg, _ := user.Lookup("postgres")
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	if err := os.Mkdir(w.sock, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(w.sock, uid, gid); err != nil {
		t.Fatal(err)
	}
	w.suFile, w.replFile, w.badFile = filepath.Join(base, "su.pass"), filepath.Join(base, "repl.pass"), filepath.Join(base, "bad.pass")
	for f, pw := range map[string]string{w.suFile: superPassword + "\n", w.replFile: replPassword, w.badFile: "wrong\n"} {
		if err := os.WriteFile(f, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return w
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type pgNode struct {
	d    *Postgres
	peer Peer
	cfg  *config.Driver
}

func (w *pgWorld) config(name string, port int) *config.Driver {
	return &config.Driver{Type: "postgres", BinDir: w.bin, DataDir: filepath.Join(w.base, name), Port: port, OSUser: "postgres",
		Superuser:   &config.Credential{User: "postgres", PasswordFile: w.suFile},
		Replication: &config.Credential{User: "replicator", PasswordFile: w.replFile}}
}

func (w *pgWorld) options(name string, members []string) Options {
	return Options{Cluster: "test", Group: "db", Node: name, Members: members, ListenAddresses: "127.0.0.1",
		SocketDir: w.sock, Logger: w.log.With("node", name)}
}

// node builds a driver for a new member; cleanup stops its server.
func (w *pgWorld) node(t *testing.T, name string, members []string, edit func(*config.Driver, *Options)) *pgNode {
	t.Helper()
	port := freePort(t)
	cfg, opts := w.config(name, port), w.options(name, members)
	if edit != nil {
		edit(cfg, &opts)
	}
	d, err := NewPostgres(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Logf("stopping %s: %v", name, err)
			d.kill(ctx)
		}
		d.Close()
	})
	return &pgNode{d: d, peer: Peer{Node: name, Host: "127.0.0.1", Port: port}, cfg: cfg}
}

// sql opens a client connection to n as the superuser.
func (n *pgNode) sql(t *testing.T, onNotice func(*pgconn.Notice)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=postgres sslmode=disable", n.peer.Port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = superPassword
	if onNotice != nil {
		cfg.OnNotice = func(_ *pgconn.PgConn, nt *pgconn.Notice) { onNotice(nt) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to %s: %v", n.peer.Node, err)
	}
	t.Cleanup(func() { closeConn(c) })
	return c
}

func (n *pgNode) state(t *testing.T) State {
	t.Helper()
	st, err := n.d.State(context.Background())
	if err != nil {
		t.Fatalf("%s: State: %v", n.peer.Node, err)
	}
	return st
}

// caughtUp waits until standby's position reaches the primary's.
func caughtUp(t *testing.T, standby, primary *pgNode) {
	t.Helper()
	target := primary.state(t).Pos
	testkit.WaitForState(t, 20*time.Second, standby.peer.Node+" to catch up with "+primary.peer.Node, func() (bool, string) {
		st := standby.state(t)
		return st.Role == RoleStandby && st.Pos.Compare(target) >= 0, fmt.Sprintf("%s at %v, primary at %v", st.Role, st.Pos, target)
	})
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func rows(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), "SELECT string_agg(i::text, ',' ORDER BY i) FROM t").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPostgres walks two real servers through a life: bootstrap, streaming, sync and strict sync, a promotion
// while the old primary still takes writes, its fence, and its return through pg_rewind.
func TestPostgres(t *testing.T) {
	w := newPGWorld(t)
	ctx := context.Background()
	members := []string{"n1", "n2"}
	n1 := w.node(t, "n1", members, nil)
	n2 := w.node(t, "n2", members, nil)

	t0 := time.Now()
	if err := n1.d.Bootstrap(ctx, nil); err != nil {
		t.Fatalf("bootstrap primary: %v", err)
	}
	t.Logf("bootstrap primary (initdb + start): %v", time.Since(t0))
	if st := n1.state(t); st.Role != RolePrimary || st.Pos.Timeline != 1 {
		t.Fatalf("n1 after bootstrap: %+v", st)
	}
	t0 = time.Now()
	if err := n2.d.Bootstrap(ctx, &n1.peer); err != nil {
		t.Fatalf("bootstrap standby: %v", err)
	}
	t.Logf("bootstrap standby (pg_basebackup + start): %v", time.Since(t0))
	if st := n2.state(t); st.Role != RoleStandby {
		t.Fatalf("n2 after bootstrap: %+v", st)
	}
	if err := n2.d.Bootstrap(ctx, &n1.peer); err != nil { // idempotent: an agent restart calls it again
		t.Fatalf("bootstrap standby again: %v", err)
	}

	c1 := n1.sql(t, nil)
	mustExec(t, c1, "CREATE TABLE t (i int PRIMARY KEY)")
	mustExec(t, c1, "INSERT INTO t SELECT generate_series(1, 1000)")
	caughtUp(t, n2, n1)
	testkit.WaitForState(t, 10*time.Second, "n1 to see n2 with no lag", func() (bool, string) {
		st := n1.state(t)
		l, ok := st.Lag["n2"]
		return len(st.Lag) == 1 && ok && l.Bytes == 0, fmt.Sprintf("lag %+v", st.Lag)
	})
	var slots []string
	if err := c1.QueryRow(ctx, "SELECT array_agg(slot_name::text ORDER BY slot_name) FROM pg_replication_slots WHERE active").Scan(&slots); err != nil || !slices.Equal(slots, []string{"baton_n2"}) {
		t.Errorf("active slots on n1 = %v, %v; want n2's", slots, err)
	}

	t.Run("sync", func(t *testing.T) {
		if err := n1.d.SetSync(ctx, []string{"n2"}, false); err != nil {
			t.Fatal(err)
		}
		testkit.WaitForState(t, 10*time.Second, "n2 to be synchronous", func() (bool, string) {
			var state string
			err := c1.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'n2'").Scan(&state)
			st := n1.state(t)
			// ANY 1 (...) is quorum commit: PostgreSQL reports its candidates as "quorum".
			return err == nil && state == "quorum" && slices.Equal(st.Sync, []string{"n2"}), fmt.Sprintf("sync_state %q (%v), State.Sync %v", state, err, st.Sync)
		})
		mustExec(t, c1, "INSERT INTO t VALUES (1001)")
	})

	t.Run("strict without standbys blocks writes", func(t *testing.T) {
		if err := n1.d.SetSync(ctx, nil, true); err != nil {
			t.Fatal(err)
		}
		c := n1.sql(t, nil)
		// The commit waits for a standby that is not there: seen in pg_stat_activity, not acknowledged. (Not
		// statement_timeout: PostgreSQL turns it off before a commit waits.) Cancelling it would report the
		// commit, which happened locally but was never replicated.
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { _, err := c.Exec(wctx, "INSERT INTO t VALUES (1002)"); done <- err }()
		testkit.WaitForState(t, 5*time.Second, "the writer to wait for a synchronous standby", func() (bool, string) {
			var waiting int
			err := c1.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'").Scan(&waiting)
			return err == nil && waiting == 1, fmt.Sprintf("%d waiting, %v", waiting, err)
		})
		time.Sleep(100 * time.Millisecond)
		select {
		case err := <-done:
			t.Errorf("the write returned (%v) with no synchronous standby in strict mode", err)
		default:
		}
		cancel()
		<-done
		if err := n1.d.SetSync(ctx, nil, false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		mustExec(t, c1, "INSERT INTO t VALUES (1003)")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("asynchronous write took %v", d)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		cfg := *n1.cfg
		cfg.Superuser = &config.Credential{User: "postgres", PasswordFile: w.badFile}
		d, err := NewPostgres(&cfg, w.options("n1", members))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = d.State(ctx)
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "driver.superuser.password_file ("+w.badFile+")") {
			t.Errorf("State with a wrong superuser password: %v", err)
		}
		n3 := w.node(t, "n3", []string{"n1", "n2", "n3"}, func(c *config.Driver, _ *Options) {
			c.Replication = &config.Credential{User: "replicator", PasswordFile: w.badFile}
		})
		err = n3.d.Bootstrap(ctx, &n1.peer)
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "driver.replication.password_file ("+w.badFile+")") {
			t.Errorf("standby bootstrap with a wrong replication password: %v", err)
		}
		if entries, _ := os.ReadDir(n3.cfg.DataDir); len(entries) != 0 {
			t.Errorf("the failed bootstrap left %d files in %s", len(entries), n3.cfg.DataDir)
		}
	})

	// The partition: n2 is promoted while n1 still takes writes that n2 will never see.
	caughtUp(t, n2, n1)
	t0 = time.Now()
	if err := n2.d.Promote(ctx, 2); err != nil {
		t.Fatalf("promote n2: %v", err)
	}
	promoteTook := time.Since(t0)
	st2 := n2.state(t)
	if st2.Role != RolePrimary || st2.Pos.Timeline != 2 {
		t.Fatalf("n2 after promote: %+v", st2)
	}
	c2 := n2.sql(t, nil)
	mustExec(t, c2, "INSERT INTO t SELECT generate_series(2001, 2100)")
	var epoch string
	if err := c2.QueryRow(ctx, "SHOW baton.epoch").Scan(&epoch); err != nil || epoch != "2" {
		t.Errorf("baton.epoch on n2 = %q, %v", epoch, err)
	}
	mustExec(t, c1, "INSERT INTO t SELECT generate_series(5001, 5010)") // lost: n1 has lost its lease but not heard yet

	old := n1.sql(t, nil)
	mustExec(t, old, "BEGIN")
	t0 = time.Now()
	if err := n1.d.Fence(ctx); err != nil {
		t.Fatalf("fence n1: %v", err)
	}
	fenceTook := time.Since(t0)
	if _, err := old.Exec(ctx, "INSERT INTO t VALUES (6001)"); err == nil {
		t.Errorf("a session open before the fence could still write")
	}
	fresh := n1.sql(t, nil)
	t0 = time.Now()
	_, err := fresh.Exec(ctx, "INSERT INTO t VALUES (6002)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "25006" || time.Since(t0) > 100*time.Millisecond {
		t.Errorf("write to the fenced primary: %v after %v; want read_only_sql_transaction at once", err, time.Since(t0))
	}
	if st := n1.state(t); st.Role != RolePrimary {
		t.Errorf("fenced n1 reports %+v; want primary (fenced, still running)", st)
	}

	t0 = time.Now()
	if err := n1.d.Follow(ctx, n2.peer); err != nil {
		t.Fatalf("n1 follows n2: %v", err)
	}
	followTook := time.Since(t0)
	caughtUp(t, n1, n2)
	if st := n1.state(t); st.Pos.Timeline != 2 {
		t.Errorf("n1 after rejoining: %+v; want timeline 2", st)
	}
	c1 = n1.sql(t, nil)
	var stale int
	if err := c1.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&stale); err != nil || stale != 0 {
		t.Errorf("n1 kept %d replication slots from its time as primary (%v)", stale, err)
	}
	t0 = time.Now()
	if err := n1.d.Follow(ctx, n2.peer); err != nil {
		t.Fatalf("Follow again: %v", err)
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Errorf("Follow of the primary it already streams from took %v", d)
	}
	if a, b := rows(t, c1), rows(t, c2); a != b || strings.Contains(a, "5001") || !strings.Contains(a, "2100") {
		t.Errorf("n1 after rewind differs from n2 or kept the lost rows:\n n1 %.80s…\n n2 %.80s…", a, b)
	}
	if err := n2.d.SetSync(ctx, []string{"n1"}, true); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, 10*time.Second, "n1 to be synchronous to n2", func() (bool, string) {
		st := n2.state(t)
		return slices.Equal(st.Sync, []string{"n1"}), fmt.Sprintf("sync %v lag %v", st.Sync, st.Lag)
	})
	mustExec(t, c2, "INSERT INTO t VALUES (3001)")

	t.Logf("TIMINGS promote=%v fence=%v follow(stop+pg_rewind+start)=%v", promoteTook, fenceTook, followTook)
	if promoteTook > 5*time.Second || fenceTook > time.Second {
		t.Errorf("promote took %v, fence %v", promoteTook, fenceTook)
	}

	t.Run("rebuild when pg_rewind cannot", func(t *testing.T) {
		// A member holding some other cluster: pg_rewind refuses ("different systems").
		n4 := w.node(t, "n4", []string{"n1", "n2", "n4"}, nil)
		if err := n4.d.Bootstrap(ctx, nil); err != nil {
			t.Fatal(err)
		}
		err := n4.d.Follow(ctx, n2.peer)
		if !errors.Is(err, ErrRewind) || !strings.Contains(err.Error(), "allow a rebuild from a fresh base backup") {
			t.Fatalf("Follow of a foreign cluster without allow_rebuild: %v", err)
		}
		opts := w.options("n4", []string{"n1", "n2", "n4"})
		opts.AllowRebuild = true
		d, err := NewPostgres(n4.cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		t0 := time.Now()
		if err := d.Follow(ctx, n2.peer); err != nil {
			t.Fatalf("Follow with allow_rebuild: %v", err)
		}
		t.Logf("rebuild (failed pg_rewind + pg_basebackup + start): %v", time.Since(t0))
		rebuilt := &pgNode{d: d, peer: n4.peer, cfg: n4.cfg}
		caughtUp(t, rebuilt, n2)
		if a, b := rows(t, rebuilt.sql(t, nil)), rows(t, c2); a != b {
			t.Errorf("rebuilt n4 differs from n2")
		}
	})

	t.Run("crashed primary: no acknowledged write lost, rejoins", func(t *testing.T) {
		// n1 is n2's synchronous standby (strict): every write n2 acknowledged is on n1.
		mustExec(t, c2, "INSERT INTO t SELECT generate_series(3002, 3100)")
		want := rows(t, c2)
		if err := n2.d.kill(ctx); err != nil { // the host dies: no shutdown checkpoint, no goodbye
			t.Fatal(err)
		}
		t0 := time.Now()
		if err := n1.d.Promote(ctx, 3); err != nil {
			t.Fatalf("promote n1: %v", err)
		}
		t.Logf("promote after a crash: %v", time.Since(t0))
		c1 := n1.sql(t, nil)
		if got := rows(t, c1); got != want {
			t.Fatalf("acknowledged writes lost in the failover:\n had %.60s…\n now %.60s…", want, got)
		}
		mustExec(t, c1, "INSERT INTO t VALUES (4001)")
		if st := n2.state(t); st.Role != RoleStopped || st.Pos.Timeline != 2 {
			t.Errorf("crashed n2: %+v; want stopped on timeline 2", st)
		}
		t0 = time.Now()
		if err := n2.d.Follow(ctx, n1.peer); err != nil { // pg_rewind finishes crash recovery first
			t.Fatalf("crashed n2 follows n1: %v", err)
		}
		t.Logf("follow after a crash (pg_rewind with crash recovery + start): %v", time.Since(t0))
		caughtUp(t, n2, n1)
		if a, b := rows(t, n2.sql(t, nil)), rows(t, c1); a != b {
			t.Errorf("n2 differs from n1 after rejoining")
		}
	})

	if err := n2.d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := n2.state(t); st.Role != RoleStopped || st.Pos.Timeline != 3 || st.Pos.LSN == 0 {
		t.Errorf("stopped n2: %+v; want stopped with its position from pg_control", st)
	}
}

// TestPostgresBadInput: each misconfiguration gives an error naming the thing and the fix, before anything is
// changed.
func TestPostgresBadInput(t *testing.T) {
	w := newPGWorld(t)
	ctx := context.Background()

	t.Run("bin_dir", func(t *testing.T) {
		empty := t.TempDir()
		for dir, want := range map[string]string{
			"/nonexistent/pg/bin": "driver.bin_dir /nonexistent/pg/bin does not exist; install PostgreSQL",
			empty:                 "driver.bin_dir " + empty + " has no pg_ctl; set bin_dir to the directory holding",
		} {
			cfg := w.config("x", 5432)
			cfg.BinDir = dir
			_, err := NewPostgres(cfg, w.options("x", nil))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
				t.Errorf("bin_dir %s: %v; want %q", dir, err, want)
			}
		}
	})

	t.Run("credentials in the config", func(t *testing.T) {
		cfg := w.config("x", 5432)
		cfg.Superuser.PasswordFile = filepath.Join(w.base, "missing.pass")
		_, err := NewPostgres(cfg, w.options("x", nil))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `driver.superuser.password_file: cannot read "`+cfg.Superuser.PasswordFile+`": no such file or directory`) {
			t.Errorf("missing password file: %v", err)
		}
		// A password file others can read is refused, as a secret file is.
		open := filepath.Join(w.base, "open.pass")
		if err := os.WriteFile(open, []byte("pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, 0o640); err != nil {
			t.Fatal(err)
		}
		cfg = w.config("x", 5432)
		cfg.Replication.PasswordFile = open
		_, err = NewPostgres(cfg, w.options("x", nil))
		if want := `driver.replication.password_file: "` + open + `" is readable by group or others (mode 0640); chmod 600 ` + open; !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("password file readable by its group: %v; want %q", err, want)
		}
		cfg = w.config("x", 5432)
		cfg.Replication = nil
		_, err = NewPostgres(cfg, w.options("x", nil))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "driver.replication: need a user and a password_file") {
			t.Errorf("no replication credential: %v", err)
		}
	})

	t.Run("data dir owned by another user", func(t *testing.T) {
		n := w.node(t, "alien", nil, nil)
		if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(n.cfg.DataDir, "PG_VERSION"), []byte("15\n"), 0o600)
		if err := os.Chown(n.cfg.DataDir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		err := n.d.Bootstrap(ctx, nil)
		if !errors.Is(err, ErrDataDirOwner) || !strings.Contains(err.Error(), "not by os_user postgres") || !strings.Contains(err.Error(), "fix: chown -R postgres: "+n.cfg.DataDir) {
			t.Errorf("Bootstrap on a foreign data dir: %v", err)
		}
	})

	t.Run("data dir the os user cannot reach", func(t *testing.T) {
		hidden := filepath.Join(w.base, "hidden")
		if err := os.Mkdir(hidden, 0o700); err != nil {
			t.Fatal(err)
		}
		n := w.node(t, "x", nil, func(c *config.Driver, _ *Options) { c.DataDir = filepath.Join(hidden, "pg") })
		err := n.d.Bootstrap(ctx, nil)
		if !errors.Is(err, ErrDataDirOwner) || !strings.Contains(err.Error(), "os_user postgres cannot reach data dir") || !strings.Contains(err.Error(), "chmod o+x "+hidden) {
			t.Errorf("Bootstrap under a 0700 root directory: %v", err)
		}
	})

	t.Run("unreachable primary", func(t *testing.T) {
		n := w.node(t, "s", nil, nil)
		dead := Peer{Node: "p", Host: "127.0.0.1", Port: freePort(t)}
		t0 := time.Now()
		err := n.d.Bootstrap(ctx, &dead)
		if !errors.Is(err, ErrPrimaryUnreachable) || !strings.Contains(err.Error(), "primary p at "+dead.addr()) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("Bootstrap from a dead primary: %v", err)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("took %v to notice", d)
		}
		if entries, _ := os.ReadDir(n.cfg.DataDir); len(entries) != 0 {
			t.Errorf("the failed bootstrap left files in %s", n.cfg.DataDir)
		}
		if st, err := n.d.State(ctx); err != nil || st.Role != RoleStopped {
			t.Errorf("State of the empty member: %+v, %v", st, err)
		}
		if err := n.d.Promote(ctx, 1); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Promote with no cluster: %v", err)
		}
	})
}

func TestSyncNamesAndQuoting(t *testing.T) {
	for _, tt := range []struct {
		s    settings
		want string
	}{
		{settings{}, ""},
		{settings{strict: true}, `ANY 1 ("baton_none")`},
		{settings{sync: []string{"n2", "n3"}}, `ANY 1 ("n2", "n3")`},
		{settings{sync: []string{"n2"}, fenced: true}, `ANY 1 ("baton_fenced")`},
		{settings{sync: []string{`we"ird`}}, `ANY 1 ("we""ird")`},
	} {
		if got := tt.s.syncNames(); got != tt.want {
			t.Errorf("syncNames(%+v) = %q, want %q", tt.s, got, tt.want)
		}
	}
	if got := confString(`it's a \ test`); got != `'it''s a \\ test'` {
		t.Errorf("confString = %s", got)
	}
	if got := conninfo("host", "db1", "password", `p'w \x`, "application_name", "n1"); got != `host=db1 password='p\'w \\x' application_name=n1` {
		t.Errorf("conninfo = %s", got)
	}
	for in, want := range map[string]string{"n1": "baton_n1", "db-2": "baton_db_2", "Ünï": "baton__n_", strings.Repeat("a", 70): "baton_" + strings.Repeat("a", 57)} {
		if got := slotName(in); got != want {
			t.Errorf("slotName(%q) = %q, want %q", in, got, want)
		}
	}
	history := "1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n"
	for tli, want := range map[uint32]uint64{1: 0x3000060, 2: 0x5000000} {
		if got, ok := forkPoint(history, tli); !ok || got != want {
			t.Errorf("forkPoint(tli %d) = %x, %v", tli, got, ok)
		}
	}
	if _, ok := forkPoint(history, 3); ok {
		t.Errorf("forkPoint found timeline 3")
	}
}

// TestPostgresAdmitsOnlyMembers: a cluster the driver creates admits the
// superuser and the replication user from the members' addresses, not from
// anywhere.
func TestPostgresAdmitsOnlyMembers(t *testing.T) {
	w := newPGWorld(t)
	ctx := context.Background()
	n := w.node(t, "h1", []string{"h1", "h2"}, func(c *config.Driver, o *Options) {
		o.MemberAddresses = []string{"127.0.0.3", "fd00::7"}
		c.ClientNetworks = []string{"127.0.0.8/31"}
	})
	if err := n.d.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "pg_hba.conf"))
	if err != nil {
		t.Fatal(err)
	}
	hba := string(b)
	for _, want := range []string{"host\treplication\treplicator\t127.0.0.3/32\tscram-sha-256\n", "host\tall\tpostgres\t127.0.0.3/32\tscram-sha-256\n",
		"host\tall\tall\t127.0.0.8/31\tscram-sha-256\n",
		"host\treplication\treplicator\tfd00::7/128\tscram-sha-256\n", "host\tall\tpostgres\tfd00::7/128\tscram-sha-256\n"} {
		if !strings.Contains(hba, want) {
			t.Errorf("pg_hba.conf lacks %q", want)
		}
	}
	_, ours, _ := strings.Cut(hba, "# Added by baton")
	for _, l := range strings.Split(ours, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && (f[3] == "all" || strings.HasSuffix(f[3], "/0")) {
			t.Errorf("pg_hba.conf admits any address: %q", l)
		}
	}
	connectFrom := func(src string) error {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d dbname=postgres user=postgres sslmode=disable connect_timeout=5", n.peer.Port))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = superPassword
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		cfg.DialFunc = d.DialContext
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			closeConn(c)
		}
		return err
	}
	if err := connectFrom("127.0.0.3"); err != nil {
		t.Errorf("the superuser from a member's address: %v", err)
	}
	if err := connectFrom("127.0.0.4"); err == nil || !strings.Contains(err.Error(), "no pg_hba.conf entry") {
		t.Errorf("the superuser from an address that is no member's: %v; want no pg_hba.conf entry", err)
	}
	if err := connectFrom("127.0.0.9"); err != nil {
		t.Errorf("a client in client_networks: %v", err)
	}
}

// TestPostgresSSLMode: driver.ssl_mode reaches every connection between
// members (a standby requiring TLS does not stream from a primary without
// it), and a cluster created with a mode that requires encryption admits the
// members over TLS only (hostssl).
func TestPostgresSSLMode(t *testing.T) {
	w := newPGWorld(t)
	ctx := context.Background()
	members := []string{"s1", "s2"}
	primary := w.node(t, "s1", members, func(_ *config.Driver, o *Options) { o.MemberAddresses = []string{"127.0.0.1"} })
	if err := primary.d.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if conf := primary.d.renderConf(settings{primary: &Peer{Node: "s2", Host: "127.0.0.9", Port: 5432}}, "pw"); !strings.Contains(conf, "sslmode=prefer") {
		t.Errorf("default primary_conninfo lacks sslmode=prefer:\n%s", conf)
	}
	if hba := string(primary.d.hbaLines()); !strings.Contains(hba, "\nhost\treplication") || strings.Contains(hba, "hostssl") {
		t.Errorf("default pg_hba lines: %q", hba)
	}
	standby := w.node(t, "s2", members, func(c *config.Driver, _ *Options) { c.SSLMode = "require" })
	err := standby.d.Bootstrap(ctx, &primary.peer)
	if err == nil || !strings.Contains(err.Error(), "server refused TLS connection") || !strings.Contains(err.Error(), "driver.ssl_mode is require: give the servers a certificate") {
		t.Fatalf("a standby with ssl_mode require bootstrapping from a primary without TLS: %v; want the TLS refusal and the fix", err)
	}
	if _, err := os.Stat(filepath.Join(standby.cfg.DataDir, "PG_VERSION")); err == nil {
		t.Error("the refused standby has a data dir")
	}
	strict := w.node(t, "s3", members, func(c *config.Driver, o *Options) {
		c.SSLMode, c.SSLRootCert = "verify-full", "/etc/baton/pg-ca.pem"
		o.MemberAddresses = []string{"10.0.0.2"}
	})
	conf := strict.d.renderConf(settings{primary: &Peer{Node: "s1", Host: "10.0.0.1", Port: 5432}}, "pw")
	if !strings.Contains(conf, "sslmode=verify-full") || !strings.Contains(conf, "sslrootcert=/etc/baton/pg-ca.pem") {
		t.Errorf("verify-full primary_conninfo:\n%s", conf)
	}
	if hba := string(strict.d.hbaLines()); !strings.Contains(hba, "hostssl\treplication\treplicator\t10.0.0.2/32") {
		t.Errorf("verify-full pg_hba lines: %q", hba)
	}
}

// TestSetSyncWaitsForTheCheckpointer: PostgreSQL decides whether a commit waits for a synchronous standby by a flag
// in shared memory that only the checkpointer updates, when it gets round to re-reading the configuration; a busy
// checkpointer (here: in an immediate checkpoint of about 150 MB) leaves commits asynchronous for a while after
// every backend already shows the new synchronous_standby_names. SetSync naming a standby must not return before
// commits wait for it: the agent records the standby as synchronous right after, and a commit acknowledged in
// between could be missing on it.
func TestSetSyncWaitsForTheCheckpointer(t *testing.T) {
	w := newPGWorld(t)
	ctx := context.Background()
	n1 := w.node(t, "n1", []string{"n1", "n2"}, nil)
	if err := n1.d.Bootstrap(ctx, nil); err != nil {
		t.Fatalf("bootstrap primary: %v", err)
	}
	c := n1.sql(t, nil)
	mustExec(t, c, "CREATE TABLE t (i int PRIMARY KEY)")
	mustExec(t, c, "CREATE TABLE pad (s text)")
	for round := range 3 {
		if err := n1.d.SetSync(ctx, nil, false); err != nil {
			t.Fatal(err)
		}
		// Dirty enough buffers that the checkpointer is busy for a while, then keep it busy.
		mustExec(t, c, "INSERT INTO pad SELECT repeat('x', 900) FROM generate_series(1, 150000)")
		ckpt := n1.sql(t, nil)
		ckptDone := make(chan error, 1)
		go func() { _, err := ckpt.Exec(ctx, "CHECKPOINT"); ckptDone <- err }()
		time.Sleep(20 * time.Millisecond)
		// n2 never connects: once the setting is in force, this commit waits.
		if err := n1.d.SetSync(ctx, []string{"n2"}, false); err != nil {
			t.Fatal(err)
		}
		wc := n1.sql(t, nil)
		done := make(chan error, 1)
		go func() { _, err := wc.Exec(ctx, "INSERT INTO t VALUES ($1)", round); done <- err }()
		acked := false
		select {
		case err := <-done:
			acked = true
			t.Errorf("round %d: a commit was acknowledged (%v) right after SetSync named a standby that is not there", round, err)
		case <-time.After(300 * time.Millisecond):
		}
		// Dropping the standby again releases the waiting commit.
		if err := n1.d.SetSync(ctx, nil, false); err != nil {
			t.Fatal(err)
		}
		if !acked {
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: the commit still waits after the synchronous standby was dropped", round)
			}
		}
		if err := <-ckptDone; err != nil {
			t.Fatal(err)
		}
		mustExec(t, c, "TRUNCATE pad")
	}
}
