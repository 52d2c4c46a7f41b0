package pglab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/pgload"
)

// The same group under Patroni, set up the way it is commonly deployed
// without vip-manager: Debian's patroni and etcd-server packages, one etcd
// member on the witness host h3, Patroni on h1 and h2 managing PostgreSQL 15
// as the postgres user, and the VIP moved by a callback script that Patroni
// runs on start, stop and role change.

// PatroniTimings are Patroni's DCS timings (bootstrap.dcs), in seconds.
type PatroniTimings struct {
	TTL, LoopWait, RetryTimeout int
}

// PatroniDefaults are Patroni's documented defaults, which its Debian
// config template also ships.
var PatroniDefaults = PatroniTimings{TTL: 30, LoopWait: 10, RetryTimeout: 10}

// PatroniFast is a tuned setting that still satisfies Patroni's rule
// loop_wait + 2·retry_timeout ≤ ttl.
var PatroniFast = PatroniTimings{TTL: 10, LoopWait: 2, RetryTimeout: 4}

func (t PatroniTimings) String() string {
	return fmt.Sprintf("ttl %d, loop_wait %d, retry_timeout %d", t.TTL, t.LoopWait, t.RetryTimeout)
}

const (
	patroniBin = "/usr/bin/patroni"
	etcdBin    = "/usr/bin/etcd"
	restPort   = 8008
	scope      = "batonlab"
)

// PatroniEnv is a running lab with a Patroni PostgreSQL group.
type PatroniEnv struct {
	L       *lab.Lab
	Base    string // configs, logs, data dirs (removed by Close)
	Mode    string // sync: on (synchronous_mode), strict (also synchronous_mode_strict) | off
	Timings PatroniTimings
	procs   map[string]*lab.Proc
}

// PatroniMissing says which of Patroni, etcd and arping is not installed,
// with the command that installs them; "" when all are there.
func PatroniMissing() string {
	var miss []string
	for _, p := range []string{patroniBin, etcdBin, "/usr/bin/arping"} {
		if _, err := os.Stat(p); err != nil {
			miss = append(miss, p)
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("%s not installed: apt-get install -y patroni etcd-server iputils-arping", strings.Join(miss, ", "))
}

// StartPatroni builds the lab, starts etcd on h3 and Patroni on h1 and h2.
// h1 starts first so that it bootstraps the cluster (initdb) and h2 clones
// it (pg_basebackup).
func StartPatroni(mode string, t PatroniTimings) (_ *PatroniEnv, err error) {
	if m := PatroniMissing(); m != "" {
		return nil, fmt.Errorf("%s", m)
	}
	if _, err := os.Stat(filepath.Join(BinDir, "pg_ctl")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed (%v); apt-get install postgresql", err)
	}
	if mode != "on" && mode != "off" && mode != "strict" {
		return nil, fmt.Errorf("patroni: mode %q: want on, strict or off", mode)
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	base, err := os.MkdirTemp("", "baton-patroni-")
	if err != nil {
		return nil, err
	}
	e := &PatroniEnv{Base: base, Mode: mode, Timings: t, procs: map[string]*lab.Proc{}}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, err
	}
	if e.L, err = lab.New(lab.Options{Hosts: 3}); err != nil {
		return nil, err
	}
	script := filepath.Join(base, "vip.sh")
	if err := os.WriteFile(script, []byte(vipScript(e.L.Iface())), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(base, "etcd"), 0o700); err != nil {
		return nil, err
	}
	etcd := "http://" + e.L.Addr("h3")
	if e.procs["h3"], err = e.L.Start("h3", "etcd", []string{etcdBin,
		"--name", "h3", "--data-dir", filepath.Join(base, "etcd"),
		"--listen-client-urls", etcd + ":2379", "--advertise-client-urls", etcd + ":2379",
		"--listen-peer-urls", etcd + ":2380", "--initial-advertise-peer-urls", etcd + ":2380",
		"--initial-cluster", "h3=" + etcd + ":2380", "--initial-cluster-state", "new",
	}, nil, filepath.Join(base, "h3.log")); err != nil {
		return nil, err
	}
	for _, h := range []string{"h1", "h2"} {
		dir := filepath.Join(base, h)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "patroni.yml")
		if err := os.WriteFile(conf, []byte(e.config(h, dir, script)), 0o644); err != nil {
			return nil, err
		}
		// Patroni runs as postgres; the callback needs CAP_NET_ADMIN for
		// the address and CAP_NET_RAW for arping. Deployments usually grant
		// that through sudo; ambient capabilities do the same here without
		// touching /etc/sudoers.
		argv := []string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
			"--inh-caps=+net_admin,+net_raw", "--ambient-caps=+net_admin,+net_raw", patroniBin, conf}
		if e.procs[h], err = e.L.Start(h, "patroni", argv, []string{"HOME=" + dir}, filepath.Join(base, h+".log")); err != nil {
			return nil, err
		}
		if h == "h1" {
			if err := e.waitRole("h1", "leader", 90*time.Second); err != nil {
				return nil, fmt.Errorf("patroni bootstrap on h1: %w", err)
			}
		}
	}
	return e, nil
}

// vipScript is the callback: Patroni calls it with the action, the role and
// the scope. The primary ("master" in Patroni 3.0, "primary" later) adds the
// VIP and announces it with gratuitous ARP; any other role, and a stop,
// removes it.
func vipScript(iface string) string {
	return fmt.Sprintf(`#!/bin/sh
# Patroni callback: $1 = on_start | on_stop | on_role_change, $2 = role, $3 = scope.
vip=%[1]s iface=%[2]s
case "$1:$2" in
on_stop:*)
	ip addr del "$vip/24" dev "$iface" 2>/dev/null ;;
*:master|*:primary)
	ip addr add "$vip/24" dev "$iface" 2>/dev/null
	arping -q -U -c 1 -I "$iface" "$vip" ;;
*)
	ip addr del "$vip/24" dev "$iface" 2>/dev/null ;;
esac
exit 0
`, VIP, iface)
}

// config is a member's patroni.yml.
func (e *PatroniEnv) config(h, dir, script string) string {
	addr := e.L.Addr(h)
	sync := e.Mode != "off"
	return fmt.Sprintf(`scope: %[1]s
name: %[2]s
restapi:
  listen: %[3]s:%[4]d
  connect_address: %[3]s:%[4]d
etcd3:
  hosts: %[5]s:2379
bootstrap:
  dcs:
    ttl: %[6]d
    loop_wait: %[7]d
    retry_timeout: %[8]d
    maximum_lag_on_failover: 1048576
    synchronous_mode: %[9]t
    synchronous_mode_strict: %[10]t
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_keep_size: 256MB
  initdb:
  - encoding: UTF8
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 md5
  - host all all ::1/128 md5
  - host replication replicator 127.0.0.1/32 md5
  - host replication replicator ::1/128 md5
  - host replication replicator 10.77.0.0/24 md5
  - host all all 10.77.0.0/24 md5
postgresql:
  listen: '*:5432'
  connect_address: %[3]s:5432
  data_dir: %[11]s/data
  bin_dir: %[12]s
  pgpass: %[11]s/pgpass
  authentication:
    superuser: {username: postgres, password: %[13]s}
    replication: {username: replicator, password: %[13]s}
  parameters:
    unix_socket_directories: %[11]s
  callbacks:
    on_start: %[14]s
    on_stop: %[14]s
    on_role_change: %[14]s
`, scope, h, addr, restPort, e.L.Addr("h3"), e.Timings.TTL, e.Timings.LoopWait, e.Timings.RetryTimeout,
		sync, e.Mode == "strict", dir, BinDir, password, script)
}

// Close kills Patroni and etcd, stops the PostgreSQL servers (Patroni
// detaches the postmaster from its own process group), tears the lab down
// and removes the files.
func (e *PatroniEnv) Close() {
	for _, p := range e.procs {
		if p != nil {
			_ = p.Kill()
		}
	}
	if e.L != nil {
		for _, h := range []string{"h1", "h2"} {
			dir := filepath.Join(e.Base, h, "data")
			if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
				_, _ = e.L.Run(h, "runuser", "-u", "postgres", "--", filepath.Join(BinDir, "pg_ctl"), "-D", dir, "-m", "immediate", "stop")
			}
		}
		e.L.Close()
	}
	os.RemoveAll(e.Base)
}

// Logs returns the tail of the Patroni and etcd logs.
func (e *PatroniEnv) Logs(n int) string {
	var out string
	for _, h := range []string{"h1", "h2", "h3"} {
		b, _ := os.ReadFile(filepath.Join(e.Base, h+".log"))
		if len(b) > n {
			b = b[len(b)-n:]
		}
		out += fmt.Sprintf("=== %s.log (tail) ===\n%s\n", h, b)
	}
	return out
}

// PatroniMember is a member as Patroni's GET /cluster lists it.
type PatroniMember struct {
	Name, Role, State string
	Timeline          int
	Lag               any // bytes, or "unknown"
}

// Cluster asks a member's REST API for the cluster view.
func (e *PatroniEnv) Cluster(h string) ([]PatroniMember, error) {
	code, body, err := e.rest(h, "/cluster")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s /cluster: %d %s", h, code, body)
	}
	var c struct{ Members []PatroniMember }
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%s /cluster: %v", h, err)
	}
	return c.Members, nil
}

// IsPrimary reports whether h's Patroni says it runs the primary (GET
// /primary answers 200, what a load balancer's health check would ask).
func (e *PatroniEnv) IsPrimary(h string) bool {
	code, _, err := e.rest(h, "/primary")
	return err == nil && code == http.StatusOK
}

// rest sends a GET to h's Patroni REST API from the client namespace.
func (e *PatroniEnv) rest(h, path string) (code int, body []byte, err error) {
	addr := net.JoinHostPort(e.L.Addr(h), strconv.Itoa(restPort))
	resp, err := e.L.HTTPClient(lab.Client, time.Second).Get("http://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func (e *PatroniEnv) waitRole(h, role string, limit time.Duration) error {
	var last []PatroniMember
	var err error
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last, err = e.Cluster(h); err == nil {
			for _, m := range last {
				if m.Name == h && m.Role == role && m.State == "running" {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%s not %s within %v: %+v (%v)", h, role, limit, last, err)
}

// WaitReady waits until owner ("" = either member) is Patroni's leader,
// holds the VIP alone, and the other member streams from it (in sync modes
// as its synchronous standby). It returns the owner and the standby.
func (e *PatroniEnv) WaitReady(owner string, limit time.Duration) (string, string, error) {
	deadline := time.Now().Add(limit)
	var why string
	for time.Now().Before(deadline) {
		why = e.ready(&owner)
		if why == "" {
			return owner, other(owner), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", "", fmt.Errorf("not ready within %v: want %q primary with the VIP and the other member its standby (sync %s): %s",
		limit, owner, e.Mode, why)
}

// ready says what is missing, or "".
func (e *PatroniEnv) ready(owner *string) string {
	var members []PatroniMember
	var err error
	for _, h := range []string{"h1", "h2"} {
		if members, err = e.Cluster(h); err == nil {
			break
		}
	}
	if err != nil {
		return err.Error()
	}
	roles := map[string]string{}
	for _, m := range members {
		if m.State == "running" {
			roles[m.Name] = m.Role
		}
	}
	if *owner == "" {
		for h, r := range roles {
			if r == "leader" {
				*owner = h
			}
		}
	}
	standby := other(*owner)
	want := "replica"
	if e.Mode != "off" {
		want = "sync_standby"
	}
	if *owner == "" || roles[*owner] != "leader" || roles[standby] != want {
		return fmt.Sprintf("members %+v", members)
	}
	state, err := e.replication(*owner)
	if err != nil {
		return err.Error()
	}
	if state[standby] != "streaming" {
		return fmt.Sprintf("%s is not streaming from %s: %v", standby, *owner, state)
	}
	holders, err := vipHolders(e.L)
	if err != nil {
		return err.Error()
	}
	if len(holders) != 1 || holders[0] != *owner {
		return fmt.Sprintf("VIP on %v", holders)
	}
	return ""
}

// replication returns pg_stat_replication's state per application_name
// (Patroni's member name) on h.
func (e *PatroniEnv) replication(h string) (map[string]string, error) {
	cfg, err := pgload.Connect(ConnString(e.L.Addr(h)), dialer(e.L))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT application_name, state FROM pg_stat_replication")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for rows.Next() {
		var name, state string
		if err := rows.Scan(&name, &state); err != nil {
			return nil, err
		}
		out[name] = state
	}
	return out, rows.Err()
}

// vipHolders lists the hosts whose interface carries the VIP.
func vipHolders(l *lab.Lab) ([]string, error) {
	var out []string
	for _, h := range l.Hosts() {
		b, err := l.Run(h, "ip", "-o", "addr", "show", "dev", l.Iface())
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(b), " "+VIP+"/") {
			out = append(out, h)
		}
	}
	return out, nil
}

// Prepare creates the table through the VIP.
func (e *PatroniEnv) Prepare(ctx context.Context) error { return prepare(ctx, e.L) }

// Trial is Env.Trial under Patroni: the same client, fault and checks; the
// takeover is the other member's REST API answering 200 on /primary.
// Result.Event stays empty (Patroni keeps no such history).
func (e *PatroniEnv) Trial(fault, owner string, limit time.Duration) (Result, error) {
	return trial(e.L, fault, owner, []string{other(owner), "h3"}, e.IsPrimary, e.Mode == "strict", limit)
}

// PatroniVersions returns the first line of `patroni --version` and of
// `etcd --version`.
func PatroniVersions() (patroni, etcd string) {
	first := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "unknown"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	return first(patroniBin, "--version"), first(etcdBin, "--version")
}
