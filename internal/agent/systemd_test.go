package agent

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/systemd"
)

// notifySocket is a fake systemd notify socket.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
}

// next returns the next datagram within d, or "" when none came.
func (s *notifySocket) next(d time.Duration) string {
	buf := make([]byte, 4096)
	s.conn.SetReadDeadline(time.Now().Add(d))
	n, err := s.conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// waitFor reads datagrams until one has the line want; it fails the test
// after d and returns the datagrams seen before it.
func (s *notifySocket) waitFor(want string, d time.Duration) []string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	var seen []string
	for time.Now().Before(deadline) {
		m := s.next(time.Until(deadline))
		if slices.Contains(strings.Split(m, "\n"), want) {
			return seen
		}
		if m != "" {
			seen = append(seen, m)
		}
	}
	s.t.Fatalf("no %q within %v; got %q", want, d, seen)
	return nil
}

// TestSystemdNotifications runs three agents in this process, n1 with a fake
// NOTIFY_SOCKET and a 400 ms watchdog: n1 pets the watchdog from its first
// loop turn but is READY only once the others have started and it has
// joined the quorum; a core loop that is stuck stops petting; the SIGTERM
// path (cancel) says STOPPING first.
func TestSystemdNotifications(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sock := &notifySocket{t: t, conn: conn}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	sd := systemd.New(nil)

	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	port := 40000 + r.Intn(20000)
	third := 1 + r.Intn(250)
	cfg, err := config.Parse(fmt.Appendf(nil, `version: 1
cluster: {name: sd, secret: "systemd-test-secret-0123456789abcdef", port: %d, profile: fast}
nodes:
  - {name: n1, address: 127.1.%d.1, data_dir: %s}
  - {name: n2, address: 127.1.%d.2, data_dir: %s}
  - {name: w1, address: 127.1.%d.3, data_dir: %s, witness: true}
groups:
  - name: web
    members: [{node: n1, priority: 150}, {node: n2}]
`, port, third, filepath.Join(dir, "n1"), third, filepath.Join(dir, "n2"), third, filepath.Join(dir, "w1")), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	agents := map[string]*Agent{}
	startNode := func(name string, sd *systemd.Notifier) {
		a, err := open(Options{Config: cfg, Node: name, Systemd: sd})
		if err != nil {
			t.Fatal(err)
		}
		agents[name] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.loop(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}

	startNode("n1", sd)
	seen := sock.waitFor("STATUS=waiting for the quorum: no leader known yet", 10*time.Second)
	if len(seen) > 0 {
		t.Errorf("before the first status line: %q", seen)
	}
	// Alone, n1 cannot join a quorum: it pets the watchdog but is not ready.
	alone := time.Now().Add(time.Second)
	pets := 0
	for time.Now().Before(alone) {
		m := sock.next(time.Until(alone))
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 from a node alone, without a quorum: %q", m)
		}
		if m == "WATCHDOG=1" {
			pets++
		}
	}
	// 400 ms watchdog: a pet every 200 ms, so about 5 in a second.
	if pets < 2 {
		t.Fatalf("%d watchdog pets in 1 s with WatchdogSec=400ms, want about 5", pets)
	}

	startNode("n2", nil)
	startNode("w1", nil)
	sock.waitFor("READY=1", 20*time.Second)
	if agents["n1"].raft.Leader() == "" {
		t.Error("READY=1 without a known quorum leader")
	}

	// A stuck core loop stops petting: block n1's loop for three watchdog
	// intervals.
	unfreeze := make(chan struct{})
	frozen := make(chan struct{})
	agents["n1"].post(func(time.Duration) { close(frozen); <-unfreeze })
	<-frozen
	for sock.next(50*time.Millisecond) != "" { // what was sent before the freeze
	}
	until := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(until) {
		if m := sock.next(time.Until(until)); m == "WATCHDOG=1" {
			t.Fatal("watchdog petted while the core loop was stuck")
		}
	}
	close(unfreeze)
	sock.waitFor("WATCHDOG=1", 5*time.Second)

	cancel()
	sock.waitFor("STOPPING=1", 10*time.Second)
}
