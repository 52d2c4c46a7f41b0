package redislab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/baton-ha/baton/internal/lab"
)

// SentinelBin is Debian's redis-sentinel.
const SentinelBin = "/usr/bin/redis-sentinel"

// SentinelPort is where each sentinel listens.
const SentinelPort = 26379

// MasterName is the name the sentinels monitor the group under.
const MasterName = "lab"

// DownAfterMs is the sentinels' down-after-milliseconds.
const DownAfterMs = 1000

// SentinelEnv is the same group under Redis Sentinel: redis-server on h1
// (the first master) and h2 (its replica), a sentinel on each of h1, h2 and
// h3 (quorum 2), and clients that find the master through the sentinels
// (go-redis FailoverClient).
type SentinelEnv struct {
	L     *lab.Lab
	Base  string
	procs []*lab.Proc
}

// SentinelMissing says what is not installed, or "".
func SentinelMissing() string {
	for _, b := range []string{Server, SentinelBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Sprintf("%s is missing: apt-get install -y redis-server redis-sentinel", b)
		}
	}
	return ""
}

// StartSentinel builds the lab and starts the servers and the sentinels.
func StartSentinel() (_ *SentinelEnv, err error) {
	if m := SentinelMissing(); m != "" {
		return nil, fmt.Errorf("%s", m)
	}
	base, err := os.MkdirTemp("", "baton-sentinel-")
	if err != nil {
		return nil, err
	}
	e := &SentinelEnv{Base: base}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.L, err = lab.New(lab.Options{Hosts: 3}); err != nil {
		return nil, err
	}
	for _, h := range []string{"h1", "h2"} {
		dir := filepath.Join(base, h)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("port %d\nbind * -::*\nprotected-mode no\ndaemonize no\ndir %s\nrequirepass %s\nmasterauth %s\nreplica-read-only yes\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n",
			Port, dir, Password, Password)
		if h == "h2" {
			conf += fmt.Sprintf("replicaof %s %d\n", e.L.Addr("h1"), Port)
		}
		if err := e.start(h, "redis-"+h, Server, filepath.Join(dir, "redis.conf"), conf); err != nil {
			return nil, err
		}
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		dir := filepath.Join(base, "sentinel-"+h)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		conf := fmt.Sprintf("port %d\nbind * -::*\nprotected-mode no\ndaemonize no\ndir %s\n"+
			"sentinel monitor %s %s %d 2\nsentinel auth-pass %s %s\nsentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 10000\nsentinel parallel-syncs %s 1\n",
			SentinelPort, dir, MasterName, e.L.Addr("h1"), Port, MasterName, Password, MasterName, DownAfterMs, MasterName, MasterName)
		if err := e.start(h, "sentinel-"+h, SentinelBin, filepath.Join(dir, "sentinel.conf"), conf); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *SentinelEnv) start(host, name, bin, confPath, conf string) error {
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := e.L.Start(host, name, []string{bin, confPath}, nil, filepath.Join(e.Base, name+".log"))
	if err != nil {
		return err
	}
	e.procs = append(e.procs, p)
	return nil
}

// Close stops every server and sentinel and tears the lab down.
func (e *SentinelEnv) Close() {
	for _, p := range e.procs {
		_ = p.Kill()
	}
	if e.L != nil {
		e.L.Close()
	}
	os.RemoveAll(e.Base)
}

// Logs returns the tail of every sentinel's log.
func (e *SentinelEnv) Logs(n int) string {
	var out string
	for _, h := range []string{"h1", "h2", "h3"} {
		b, _ := os.ReadFile(filepath.Join(e.Base, "sentinel-"+h+".log"))
		if len(b) > n {
			b = b[len(b)-n:]
		}
		out += fmt.Sprintf("=== sentinel-%s.log (tail) ===\n%s\n", h, b)
	}
	return out
}

// Client is a Sentinel-aware client from the client namespace, with the
// same timeouts as the client of the Baton group.
func (e *SentinelEnv) Client() *redis.Client {
	var addrs []string
	for _, h := range []string{"h1", "h2", "h3"} {
		addrs = append(addrs, e.L.Addr(h)+":"+strconv.Itoa(SentinelPort))
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: addrs, Password: Password,
		Protocol: 2, MaxRetries: -1, PoolSize: 1, DialerRetries: 1, DialTimeout: ClientTimeout, ReadTimeout: ClientTimeout,
		WriteTimeout: ClientTimeout, ContextTimeoutEnabled: true, DisableIdentity: true, Dialer: dialer(e.L)})
}

// master asks the sentinel on host which server is the master (a host name).
func (e *SentinelEnv) master(host string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: e.L.Addr(host) + ":" + strconv.Itoa(SentinelPort), Protocol: 2,
		DialTimeout: ClientTimeout, ReadTimeout: ClientTimeout, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true, Dialer: dialer(e.L)})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", err
	}
	for _, h := range []string{"h1", "h2"} {
		if len(a) == 2 && a[0] == e.L.Addr(h) {
			return h, nil
		}
	}
	return "", fmt.Errorf("sentinel on %s names master %v", host, a)
}

// role reads INFO replication on host's server: its role and, on a replica,
// whether its link is up (and no full resynchronisation is in progress).
func (e *SentinelEnv) role(host string) (string, bool, error) { return replState(e.L, host) }

func replState(l *lab.Lab, host string) (string, bool, error) {
	c := redis.NewClient(Options(l.Addr(host)+":"+strconv.Itoa(Port), dialer(l)))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", false, err
	}
	return infoField(s, "role"), infoField(s, "master_link_status") == "up" && infoField(s, "master_sync_in_progress") == "0", nil
}

func infoField(s, key string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// WaitReady waits until every sentinel names owner ("" = whichever they
// agree on) as master, it is a master, the other server its replica with
// the link up, and every sentinel knows the others and that replica.
func (e *SentinelEnv) WaitReady(owner string, limit time.Duration) (string, string, error) {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		m, err := e.agreed()
		switch {
		case err != nil:
			last = err.Error()
		case owner != "" && m != owner:
			last = "sentinels name " + m
		default:
			r1, _, err1 := e.role(m)
			r2, up, err2 := e.role(Other(m))
			if err1 == nil && err2 == nil && r1 == "master" && r2 == "slave" && up {
				if err := e.informed(Other(m)); err != nil {
					last = err.Error()
					break
				}
				return m, Other(m), nil
			}
			last = fmt.Sprintf("%s is %s (%v), %s is %s link up %v (%v)", m, r1, err1, Other(m), r2, up, err2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", "", fmt.Errorf("sentinel group not ready within %v (want %q master): %s", limit, owner, last)
}

// agreed returns the master every sentinel names.
func (e *SentinelEnv) agreed() (string, error) {
	var m string
	for _, h := range []string{"h1", "h2", "h3"} {
		x, err := e.master(h)
		if err != nil {
			return "", err
		}
		if m != "" && x != m {
			return "", fmt.Errorf("sentinels disagree: %s and %s", m, x)
		}
		m = x
	}
	return m, nil
}

// informed reports whether every sentinel knows the other two and sees the
// replica other as healthy: a sentinel fails over only to a replica it has
// discovered (INFO every 10 s) and only with the votes of sentinels it
// knows (hellos every 2 s), so a trial must not start before.
func (e *SentinelEnv) informed(other string) error {
	for _, h := range []string{"h1", "h2", "h3"} {
		c := redis.NewSentinelClient(&redis.Options{Addr: e.L.Addr(h) + ":" + strconv.Itoa(SentinelPort), Protocol: 2,
			DialTimeout: ClientTimeout, ReadTimeout: ClientTimeout, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true, Dialer: dialer(e.L)})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		peers, err := c.Sentinels(ctx, MasterName).Result()
		reps, rerr := c.Replicas(ctx, MasterName).Result()
		cancel()
		c.Close()
		if err != nil || rerr != nil {
			return fmt.Errorf("sentinel on %s: %v %v", h, err, rerr)
		}
		if len(peers) < 2 {
			return fmt.Errorf("sentinel on %s knows %d other sentinels", h, len(peers))
		}
		ok := false
		for _, r := range reps {
			if r["ip"] == e.L.Addr(other) && !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") && r["master-link-status"] == "ok" {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("sentinel on %s does not see %s as a healthy replica yet", h, other)
		}
	}
	return nil
}

// Trial runs the same trial as Env.Trial: the takeover is seen when the
// sentinels the client can ask without the old master's side (h3's)
// name the other server and it is a master.
func (e *SentinelEnv) Trial(fault, owner string, limit time.Duration) (Result, error) {
	owns := func(h string) bool {
		m, err := e.master("h3")
		if err != nil || m != h {
			return false
		}
		r, _, err := e.role(h)
		return err == nil && r == "master"
	}
	return Trial(e.L, e.Client(), false, fault, owner, []string{Other(owner), "h3"}, owns, limit)
}

// SentinelVersion is redis-sentinel's version line.
func SentinelVersion() string {
	b, err := exec.Command(SentinelBin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Switchover asks the sentinels for a failover (SENTINEL FAILOVER, Redis'
// planned switchover through Sentinel) while the writer runs.
func (e *SentinelEnv) Switchover(to string, limit time.Duration) (Result, error) {
	trigger := func() error {
		c := redis.NewSentinelClient(&redis.Options{Addr: e.L.Addr("h3") + ":" + strconv.Itoa(SentinelPort), Protocol: 2,
			DialTimeout: ClientTimeout, ReadTimeout: 2 * time.Second, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true, Dialer: dialer(e.L)})
		defer c.Close()
		return c.Failover(context.Background(), MasterName).Err()
	}
	owns := func(h string) bool {
		m, err := e.agreed()
		if err != nil || m != h {
			return false
		}
		r, _, err := e.role(h)
		return err == nil && r == "master"
	}
	return Switch(e.L, e.Client(), false, Other(to), to, trigger, owns, limit)
}
