// Package pglab runs a PostgreSQL group under Baton in the network-namespace
// lab (two database members h1, h2 and a witness h3; a VIP 10.77.0.100) and
// drives the data-loss trials of the lab tests and of bench/pgover: a client
// in the client namespace writes sequential integers through the VIP while a
// fault hits the primary, then the acknowledged writes are checked on the new
// primary. PatroniEnv (patroni.go) runs the same group under Patroni and
// etcd, for the side-by-side benchmark, with the same client, faults and
// checks. Needs root and PostgreSQL 15 (Debian's postgresql package); the
// Patroni side also Debian's patroni, etcd-server and iputils-arping.
package pglab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/pgload"
)

// BinDir is where Debian's PostgreSQL 15 binaries live.
const BinDir = "/usr/lib/postgresql/15/bin"

// VIP is the group's virtual IP; clients connect to VIP:5432.
const VIP = "10.77.0.100"

// MaxLag is the async max_lag configured (16 MB).
const MaxLag = 16 << 20

const password = "lab-pg-password"

// Env is a running lab with a Baton PostgreSQL group.
type Env struct {
	L    *lab.Lab
	C    *lab.Cluster
	Base string // config, agent logs, data dirs (removed by Close)
	Mode string // sync: on | strict | off
}

// Faults a trial can inject against the primary.
const (
	LinkDown  = "linkdown"  // the primary's link goes down
	Partition = "partition" // the primary is cut off from its peers; the client still reaches it
)

// Start builds the lab and starts Baton with sync mode `mode`
// (profile "" = default).
func Start(bin, mode, profile string) (_ *Env, err error) {
	if _, err := os.Stat(filepath.Join(BinDir, "pg_ctl")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed (%v); apt-get install postgresql", err)
	}
	base, err := os.MkdirTemp("", "baton-pg-")
	if err != nil {
		return nil, err
	}
	e := &Env{Base: base, Mode: mode}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := WriteSecrets(base); err != nil {
		return nil, err
	}
	if e.L, err = lab.New(lab.Options{Hosts: 3}); err != nil {
		return nil, err
	}
	extra := DriverYAML(base, mode, e.L.Addr(lab.Client))
	e.C, err = e.L.StartCluster(lab.ClusterSpec{Bin: bin, Dir: base, Profile: profile, VIP: VIP + "/24", NoWhoami: true, GroupExtra: extra})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// WriteSecrets prepares base for a PostgreSQL group's files: readable by
// the postgres user, with the password files DriverYAML names.
func WriteSecrets(base string) error {
	if err := os.Chmod(base, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"pg.pass", "repl.pass"} {
		if err := os.WriteFile(filepath.Join(base, f), []byte(password+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// DriverYAML is the postgres driver section of a group (four-space
// indent) with data dirs under base/pg/{node} and the password files of
// WriteSecrets, in sync mode mode; client (the lab's client namespace) may
// connect to the databases besides the members.
func DriverYAML(base, mode, client string) string {
	return fmt.Sprintf(`    driver:
      type: postgres
      bin_dir: %s
      data_dir: %s/pg/{node}/pgdata
      superuser: {user: postgres, password_file: %s/pg.pass}
      replication: {user: replicator, password_file: %s/repl.pass}
      sync: %s
      max_lag: 16MB
      client_networks: [%s/32]
`, BinDir, base, base, base, mode, client)
}

// StopPostgres stops the PostgreSQL servers the agents started under base
// (pg_ctl daemonises them, so killing the agents leaves them running).
func StopPostgres(l *lab.Lab, base string) {
	for _, h := range l.Hosts() {
		dir := filepath.Join(base, "pg", h, "pgdata")
		if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
			_, _ = l.Run(h, "runuser", "-u", "postgres", "--", filepath.Join(BinDir, "pg_ctl"), "-D", dir, "-m", "immediate", "stop")
		}
	}
}

// Dialer opens TCP connections from l's client namespace for pgload,
// giving up on a connect after a second.
func Dialer(l *lab.Lab) pgload.Dialer { return dialer(l) }

// Close stops the agents and the PostgreSQL servers they started (pg_ctl
// daemonises them), tears the lab down and removes the files.
func (e *Env) Close() {
	if e.C != nil {
		e.C.Stop()
	}
	if e.L != nil {
		StopPostgres(e.L, e.Base)
		e.L.Close()
	}
	os.RemoveAll(e.Base)
}

// Logs returns the tail of every agent's log.
func (e *Env) Logs(n int) string {
	var out string
	for _, h := range e.L.Hosts() {
		b, _ := os.ReadFile(filepath.Join(e.Base, h+".log"))
		if len(b) > n {
			b = b[len(b)-n:]
		}
		out += fmt.Sprintf("=== %s.log (tail) ===\n%s\n", h, b)
	}
	return out
}

// Status is the part of `baton status --json` the trials read.
type Status struct {
	Groups []struct {
		Owner   string
		Epoch   uint64
		Sync    []string
		Members []struct {
			Node, DB string
			Position uint64
			LagBytes uint64 `json:"lag_bytes"`
		}
	}
}

// Status asks the witness.
func (e *Env) Status() (Status, error) {
	var st Status
	err := e.C.Status(e.C.Witness, &st)
	if err == nil && len(st.Groups) == 0 {
		err = errors.New("no groups")
	}
	return st, err
}

// WaitReady waits until owner ("" = either member) is primary, holds the
// VIP, and the other member is its streaming standby (in sync modes: its
// recorded synchronous standby). It returns the owner and the standby.
func (e *Env) WaitReady(owner string, limit time.Duration) (string, string, error) {
	standby := ""
	if owner != "" {
		standby = other(owner)
	}
	needSync := e.Mode != "off"
	deadline := time.Now().Add(limit)
	var last Status
	for time.Now().Before(deadline) {
		st, err := e.Status()
		if err == nil {
			last = st
			g := st.Groups[0]
			if owner == "" && g.Owner != "" {
				owner, standby = g.Owner, other(g.Owner)
			}
			dbs := map[string]string{}
			for _, m := range g.Members {
				dbs[m.Node] = m.DB
			}
			syncOK := !needSync || (len(g.Sync) == 1 && g.Sync[0] == standby)
			if owner != "" && g.Owner == owner && dbs[owner] == "primary" && dbs[standby] == "standby" && syncOK {
				if h, err := e.C.HoldersOf(VIP); err == nil && len(h) == 1 && h[0] == owner {
					return owner, standby, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", "", fmt.Errorf("not ready within %v: want %s primary with the VIP and %s its standby (sync %s); status %+v",
		limit, owner, standby, e.Mode, last)
}

func other(h string) string {
	if h == "h1" {
		return "h2"
	}
	return "h1"
}

// Dial opens a TCP connection from the client namespace.
func (e *Env) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialer(e.L)(ctx, network, addr)
}

// dialer opens TCP connections from l's client namespace, giving up on a
// connect after a second (a VIP in transit must not stall the load).
func dialer(l *lab.Lab) pgload.Dialer {
	dial := l.Dialer(lab.Client)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return dial(ctx, network, addr)
	}
}

// ConnString connects as the superuser to host:5432.
func ConnString(host string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres password=%s dbname=postgres sslmode=disable", host, password)
}

// Prepare creates the table through the VIP.
func (e *Env) Prepare(ctx context.Context) error { return prepare(ctx, e.L) }

func prepare(ctx context.Context, l *lab.Lab) error {
	cfg, err := pgload.Connect(ConnString(VIP), dialer(l))
	if err != nil {
		return err
	}
	return pgload.Prepare(ctx, cfg)
}

// Result is one trial.
type Result struct {
	Fault    string
	From, To string
	Outage   time.Duration // longest gap between acknowledged writes after the fault
	// KeptOutage counts only the acknowledged writes that survived: an old
	// primary that goes on acknowledging writes that are then lost shortens
	// Outage but not this.
	KeptOutage time.Duration
	Acked      int
	Lost       []int64 // acknowledged writes missing on the new primary
	Event      Event   // the failover's history entry
}

// Event is the part of a history entry the trials read.
type Event struct {
	From, To, Reason string
	PrimaryPos       uint64 `json:"primary_pos"`
	PromotedPos      uint64 `json:"promoted_pos"`
	LostBytes        uint64 `json:"maybe_lost_bytes"`
	LostMeasured     bool   `json:"lost_measured"`
	Detail           string
}

// Trial writes through the VIP, injects fault against owner, waits until
// the other member owns the group and a write is acknowledged after that
// (strict: heals as soon as the other member owns the group, since its
// commits wait for the old primary to rejoin), heals, and checks the
// acknowledged writes on the new primary.
func (e *Env) Trial(fault, owner string, limit time.Duration) (Result, error) {
	owns := func(h string) bool {
		st, err := e.Status()
		return err == nil && st.Groups[0].Owner == h
	}
	r, err := trial(e.L, fault, owner, []string{other(owner), e.C.Witness}, owns, e.Mode == "strict", limit)
	if err != nil {
		return r, err
	}
	r.Event, err = e.LastFailover()
	return r, err
}

// trial is the measurement every failover manager gets: a client in the
// client namespace writes through the VIP for a second, fault hits owner
// (partition: owner is cut off from peers, the client still reaches it),
// and the trial waits until owns reports the other member as the primary
// and a write is acknowledged after that, at least 2 s after the fault.
// healEarly heals as soon as the takeover is seen (a manager whose new
// primary blocks commits until the old one rejoins). The outage is the
// longest gap between acknowledgements after the fault; the acknowledged
// writes are then looked up on the new primary.
func trial(l *lab.Lab, fault, owner string, peers []string, owns func(host string) bool, healEarly bool, limit time.Duration) (Result, error) {
	r := Result{Fault: fault, From: owner, To: other(owner)}
	dial := dialer(l)
	cfg, err := pgload.Connect(ConnString(VIP), dial)
	if err != nil {
		return r, err
	}
	w := pgload.Start(cfg, time.Now().UnixMicro())
	time.Sleep(time.Second)
	t0 := time.Now()
	switch fault {
	case LinkDown:
		err = l.LinkDown(owner)
	case Partition:
		err = l.Partition([]string{owner}, peers)
	default:
		err = fmt.Errorf("unknown fault %q", fault)
	}
	if err != nil {
		w.Stop()
		return r, err
	}
	deadline := time.Now().Add(limit)
	for !owns(r.To) {
		if time.Now().After(deadline) {
			w.Stop()
			return r, fmt.Errorf("%s: %s did not take over within %v", fault, r.To, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Writes acknowledged before the takeover was seen may come from the
	// old primary still reachable by the client: wait for one after it.
	took := time.Now()
	if healEarly {
		if err := l.Heal(); err != nil {
			w.Stop()
			return r, err
		}
	}
	for !w.AckedAfter(took) || time.Since(t0) < 2*time.Second {
		if time.Now().After(deadline) {
			_, n, last := w.Stop()
			return r, fmt.Errorf("%s: no write acknowledged after the takeover within %v (%d errors, last %v)", fault, limit, n, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	acks, _, _ := w.Stop()
	if err := l.Heal(); err != nil {
		return r, err
	}
	r.Outage, r.Acked = pgload.Gap(acks, t0), len(acks)
	check, err := pgload.Connect(ConnString(l.Addr(r.To)), dial)
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.Lost, _, err = pgload.Check(ctx, check, acks); err != nil {
		return r, fmt.Errorf("reading the new primary %s: %w", r.To, err)
	}
	lost := map[int64]bool{}
	for _, i := range r.Lost {
		lost[i] = true
	}
	kept := slices.DeleteFunc(acks, func(a pgload.Ack) bool { return lost[a.I] })
	r.KeptOutage = pgload.Gap(kept, t0)
	return r, nil
}

// LastFailover returns the newest "failure" entry of the history.
func (e *Env) LastFailover() (Event, error) {
	out, err := e.L.Run(e.C.Witness, e.C.Spec.Bin, "history", "--json", "--api", e.L.Addr(e.C.Witness)+":7480")
	if err != nil {
		return Event{}, fmt.Errorf("baton history: %v: %s", err, out)
	}
	var evs []Event
	if err := json.Unmarshal(out, &evs); err != nil {
		return Event{}, fmt.Errorf("history JSON: %v: %s", err, out)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Reason == "failure" {
			return evs[i], nil
		}
	}
	return Event{}, fmt.Errorf("no failover in the history: %s", out)
}

// SameData waits until both database members hold the same rows and
// returns their digest.
func (e *Env) SameData(limit time.Duration) (string, error) {
	ctx := context.Background()
	var digests []string
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		digests = digests[:0]
		for _, h := range []string{"h1", "h2"} {
			cfg, err := pgload.Connect(ConnString(e.L.Addr(h)), e.Dial)
			if err != nil {
				return "", err
			}
			d, err := pgload.Digest(ctx, cfg)
			if err != nil {
				return "", fmt.Errorf("%s: %w", h, err)
			}
			digests = append(digests, d)
		}
		if digests[0] == digests[1] {
			return digests[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica and primary differ: %v", digests)
		}
	}
}
