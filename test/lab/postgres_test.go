package labtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/pgload"
)

const pgBin = "/usr/lib/postgresql/15/bin"

// pgEnv is a PostgreSQL group (two database members and a witness) in the
// lab, with a client writing through the VIP.
type pgEnv struct {
	t    *testing.T
	l    *lab.Lab
	c    *lab.Cluster
	base string
}

type pgStatus struct {
	Groups []struct {
		Owner   string
		Epoch   uint64
		Sync    []string
		Members []struct {
			Node, DB  string
			Position  uint64
			Lag_bytes uint64 `json:"lag_bytes"`
		}
	}
}

func setupPG(t *testing.T, sync string) *pgEnv {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "pg_ctl")); err != nil {
		t.Fatalf("PostgreSQL 15 is not installed (%v); scripts/test installs it (apt-get install postgresql)", err)
	}
	base, err := os.MkdirTemp("", "baton-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pg.pass", "repl.pass"} {
		if err := os.WriteFile(filepath.Join(base, f), []byte("lab-pg-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := lab.New(lab.Options{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	e := &pgEnv{t: t, l: l, base: base}
	t.Cleanup(func() { l.Close() })
	extra := fmt.Sprintf(`    driver:
      type: postgres
      bin_dir: %s
      data_dir: %s/pg/{node}/pgdata
      superuser: {user: postgres, password_file: %s/pg.pass}
      replication: {user: replicator, password_file: %s/repl.pass}
      sync: %s
`, pgBin, base, base, base, sync)
	e.c, err = l.StartCluster(lab.ClusterSpec{Bin: bin, Dir: base, VIP: vip + "/24", NoWhoami: true, GroupExtra: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.c.Stop()
		// Agents are gone; stop the servers they started (pg_ctl daemonises them).
		for _, h := range l.Hosts() {
			dir := filepath.Join(base, "pg", h, "pgdata")
			if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
				_, _ = l.Run(h, "runuser", "-u", "postgres", "--", filepath.Join(pgBin, "pg_ctl"), "-D", dir, "-m", "immediate", "stop")
			}
		}
		if t.Failed() || os.Getenv("BATON_LAB_LOGS") != "" {
			for _, h := range l.Hosts() {
				b, _ := os.ReadFile(filepath.Join(base, h+".log"))
				t.Logf("=== %s.log (tail) ===\n%s", h, tail(string(b), 20000))
			}
		}
	})
	return e
}

func (e *pgEnv) status(host string) (pgStatus, error) {
	var st pgStatus
	err := e.c.Status(host, &st)
	if err == nil && len(st.Groups) == 0 {
		err = fmt.Errorf("no groups")
	}
	return st, err
}

// waitReady waits until owner ("" = either member) is primary, holds the
// VIP, and (sync modes) the other member is its recorded synchronous
// standby. It returns the owner and the standby.
func (e *pgEnv) waitReady(owner, standby string, needSync bool, limit time.Duration) (string, string) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	var last pgStatus
	for time.Now().Before(deadline) {
		st, err := e.status(e.c.Witness)
		if err == nil && owner == "" && st.Groups[0].Owner != "" {
			owner, standby = st.Groups[0].Owner, "h1"
			if owner == "h1" {
				standby = "h2"
			}
		}
		if err == nil {
			last = st
			g := st.Groups[0]
			dbs := map[string]string{}
			for _, m := range g.Members {
				dbs[m.Node] = m.DB
			}
			syncOK := !needSync || (len(g.Sync) == 1 && g.Sync[0] == standby)
			if g.Owner == owner && dbs[owner] == "primary" && dbs[standby] == "standby" && syncOK {
				if h, err := e.c.HoldersOf(vip); err == nil && len(h) == 1 && h[0] == owner {
					return owner, standby
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("not ready within %v: want %s primary with the VIP and %s its standby (sync %v); status %+v", limit, owner, standby, needSync, last)
	return "", ""
}

func (e *pgEnv) dialClient(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := e.l.InNS(lab.Client, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (e *pgEnv) conn(host string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres password=lab-pg-password dbname=postgres sslmode=disable", host)
}

// trial injects fault against the owner while the client writes, and
// returns the write outage and the acknowledged writes lost.
func (e *pgEnv) trial(fault string, owner, other string) (time.Duration, []int64, int) {
	e.t.Helper()
	cfg, err := pgload.Connect(e.conn(vip), e.dialClient)
	if err != nil {
		e.t.Fatal(err)
	}
	w := pgload.Start(cfg, time.Now().UnixMicro())
	time.Sleep(time.Second)
	t0 := time.Now()
	switch fault {
	case "linkdown":
		err = e.l.LinkDown(owner)
	case "partition":
		// The old primary is cut off from its peers; the client still reaches it.
		err = e.l.Partition([]string{owner}, []string{other, e.c.Witness})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(liveness)
	for !w.AckedAfter(t0.Add(100*time.Millisecond)) || time.Since(t0) < 2*time.Second {
		if time.Now().After(deadline) {
			_, n, last := w.Stop()
			e.t.Fatalf("%s: no write acknowledged after the fault within %v (%d errors, last %v)", fault, liveness, n, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Keep writing a little on the new primary, then stop and heal.
	time.Sleep(500 * time.Millisecond)
	acks, errs, _ := w.Stop()
	if err := e.l.Heal(); err != nil {
		e.t.Fatal(err)
	}
	check, err := pgload.Connect(e.conn(e.l.Addr(other)), e.dialClient)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lost, _, err := pgload.Check(ctx, check, acks)
	if err != nil {
		e.t.Fatalf("reading the new primary %s: %v", other, err)
	}
	return pgload.Gap(acks, t0), lost, errs + len(acks)*0
}

// TestPostgresSyncFailover: sync: on, the primary's link goes down and then
// the primary is cut off from its peers while the client still reaches it;
// no acknowledged write is lost, and the old primary comes back as a
// streaming replica of the new one with the same data.
func TestPostgresSyncFailover(t *testing.T) {
	e := setupPG(t, "on")
	owner, other := e.waitReady("", "", true, 90*time.Second)
	ctx := context.Background()
	prep, err := pgload.Connect(e.conn(vip), e.dialClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgload.Prepare(ctx, prep); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{"linkdown", "partition"} {
		gap, lost, _ := e.trial(fault, owner, other)
		t.Logf("%s: %s → %s, write outage %v, acknowledged writes lost: %d", fault, owner, other, gap.Round(time.Millisecond), len(lost))
		if len(lost) > 0 {
			t.Errorf("%s: %d acknowledged writes lost in sync mode, e.g. %v", fault, len(lost), lost[:min(5, len(lost))])
		}
		// The old primary rejoins as a replica of the new one (pg_rewind)
		// and becomes its synchronous standby again.
		e.waitReady(other, owner, true, 60*time.Second)
		owner, other = other, owner
	}
	// Same data on both.
	time.Sleep(time.Second)
	var digests []string
	for _, h := range []string{"h1", "h2"} {
		cfg, err := pgload.Connect(e.conn(e.l.Addr(h)), e.dialClient)
		if err != nil {
			t.Fatal(err)
		}
		d, err := pgload.Digest(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Fatalf("replica and primary differ: %v", digests)
	}
	t.Logf("both members: %s", digests[0])
	if out, err := e.c.L.Run(e.c.Witness, bin, "history", "--api", e.l.Addr(e.c.Witness)+":7480"); err == nil {
		t.Logf("history:\n%s", out)
	} else if !strings.Contains(string(out), "") {
		t.Log(err)
	}
}
