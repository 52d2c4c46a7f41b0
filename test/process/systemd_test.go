package process

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
)

// TestSystemdNotifyAndJournal runs the real binary as systemd would for n1:
// a NOTIFY_SOCKET, a watchdog, and stderr being the journal stream. n1 says
// READY=1 only once the cluster has a quorum, pets the watchdog, says
// STOPPING=1 on SIGTERM, and logs without timestamps and with priorities.
func TestSystemdNotifyAndJournal(t *testing.T) {
	dir := t.TempDir()
	c, err := proctest.New(bin, dir, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	// The harness appends the agent's stderr to <dir>/n1.log: create it first
	// so that JOURNAL_STREAM can name its device and inode, as systemd does.
	logPath := filepath.Join(dir, "n1.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.Env = map[string][]string{"n1": {"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=1000000",
		fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino)}}

	var got []string
	read := func(d time.Duration) string {
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(d))
		n, err := sock.Read(buf)
		if err != nil {
			return ""
		}
		got = append(got, string(buf[:n]))
		return string(buf[:n])
	}
	waitFor := func(line string) {
		t.Helper()
		deadline := time.Now().Add(liveness)
		for time.Now().Before(deadline) {
			if slices.Contains(strings.Split(read(time.Until(deadline)), "\n"), line) {
				return
			}
		}
		t.Fatalf("no %q from n1 within %v; got %q", line, liveness, got)
	}

	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	waitFor("WATCHDOG=1")
	for _, m := range got {
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 from n1 alone, before any quorum: %q", got)
		}
	}
	for _, n := range []string{"n2", "w1"} {
		if err := c.Start(n); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("READY=1")
	if st, err := c.Status("n1"); err != nil || st.Leader == "" {
		t.Errorf("READY=1, yet n1's status has no quorum leader (%v)", err)
	}
	if err := c.Signal("n1", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("STOPPING=1")
	if err := c.Wait("n1", liveness); err != nil {
		t.Fatalf("n1 after SIGTERM: %v", err)
	}

	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, `<6>level=INFO msg="agent started"`) }) {
		t.Errorf("no journal-style start line (<6>level=INFO msg=\"agent started\") in n1's log:\n%s", b)
	}
	for _, l := range lines {
		if strings.Contains(l, "time=") {
			t.Errorf("a timestamp in a journal line (the journal stamps lines itself): %s", l)
			break
		}
	}
}
