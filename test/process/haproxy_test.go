package process

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
)

// whoami serves "I am NODE" on addr until the test ends.
func whoami(t *testing.T, addr, node string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "I am %s\n", node)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestHAProxyFollowsTheOwner puts a real HAProxy in front of two members,
// health-checking each member's /v1/groups/web/active, and checks that
// traffic reaches only the owner, across a switchover and a failover.
func TestHAProxyFollowsTheOwner(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: haproxy is not installed (scripts/test installs it as root: apt-get install haproxy)")
	}
	c := start(t, proctest.Spec{})
	svcPort := c.Port + 2
	for _, n := range []string{"n1", "n2"} {
		whoami(t, net.JoinHostPort(c.Addrs[n], fmt.Sprint(svcPort)), n)
	}
	front := net.JoinHostPort("127.0.0.1", fmt.Sprint(c.Port+3))
	cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend web
  bind %s
  default_backend owners
backend owners
  option httpchk GET /v1/groups/web/active
  http-check expect status 200
  default-server inter 50ms fall 1 rise 1
  server n1 %s:%d check port %d
  server n2 %s:%d check port %d
`, front, c.Addrs["n1"], svcPort, c.Port+1, c.Addrs["n2"], svcPort, c.Port+1)
	path := filepath.Join(c.Dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	hp := exec.Command(haproxy, "-f", path, "-db")
	hp.Stdout, hp.Stderr = io.Discard, io.Discard
	hp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Process.Kill(); hp.Wait() })

	client := &http.Client{Timeout: time.Second}
	get := func() string {
		resp, err := client.Get("http://" + front + "/")
		if err != nil {
			return "error"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	// served only by `want` for a while: every answer over 1 s comes from it.
	onlyFrom := func(want string) {
		t.Helper()
		deadline := time.Now().Add(liveness)
		for get() != "I am "+want {
			if time.Now().After(deadline) {
				t.Fatalf("HAProxy never sent traffic to %s", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if got := get(); got != "I am "+want {
				t.Fatalf("HAProxy sent traffic to %q while %s owns the group", got, want)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // HAProxy starts servers up until their first check
	onlyFrom("n1")
	if out, err := c.Baton("w1", "switchover", "web", "--to", "n2"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	onlyFrom("n2")
	if err := c.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	onlyFrom("n1")
}
