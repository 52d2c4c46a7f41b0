package driver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/baton-ha/baton/internal/config"
)

// redisBinDir returns where redis-server is, or fails the test saying how to get it (scripts/test installs it);
// -short skips instead.
func redisBinDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/redis-server"); err != nil {
		why := "redis-server is not installed (apt-get install redis-server, or run scripts/test)"
		if testing.Short() {
			t.Skip(why)
		}
		t.Fatal(why)
	}
	return "/usr/bin"
}

const redisPassword = "red is \"secret\""

// redisWorld is a scratch directory with a password file and the members' ports.
type redisWorld struct {
	t      *testing.T
	bin    string
	base   string
	pwFile string
	peers  []Peer
}

func newRedisWorld(t *testing.T, nodes ...string) *redisWorld {
	t.Helper()
	w := &redisWorld{t: t, bin: redisBinDir(t), base: t.TempDir()}
	w.pwFile = filepath.Join(w.base, "redis.pass")
	if err := os.WriteFile(w.pwFile, []byte(redisPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		w.peers = append(w.peers, Peer{Node: n, Host: "127.0.0.1", Port: freePort(t)})
	}
	return w
}

func (w *redisWorld) peer(node string) Peer {
	for _, p := range w.peers {
		if p.Node == node {
			return p
		}
	}
	w.t.Fatalf("no member %s", node)
	return Peer{}
}

func (w *redisWorld) cfg(node string) *config.Driver {
	return &config.Driver{Type: "redis", BinDir: w.bin, DataDir: filepath.Join(w.base, node), Port: w.peer(node).Port,
		Superuser: &config.Credential{User: "default", PasswordFile: w.pwFile}}
}

// driver builds node's driver; the cleanup stops its server (and kills it by pid if SHUTDOWN did not end it).
func (w *redisWorld) driver(node string) *Redis {
	w.t.Helper()
	d, err := New(w.cfg(node), Options{Cluster: "t", Group: "cache", Node: node, Peers: w.peers, Logger: testLogger(w.t)})
	if err != nil {
		w.t.Fatal(err)
	}
	r := d.(*Redis)
	w.t.Cleanup(func() {
		pid := r.serverPID()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil && pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		r.Close()
	})
	return r
}

// client is an application's connection to node's server.
func (w *redisWorld) client(node string) *redis.Client {
	w.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: w.peer(node).addr(), Password: redisPassword, Protocol: 2, MaxRetries: -1,
		DisableIdentity: true, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	w.t.Cleanup(func() { c.Close() })
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds (generous bound: the machine is shared).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustState(t *testing.T, d *Redis) State {
	t.Helper()
	st, err := d.State(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatalf("%s: State: %v", d.opts.Node, err)
	}
	return st
}

// pair starts n1 as the primary under epoch 1 and n2 as its replica.
func redisPair(t *testing.T) (*redisWorld, *Redis, *Redis) {
	w := newRedisWorld(t, "n1", "n2")
	n1, n2 := w.driver("n1"), w.driver("n2")
	ctx := ctxT(t, 60*time.Second)
	if err := n1.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := n1.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := n2.Bootstrap(ctx, &Peer{Node: "n1", Host: "127.0.0.1", Port: w.peer("n1").Port}); err != nil {
		t.Fatal(err)
	}
	return w, n1, n2
}

func TestRedisBootstrapStartsFencedPromoteAndFollow(t *testing.T) {
	w := newRedisWorld(t, "n1", "n2")
	n1, n2 := w.driver("n1"), w.driver("n2")
	ctx := ctxT(t, 60*time.Second)
	if st := mustState(t, n1); st.Role != RoleStopped || st.Pos != (Position{}) {
		t.Fatalf("before bootstrap: %+v, want stopped at position 0", st)
	}
	if err := n1.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c1 := w.client("n1")
	// A fresh server is fenced until Promote: no write is acknowledged.
	if err := c1.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("write before promote: %v, want NOREPLICAS (fenced at start)", err)
	}
	if err := n1.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := c1.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatalf("write after promote: %v", err)
		}
	}
	st1 := mustState(t, n1)
	if st1.Role != RolePrimary || st1.Unrelated != "" {
		t.Fatalf("primary state %+v", st1)
	}
	if err := n2.Bootstrap(ctx, &Peer{Node: "n1", Host: "127.0.0.1", Port: w.peer("n1").Port}); err != nil {
		t.Fatal(err)
	}
	c2 := w.client("n2")
	if v, err := c2.Get(ctx, "k99").Result(); err != nil || v != "99" {
		t.Fatalf("replica GET k99 = %q, %v", v, err)
	}
	if err := c2.Set(ctx, "x", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("write on the replica: %v, want READONLY", err)
	}
	waitFor(t, "positions to match and n1 to list n2", func() bool {
		a, b := mustState(t, n1), mustState(t, n2)
		_, ok := a.Lag["n2"]
		return ok && a.Pos == b.Pos && b.Role == RoleStandby && b.Unrelated == ""
	})
	// Follow again is the common case and returns at once.
	t0 := time.Now()
	if err := n2.Follow(ctx, w.peer("n1")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("repeated Follow took %v", d)
	}
	if err := n2.Follow(ctx, w.peer("n2")); !errors.Is(err, ErrConfig) {
		t.Errorf("following itself: %v, want ErrConfig", err)
	}
}

func TestRedisFenceRefusesWritesAndKillsClients(t *testing.T) {
	w, n1, _ := redisPair(t)
	ctx := ctxT(t, 30*time.Second)
	c := w.client("n1")
	if err := c.Set(ctx, "a", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// A client blocked on the server (BLPOP) learns of the fence at once: its connection is killed.
	blocked := make(chan error, 1)
	go func() { blocked <- c.BLPop(context.Background(), 0, "nothing").Err() }()
	time.Sleep(50 * time.Millisecond)
	t0 := time.Now()
	if err := n1.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("BLPOP returned without error after the fence")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked client was not disconnected by the fence")
	}
	if took > time.Second {
		t.Errorf("Fence took %v; it must act within the lease's guard interval", took)
	}
	if err := c.Set(ctx, "b", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("write after fence: %v, want NOREPLICAS", err)
	}
	if v, err := c.Get(ctx, "a").Result(); err != nil || v != "1" {
		t.Fatalf("reads still work after a fence: %q, %v", v, err)
	}
	// Promote lifts it.
	if err := n1.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "b", 1, 0).Err(); err != nil {
		t.Fatalf("write after promote: %v", err)
	}
}

func TestRedisFenceOnReplicaKeepsReplicating(t *testing.T) {
	w, n1, n2 := redisPair(t)
	ctx := ctxT(t, 30*time.Second)
	if err := n2.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.client("n1").Set(ctx, "after", "fence", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fenced replica to receive the write", func() bool {
		v, _ := w.client("n2").Get(ctx, "after").Result()
		return v == "fence"
	})
	if st := mustState(t, n1); st.Role != RolePrimary {
		t.Fatalf("n1: %+v", st)
	}
}

func TestRedisSyncOnRefusesWritesWithoutReplica(t *testing.T) {
	w, n1, n2 := redisPair(t)
	ctx := ctxT(t, 30*time.Second)
	if err := n1.SetSync(ctx, []string{"n2"}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to report n2 synchronous", func() bool { return slices.Equal(mustState(t, n1).Sync, []string{"n2"}) })
	c := w.client("n1")
	if err := c.Set(ctx, "k", 1, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v: the replica did not acknowledge", n, err)
	}
	if err := n2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 to report no synchronous replica", func() bool { return len(mustState(t, n1).Sync) == 0 })
	if err := c.Set(ctx, "k2", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("write with the only replica gone, sync on: %v, want NOREPLICAS", err)
	}
	if err := n1.SetSync(ctx, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k2", 1, 0).Err(); err != nil {
		t.Fatalf("write after dropping to asynchronous: %v", err)
	}
	if err := n1.SetSync(ctx, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k3", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("strict with no replica: %v, want NOREPLICAS", err)
	}
}

func TestRedisFailoverAndRejoinMeasuresLoss(t *testing.T) {
	w, n1, n2 := redisPair(t)
	ctx := ctxT(t, 60*time.Second)
	c1 := w.client("n1")
	for i := range 50 {
		if err := c1.Set(ctx, "pre"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n2 to catch up", func() bool { return mustState(t, n2).Pos == mustState(t, n1).Pos })
	// n2 goes away with its copy (SHUTDOWN writes its dump with the replication id); n1 takes writes it lacks.
	if err := n2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := c1.Set(ctx, "lost"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	old := mustState(t, n1)
	if err := n1.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, n2); st.Role != RoleStopped || st.Pos.LSN == 0 {
		t.Fatalf("stopped replica: %+v, want stopped with its last position", st)
	}
	// n2 comes back and is promoted under epoch 2: its data is on the group's history (replid2 is n1's id).
	if err := n2.Promote(ctx, 2); err != nil {
		t.Fatal(err)
	}
	promoted := mustState(t, n2)
	if promoted.Role != RolePrimary || promoted.Unrelated != "" {
		t.Fatalf("promoted n2: %+v", promoted)
	}
	if promoted.Pos.Compare(old.Pos) >= 0 {
		t.Fatalf("promoted position %v is not behind the old primary's %v", promoted.Pos, old.Pos)
	}
	if err := w.client("n2").Set(ctx, "new", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// n1 rejoins as a replica of n2; what it held beyond n2 is gone.
	if err := n1.Follow(ctx, w.peer("n2")); err != nil {
		t.Fatal(err)
	}
	if v, err := c1.Get(ctx, "new").Result(); err != nil || v != "yes" {
		t.Fatalf("rejoined n1 GET new = %q, %v", v, err)
	}
	if n, _ := c1.Exists(ctx, "lost0", "lost99").Result(); n != 0 {
		t.Fatalf("rejoined n1 still holds %d of the writes n2 lacked", n)
	}
	if v, _ := c1.Get(ctx, "pre49").Result(); v != "49" {
		t.Fatalf("rejoined n1 lost a replicated write: pre49 = %q", v)
	}
	loss := old.Pos.LSN - promoted.Pos.LSN
	if loss < 100*10 {
		t.Fatalf("measured divergence %d bytes, want at least the 100 SETs n2 lacked", loss)
	}
	if st := mustState(t, n1); st.Unrelated != "" || st.Role != RoleStandby {
		t.Fatalf("rejoined n1: %+v", st)
	}
}

func TestRedisPlannedSwitchoverLosesNothing(t *testing.T) {
	w, n1, n2 := redisPair(t)
	ctx := ctxT(t, 60*time.Second)
	var acked sync.Map
	var n atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c1, c2 := w.client("n1"), w.client("n2")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := "w" + strconv.Itoa(i)
			wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			if c1.Set(wctx, k, i, 0).Err() == nil || c2.Set(wctx, k, i, 0).Err() == nil {
				acked.Store(k, true)
				n.Add(1)
			}
			cancel()
		}
	}()
	waitFor(t, "some writes", func() bool { return n.Load() > 200 })
	// The switchover: fence the owner, promote the target (it catches up first), repoint the old owner.
	if err := n1.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n2.Promote(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := n1.Follow(ctx, w.peer("n2")); err != nil {
		t.Fatal(err)
	}
	before := n.Load()
	waitFor(t, "writes on the new primary", func() bool { return n.Load() > before+200 })
	close(stop)
	<-done
	c2 := w.client("n2")
	lost := 0
	acked.Range(func(k, _ any) bool {
		if x, _ := c2.Exists(ctx, k.(string)).Result(); x != 1 {
			lost++
		}
		return true
	})
	if lost != 0 {
		t.Fatalf("planned switchover lost %d of %d acknowledged writes", lost, n.Load())
	}
}

// startRawRedis runs a redis-server Baton did not configure (an adopted one), with extra arguments.
func startRawRedis(t *testing.T, w *redisWorld, port int, args ...string) {
	t.Helper()
	dir := t.TempDir()
	pid := filepath.Join(dir, "pid")
	argv := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--daemonize", "yes", "--pidfile", pid,
		"--dir", dir, "--logfile", filepath.Join(dir, "log"), "--save", ""}, args...)
	if out, err := exec.Command(filepath.Join(w.bin, "redis-server"), argv...).CombinedOutput(); err != nil {
		t.Fatalf("redis-server: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pid); err == nil {
			if p, _ := strconv.Atoi(strings.TrimSpace(string(b))); p > 0 {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer c.Close()
	waitFor(t, "the raw redis-server", func() bool {
		err := c.Ping(context.Background()).Err()
		return err == nil || strings.Contains(err.Error(), "NOAUTH")
	})
}

func TestRedisBadInput(t *testing.T) {
	w := newRedisWorld(t, "n1", "n2", "n3")
	ctx := ctxT(t, 60*time.Second)
	n1 := w.driver("n1")
	if err := n1.Bootstrap(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := n1.Promote(ctx, 1); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong password", func(t *testing.T) {
		bad := filepath.Join(w.base, "bad.pass")
		os.WriteFile(bad, []byte("nope\n"), 0o600)
		cfg := w.cfg("n1")
		cfg.Superuser.PasswordFile = bad
		d, err := NewRedis(cfg, Options{Node: "n1", Peers: w.peers})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_, err = d.State(ctx)
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "driver.superuser.password_file") {
			t.Fatalf("State with a wrong password: %v", err)
		}
		// As a replica's credentials against the primary: Follow says so before it repoints anything.
		cfg2 := w.cfg("n2")
		cfg2.Replication = &config.Credential{User: "default", PasswordFile: bad}
		d2, err := NewRedis(cfg2, Options{Node: "n2", Peers: w.peers})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { d2.Stop(ctx); d2.Close() }()
		err = d2.Follow(ctx, w.peer("n1"))
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "primary n1") || !strings.Contains(err.Error(), "driver.replication.password_file") {
			t.Fatalf("Follow with a wrong replication password: %v", err)
		}
	})
	t.Run("wrong port", func(t *testing.T) {
		d := w.driver("n2")
		err := d.Follow(ctx, Peer{Node: "n1", Host: "127.0.0.1", Port: freePort(t)})
		if !errors.Is(err, ErrPrimaryUnreachable) || !strings.Contains(err.Error(), "refuses connections") {
			t.Fatalf("Follow of a closed port: %v", err)
		}
	})
	t.Run("not redis", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n"))
				c.Close()
			}
		}()
		d := w.driver("n2")
		err = d.Follow(ctx, Peer{Node: "n1", Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Redis protocol") {
			t.Fatalf("Follow of a server that is not Redis: %v", err)
		}
		// The same as the local server.
		cfg := w.cfg("n3")
		cfg.Port = l.Addr().(*net.TCPAddr).Port
		d3, err := NewRedis(cfg, Options{Node: "n3"})
		if err != nil {
			t.Fatal(err)
		}
		defer d3.Close()
		if err := d3.Bootstrap(ctx, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Redis protocol") {
			t.Fatalf("Bootstrap on a port that is not Redis: %v", err)
		}
	})
	t.Run("replica-read-only off", func(t *testing.T) {
		startRawRedis(t, w, w.peer("n3").Port, "--requirepass", redisPassword, "--replica-read-only", "no")
		d := w.driver("n3")
		err := d.Follow(ctx, w.peer("n1"))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "replica-read-only") {
			t.Fatalf("Follow on a server with replica-read-only off: %v", err)
		}
	})
	t.Run("unrelated dataset", func(t *testing.T) {
		port := freePort(t)
		startRawRedis(t, w, port, "--requirepass", redisPassword)
		cfg := w.cfg("n3")
		cfg.Port = port
		cfg.DataDir = filepath.Join(w.base, "n3-unrelated")
		d, err := NewRedis(cfg, Options{Node: "n3", Peers: w.peers, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		st, err := d.State(ctx)
		if err != nil || st.Role != RolePrimary || !strings.Contains(st.Unrelated, "has not been part of the group's replication") {
			t.Fatalf("adopted stand-alone server: %+v, %v", st, err)
		}
		// A member whose record names other ids: a different dataset.
		d.update(func(s *redisState) { s.Lineage = []string{strings.Repeat("a", 40)} })
		st, err = d.State(ctx)
		if err != nil || !strings.Contains(st.Unrelated, "not on the group's replication history") {
			t.Fatalf("server with another replication history: %+v, %v", st, err)
		}
		// Following the group's primary replaces it and makes it related.
		if err := d.Follow(ctx, w.peer("n1")); err != nil {
			t.Fatal(err)
		}
		if st := mustState(t, d); st.Unrelated != "" {
			t.Fatalf("after following the primary: still unrelated: %s", st.Unrelated)
		}
	})
}

func TestParseReplInfo(t *testing.T) {
	ri, err := parseReplInfo("# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,state=online,offset=1234,lag=1\r\nmaster_replid:abc\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:1300\r\nsecond_repl_offset:-1\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if ri.role != "master" || ri.replid != "abc" || ri.offset != 1300 || len(ri.replicas) != 1 ||
		ri.replicas[0] != (replicaInfo{ip: "10.0.0.2", port: 6379, state: "online", offset: 1234, lagS: 1}) {
		t.Fatalf("%+v", ri)
	}
	if _, err := parseReplInfo("HTTP/1.0 200 OK\r\n"); err == nil {
		t.Fatal("no error for a reply without a role")
	}
}

func FuzzParseReplInfo(f *testing.F) {
	f.Add("role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_repl_offset:5\r\n")
	f.Add("role:master\r\nslave0:ip=,port=x,offset=-1\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		ri, err := parseReplInfo(s)
		if err == nil && ri.role != "master" && ri.role != "slave" {
			t.Fatalf("accepted role %q", ri.role)
		}
	})
}

func TestReadRESP(t *testing.T) {
	in := "+OK\r\n-ERR bad\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	want := []any{"OK", respError("ERR bad"), int64(42), "hello", nil, []any{"a", int64(1)}}
	for i, w := range want {
		v, err := readRESP(r, 0)
		if err != nil || fmt.Sprint(v) != fmt.Sprint(w) {
			t.Fatalf("reply %d = %#v, %v; want %#v", i, v, err, w)
		}
	}
	for _, bad := range []string{"HTTP/1.0 200 OK\r\n", "$999999999999\r\n", "*-5\r\n", ":x\r\n", "+OK\n"} {
		if _, err := readRESP(bufio.NewReader(strings.NewReader(bad)), 0); !errors.Is(err, errNotRESP) {
			t.Errorf("%q: %v, want errNotRESP", bad, err)
		}
	}
}

// FuzzReadRESP: any bytes a peer sends give a reply or an error, never a crash or a huge allocation.
func FuzzReadRESP(f *testing.F) {
	f.Add([]byte("*2\r\n$1\r\na\r\n:1\r\n"))
	f.Add([]byte("$3\r\nabc\r\n"))
	f.Add([]byte("-NOREPLICAS Not enough good replicas to write.\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for range 4 {
			if _, err := readRESP(r, 0); err != nil {
				return
			}
		}
	})
}

// An old primary told to follow another member is not promotable until its replication link is up: until then its
// data may hold writes the group discarded (its replication id is on the group's history all the same).
func TestRedisRejoiningOldPrimaryIsNotPromotable(t *testing.T) {
	w, n1, n2 := redisPair(t)
	ctx := ctxT(t, 30*time.Second)
	if err := n1.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n2.Promote(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// n1 is repointed, but its link cannot come up (a primary that is not there).
	n1.update(func(s *redisState) { s.Rejoining = "n2" })
	if err := w.client("n1").Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(freePort(t))).Err(); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, n1); st.Role != RoleStandby || !strings.Contains(st.Unrelated, "rejoining as a replica of n2") {
		t.Fatalf("rejoining old primary: %+v", st)
	}
	if err := n1.Follow(ctx, w.peer("n2")); err != nil {
		t.Fatal(err)
	}
	if st := mustState(t, n1); st.Unrelated != "" {
		t.Fatalf("after its link came up: %q", st.Unrelated)
	}
}
