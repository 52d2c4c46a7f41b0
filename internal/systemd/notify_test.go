package systemd

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSystemd listens where systemd's notify socket would be and returns the
// datagrams it receives.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return &fakeSystemd{t: t, conn: conn}
}

// next returns the next message, failing the test if none comes.
func (f *fakeSystemd) next() string {
	f.t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := f.conn.Read(buf)
	if err != nil {
		f.t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:n])
}

// none asserts that nothing was sent.
func (f *fakeSystemd) none() {
	f.t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := f.conn.Read(buf); err == nil {
		f.t.Fatalf("unexpected sd_notify message %q", buf[:n])
	}
}

func TestNotifyMessages(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := New(nil)
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if _, ok := os.LookupEnv(v); ok {
			t.Errorf("%s is still in the environment: hooks and services would inherit it", v)
		}
	}
	if !n.Enabled() || n.WatchdogInterval() != 200*time.Millisecond {
		t.Fatalf("enabled %v, watchdog %v; want true, 200ms", n.Enabled(), n.WatchdogInterval())
	}

	if n.IsReady() {
		t.Fatal("ready before Ready")
	}
	n.Ready("quorum leader n1")
	if got, want := sd.next(), "READY=1\nSTATUS=quorum leader n1"; got != want {
		t.Errorf("Ready sent %q, want %q", got, want)
	}
	n.Ready("quorum leader n2\nsecond line")
	if got, want := sd.next(), "STATUS=quorum leader n2 second line"; got != want {
		t.Errorf("second Ready sent %q, want only the status %q", got, want)
	}

	t0 := time.Now()
	n.Pet(t0)
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Errorf("Pet sent %q", got)
	}
	n.Pet(t0.Add(50 * time.Millisecond)) // less than half the interval
	sd.none()
	n.Pet(t0.Add(100 * time.Millisecond))
	if got := sd.next(); got != "WATCHDOG=1" {
		t.Errorf("Pet after half the interval sent %q", got)
	}

	var before unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
	n.Reloading()
	msg := sd.next()
	var after unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
	lines := strings.Split(msg, "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") || lines[2] != "STATUS=reloading the config" {
		t.Fatalf("Reloading sent %q", msg)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before.Nano()/1000 || usec > after.Nano()/1000 {
		t.Errorf("MONOTONIC_USEC=%d (%v) is not CLOCK_MONOTONIC now (%d..%d µs)", usec, err, before.Nano()/1000, after.Nano()/1000)
	}
	n.Reloaded("config reloaded")
	if got, want := sd.next(), "READY=1\nSTATUS=config reloaded"; got != want {
		t.Errorf("Reloaded sent %q, want %q", got, want)
	}

	n.Stopping("handing off owned groups")
	if got, want := sd.next(), "STOPPING=1\nSTATUS=handing off owned groups"; got != want {
		t.Errorf("Stopping sent %q, want %q", got, want)
	}
}

func TestWatchdogOffWithoutWatchdogSec(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "")
	n := New(nil)
	n.Pet(time.Now())
	sd.none()
	n.Ready("up")
	if got := sd.next(); !strings.HasPrefix(got, "READY=1") {
		t.Errorf("got %q", got)
	}
}

func TestWatchdogForAnotherPID(t *testing.T) {
	// systemd names the process it watches; a child that inherited the
	// variables must not pet on the agent's behalf.
	sd := newFakeSystemd(t)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	n := New(nil)
	if n.WatchdogInterval() != 0 {
		t.Fatalf("watchdog %v for another PID", n.WatchdogInterval())
	}
	n.Pet(time.Now())
	sd.none()
}

func TestOutsideSystemdNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "200000")
	n := New(nil)
	if n.Enabled() || n.WatchdogInterval() != 0 {
		t.Fatalf("enabled %v watchdog %v without NOTIFY_SOCKET", n.Enabled(), n.WatchdogInterval())
	}
	// None of these may fail or block.
	n.Ready("x")
	n.Pet(time.Now())
	n.Reloading()
	n.Reloaded("x")
	n.Stopping("x")
	var nilN *Notifier
	nilN.Ready("x")
	nilN.Pet(time.Now())
	nilN.Stopping("x")
	nilN.Reloading()
	nilN.Reloaded("x")
	nilN.Status("x")
	if nilN.IsReady() || nilN.WatchdogInterval() != 0 {
		t.Error("a nil Notifier claims to be ready or watched")
	}
}

func TestSystemdGoneIsLoggedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.sock")
	t.Setenv("NOTIFY_SOCKET", path) // nobody listens
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", "")
	var logs bytes.Buffer
	n := New(slog.New(slog.NewTextHandler(&logs, nil)))
	t0 := time.Now()
	for i := range 5 {
		n.Pet(t0.Add(time.Duration(i) * time.Second))
	}
	if c := strings.Count(logs.String(), "cannot notify systemd"); c != 1 {
		t.Errorf("%d log lines for a missing socket, want 1:\n%s", c, logs.String())
	}
}
