package labtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
      max_lag: 16MB
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
func (e *pgEnv) trial(fault, mode string, owner, other string) (time.Duration, []int64, int) {
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
	if mode == "strict" {
		// strict never falls back to asynchronous replication: with one
		// standby, the new primary's commits wait until the old primary
		// has rejoined as its synchronous standby. Heal once the new owner
		// is in place; the outage includes the rejoin.
		for deadline := time.Now().Add(liveness); ; time.Sleep(50 * time.Millisecond) {
			if st, err := e.status(e.c.Witness); err == nil && st.Groups[0].Owner == other {
				break
			}
			if time.Now().After(deadline) {
				e.t.Fatalf("%s: %s did not take over within %v", fault, other, liveness)
			}
		}
		if err := e.l.Heal(); err != nil {
			e.t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * liveness)
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

// TestPostgresFailover runs, per sync mode, the primary's link going down
// and then the primary cut off from its peers while the client still
// reaches it. In sync on and strict no acknowledged write may be lost; in
// async mode the history records the positions and the bytes that may have
// been lost, within max_lag. Each time the old primary comes back as a
// streaming replica of the new one (pg_rewind), and at the end both hold
// the same data.
func TestPostgresFailover(t *testing.T) {
	for _, mode := range []string{"on", "strict", "off"} {
		t.Run("sync-"+mode, func(t *testing.T) { testPostgresFailover(t, mode) })
	}
}

const pgMaxLag = 16 << 20

func testPostgresFailover(t *testing.T, mode string) {
	e := setupPG(t, mode)
	needSync := mode != "off"
	owner, other := e.waitReady("", "", needSync, 90*time.Second)
	ctx := context.Background()
	prep, err := pgload.Connect(e.conn(vip), e.dialClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := pgload.Prepare(ctx, prep); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{"linkdown", "partition"} {
		gap, lost, _ := e.trial(fault, mode, owner, other)
		t.Logf("sync %s, %s: %s → %s, write outage %v, acknowledged writes lost: %d", mode, fault, owner, other, gap.Round(time.Millisecond), len(lost))
		if needSync && len(lost) > 0 {
			t.Errorf("%s: %d acknowledged writes lost in sync mode %s, e.g. %v", fault, len(lost), mode, lost[:min(5, len(lost))])
		}
		ev := e.lastFailover(t)
		if ev.From != owner || ev.To != other || ev.PromotedPos == 0 {
			t.Errorf("%s: history entry %+v, want %s → %s with positions", fault, ev, owner, other)
		}
		if !needSync && ev.LostBytes > pgMaxLag {
			t.Errorf("%s: up to %d bytes lost, beyond max_lag %d", fault, ev.LostBytes, pgMaxLag)
		}
		// The old primary rejoins as a replica of the new one (pg_rewind).
		e.waitReady(other, owner, needSync, 60*time.Second)
		owner, other = other, owner
	}
	e.sameData(t)
}

type pgEvent struct {
	From, To, Reason string
	PrimaryPos       uint64 `json:"primary_pos"`
	PromotedPos      uint64 `json:"promoted_pos"`
	LostBytes        uint64 `json:"maybe_lost_bytes"`
}

func (e *pgEnv) lastFailover(t *testing.T) pgEvent {
	t.Helper()
	out, err := e.l.Run(e.c.Witness, bin, "history", "--json", "--api", e.l.Addr(e.c.Witness)+":7480")
	if err != nil {
		t.Fatalf("baton history: %v\n%s", err, out)
	}
	var evs []pgEvent
	if err := json.Unmarshal(out, &evs); err != nil {
		t.Fatalf("history JSON: %v\n%s", err, out)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Reason == "failure" {
			return evs[i]
		}
	}
	t.Fatalf("no failover in the history:\n%s", out)
	return pgEvent{}
}

// sameData compares the table on both database members.
func (e *pgEnv) sameData(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var digests []string
	for deadline := time.Now().Add(liveness); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		digests = digests[:0]
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
		if digests[0] == digests[1] {
			t.Logf("both members: %s", digests[0])
			return
		}
	}
	t.Fatalf("replica and primary differ: %v", digests)
}
