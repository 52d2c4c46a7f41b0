// Package redislab runs a Redis group in the network-namespace lab (two
// database members h1, h2 and a witness h3; a VIP 10.77.0.100) and drives the
// data-loss trials of the lab tests and of bench/redisover: a client in the
// client namespace writes SET k<i> i (with WAIT 1 in sync: on) while a fault
// hits the primary, then the acknowledged writes are looked up on the new
// primary. Env runs the group under Baton; SentinelEnv (sentinel.go) under
// Redis Sentinel with three sentinels, with the same client, faults and
// checks. Needs root and Debian's redis-server (and redis-sentinel).
package redislab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/pgload"
)

// Server is Debian's redis-server.
const Server = "/usr/bin/redis-server"

// VIP is the Baton group's virtual IP; clients connect to VIP:6379.
const VIP = "10.77.0.100"

// Port is where every member's Redis listens.
const Port = 6379

// MaxLag is the async max_lag configured (16 MB).
const MaxLag = 16 << 20

// Password is every server's requirepass (and masterauth).
const Password = "lab-redis-password"

// Faults a trial can inject against the primary.
const (
	LinkDown  = "linkdown"  // the primary's link goes down
	Partition = "partition" // the primary is cut off from its peers; the client still reaches it
)

// Env is a running lab with a Baton Redis group.
type Env struct {
	L    *lab.Lab
	C    *lab.Cluster
	Base string // config, agent logs, data dirs (removed by Close)
	Mode string // sync: on | off
}

// Start builds the lab and starts Baton with sync mode `mode` (profile "" =
// default) and the VIP's tcp_reset as given (false is what the driver README
// advises for go-redis clients, whose pool waits a second once its dials were
// refused).
func Start(bin, mode, profile string, tcpReset bool) (_ *Env, err error) {
	if _, err := os.Stat(Server); err != nil {
		return nil, fmt.Errorf("redis-server is not installed (%v); apt-get install redis-server", err)
	}
	base, err := os.MkdirTemp("", "baton-redis-")
	if err != nil {
		return nil, err
	}
	e := &Env{Base: base, Mode: mode}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := os.WriteFile(filepath.Join(base, "redis.pass"), []byte(Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if e.L, err = lab.New(lab.Options{Hosts: 3}); err != nil {
		return nil, err
	}
	extra := fmt.Sprintf(`    driver:
      type: redis
      data_dir: %s/redis/{node}
      port: %d
      superuser: {user: default, password_file: %s/redis.pass}
      sync: %s
      max_lag: 16MB
`, base, Port, base, mode)
	e.C, err = e.L.StartCluster(lab.ClusterSpec{Bin: bin, Dir: base, Profile: profile, VIP: VIP + "/24",
		VIPOptions: fmt.Sprintf("tcp_reset: %v", tcpReset), NoWhoami: true, GroupExtra: extra})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Close stops the agents and the redis-servers they started (daemonised:
// killed by their pid files), tears the lab down and removes the files.
func (e *Env) Close() {
	if e.C != nil {
		e.C.Stop()
	}
	killPidFiles(filepath.Join(e.Base, "redis", "*", "redis.pid"))
	if e.L != nil {
		e.L.Close()
	}
	os.RemoveAll(e.Base)
}

// killPidFiles SIGKILLs the process named in each pid file matching glob.
func killPidFiles(glob string) {
	files, _ := filepath.Glob(glob)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
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
	LeaseMs int64 `json:"lease_ms"`
	Groups  []struct {
		Owner   string
		Epoch   uint64
		Sync    []string
		Note    string
		DBError string `json:"db_error"`
		Members []Member
	}
}

// Member is one member in the status.
type Member struct {
	Node, DB string
	Position uint64
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
// VIP, and the other member is its replica with the link up (sync on: its
// recorded synchronous standby). It returns the owner and the standby.
func (e *Env) WaitReady(owner string, limit time.Duration) (string, string, error) {
	standby := ""
	if owner != "" {
		standby = Other(owner)
	}
	deadline := time.Now().Add(limit)
	var last Status
	for time.Now().Before(deadline) {
		st, err := e.Status()
		if err == nil {
			last = st
			g := st.Groups[0]
			if owner == "" && g.Owner != "" {
				owner, standby = g.Owner, Other(g.Owner)
			}
			dbs := map[string]string{}
			for _, m := range g.Members {
				dbs[m.Node] = m.DB
			}
			syncOK := e.Mode == "off" || (len(g.Sync) == 1 && g.Sync[0] == standby)
			if owner != "" && g.Owner == owner && dbs[owner] == "primary" && dbs[standby] == "standby" && syncOK {
				// The replica must be streaming, not still copying the
				// dataset: a trial must start with the group whole.
				_, up, err := replState(e.L, standby)
				if h, herr := e.C.HoldersOf(VIP); err == nil && up && herr == nil && len(h) == 1 && h[0] == owner {
					return owner, standby, nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", "", fmt.Errorf("not ready within %v: want %s primary with the VIP and %s its replica (sync %s); status %+v",
		limit, owner, standby, e.Mode, last)
}

// Other is the other database member.
func Other(h string) string {
	if h == "h1" {
		return "h2"
	}
	return "h1"
}

// dialer opens TCP connections from l's client namespace.
func dialer(l *lab.Lab) Dialer {
	dial := l.Dialer(lab.Client)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, ClientTimeout)
		defer cancel()
		return dial(ctx, network, addr)
	}
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
	// LostFirst and LostAfter are how long after the fault the first and
	// the last lost write were acknowledged (negative: before it; 0 when
	// nothing was lost).
	LostFirst, LostAfter time.Duration
	Event                Event // the failover's history entry (Baton only)
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
// the other member owns the group and a write is acknowledged after that,
// heals, and checks the acknowledged writes on the new primary.
func (e *Env) Trial(fault, owner string, limit time.Duration) (Result, error) {
	owns := func(h string) bool {
		st, err := e.Status()
		return err == nil && st.Groups[0].Owner == h
	}
	c := redis.NewClient(Options(VIP+":"+strconv.Itoa(Port), dialer(e.L)))
	r, err := Trial(e.L, c, e.Mode == "on", fault, owner, []string{Other(owner), e.C.Witness}, owns, limit)
	if err != nil {
		return r, err
	}
	r.Event, err = e.LastFailover()
	return r, err
}

// Trial is the measurement every failover manager gets: the writer (through
// c, with WAIT when wait) runs for a second, fault hits owner (partition:
// owner is cut off from peers, the client still reaches it), and the trial
// waits until owns reports the other member as the primary and a write is
// acknowledged after that, at least 2 s after the fault (with wait the fault
// is healed as soon as the takeover is seen). The outage is the
// longest gap between acknowledgements after the fault; the acknowledged
// writes are then looked up on the new primary.
func Trial(l *lab.Lab, c redis.UniversalClient, wait bool, fault, owner string, peers []string, owns func(host string) bool, limit time.Duration) (Result, error) {
	r := Result{Fault: fault, From: owner, To: Other(owner)}
	w := StartWriter(c, wait, time.Now().UnixMicro())
	time.Sleep(time.Second)
	t0 := time.Now()
	var err error
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
			l.Heal()
			return r, fmt.Errorf("%s: %s did not take over within %v", fault, r.To, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Now()
	if wait {
		// A client that WAITs for a replica gets no confirmation from a new
		// primary until one follows it: with two members that is the old
		// primary, which needs the fault healed to rejoin.
		if err := l.Heal(); err != nil {
			w.Stop()
			return r, err
		}
	}
	for !w.AckedAfter(took) || time.Since(t0) < 2*time.Second {
		if time.Now().After(deadline) {
			_, n, last := w.Stop()
			l.Heal()
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
	check := redis.NewClient(Options(l.Addr(r.To)+":"+strconv.Itoa(Port), dialer(l)))
	defer check.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.Lost, err = Check(ctx, check, acks); err != nil {
		return r, fmt.Errorf("reading the new primary %s: %w", r.To, err)
	}
	lost := map[int64]bool{}
	for _, i := range r.Lost {
		lost[i] = true
	}
	first := true
	for _, a := range acks {
		if lost[a.I] {
			if d := a.At.Sub(t0); first {
				r.LostFirst, r.LostAfter, first = d, d, false
			} else {
				r.LostAfter = max(r.LostAfter, d)
			}
		}
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

// SameData waits until both members hold the same number of keys at the same
// replication offset, and returns it.
func SameData(l *lab.Lab, limit time.Duration) (string, error) {
	ctx := context.Background()
	var got []string
	for deadline := time.Now().Add(limit); ; time.Sleep(200 * time.Millisecond) {
		got = got[:0]
		for _, h := range []string{"h1", "h2"} {
			c := redis.NewClient(Options(l.Addr(h)+":"+strconv.Itoa(Port), dialer(l)))
			n, err := c.DBSize(ctx).Result()
			info, ierr := c.Info(ctx, "replication").Result()
			c.Close()
			if err != nil || ierr != nil {
				return "", fmt.Errorf("%s: %v %v", h, err, ierr)
			}
			off := ""
			for line := range strings.SplitSeq(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_repl_offset:"); ok {
					off = v
				}
			}
			got = append(got, fmt.Sprintf("%d keys at offset %s", n, off))
		}
		if got[0] == got[1] {
			return got[0], nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica and primary differ: %v", got)
		}
	}
}

// Switchover hands the group to `to` through the API (a planned switchover)
// while the writer runs, and measures the client's write pause and what it
// lost.
func (e *Env) Switchover(to string, limit time.Duration) (Result, error) {
	owns := func(h string) bool {
		st, err := e.Status()
		return err == nil && st.Groups[0].Owner == h && slices.ContainsFunc(st.Groups[0].Members, func(m Member) bool {
			return m.Node == h && m.DB == "primary"
		})
	}
	trigger := func() error {
		// Right after a start or a failover the quorum leadership may be
		// moving (the API answers 503 "retry in a moment"): retry for a while.
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if err = e.requestSwitchover(to); err == nil || !errors.Is(err, errRetry) || time.Now().After(deadline) {
				return err
			}
		}
	}
	c := redis.NewClient(Options(VIP+":"+strconv.Itoa(Port), dialer(e.L)))
	return Switch(e.L, c, e.Mode == "on", Other(to), to, trigger, owns, limit)
}

var errRetry = errors.New("no quorum leader reachable")

// requestSwitchover posts the switchover to any agent that takes it.
func (e *Env) requestSwitchover(to string) error {
	var last error
	hc := e.L.HTTPClient(lab.Client, 5*time.Second)
	for _, h := range []string{e.C.Witness, "h1", "h2"} {
		req, _ := http.NewRequest("POST", "http://"+e.L.Addr(h)+":7480/v1/groups/web/switchover", strings.NewReader(`{"to": "`+to+`"}`))
		req.Header.Set("Authorization", "Bearer lab-token-0123456789")
		resp, err := hc.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			return nil
		}
		last = fmt.Errorf("switchover via %s: %s: %s", h, resp.Status, body)
		if resp.StatusCode == http.StatusServiceUnavailable {
			last = fmt.Errorf("%w: %v", errRetry, last)
		}
	}
	return last
}

// Switch runs a planned switchover from `from` to `to` (trigger starts it,
// owns tells when `to` is the primary) under the writer, and returns the
// client-visible write pause (Outage) and the acknowledged writes missing
// on `to`.
func Switch(l *lab.Lab, c redis.UniversalClient, wait bool, from, to string, trigger func() error, owns func(string) bool, limit time.Duration) (Result, error) {
	r := Result{Fault: "switchover", From: from, To: to}
	w := StartWriter(c, wait, time.Now().UnixMicro())
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	if err := trigger(); err != nil {
		w.Stop()
		return r, err
	}
	deadline := time.Now().Add(limit)
	for !owns(to) {
		if time.Now().After(deadline) {
			w.Stop()
			return r, fmt.Errorf("switchover: %s did not take over within %v", to, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Now()
	for !w.AckedAfter(took) {
		if time.Now().After(deadline) {
			_, n, last := w.Stop()
			return r, fmt.Errorf("switchover: no write acknowledged after it within %v (%d errors, last %v)", limit, n, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	acks, _, _ := w.Stop()
	r.Outage, r.Acked = pgload.Gap(acks, t0), len(acks)
	check := redis.NewClient(Options(l.Addr(to)+":"+strconv.Itoa(Port), dialer(l)))
	defer check.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if r.Lost, err = Check(ctx, check, acks); err != nil {
		return r, fmt.Errorf("reading the new primary %s: %w", to, err)
	}
	return r, nil
}
