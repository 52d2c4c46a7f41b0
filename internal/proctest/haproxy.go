package proctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// HAProxy runs a real haproxy whose backend servers are the group members'
// service addresses, each health-checked on its agent's
// /v1/groups/web/active (200 only on the owner).
type HAProxy struct {
	Front  string
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartHAProxy starts haproxy on front; svcPort is the members' service
// port; checks run every inter.
func (c *Cluster) StartHAProxy(front string, members []string, svcPort int, inter time.Duration) (*HAProxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, fmt.Errorf("haproxy is not installed (apt-get install haproxy)")
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  maxconn 200
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
  default-server inter %dms fall 1 rise 1
`, front, inter.Milliseconds())
	for _, m := range members {
		fmt.Fprintf(&b, "  server %s %s:%d check port %d\n", m, c.Addrs[m], svcPort, c.Port+1)
	}
	path := filepath.Join(c.Dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(c.Dir, "haproxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-f", path, "-db")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	h := &HAProxy{Front: front, cmd: cmd, exited: exited}
	// Wait until it listens: a front it could not bind (port taken) would
	// otherwise look like HAProxy sending traffic nowhere.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", front, 200*time.Millisecond); err == nil {
			conn.Close()
			return h, nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%w: haproxy exited at start:\n%s", ErrHAProxyStart, out)
		default:
		}
		if time.Now().After(deadline) {
			h.Stop()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%w: haproxy does not listen on %s after 5 s:\n%s", ErrHAProxyStart, front, out)
		}
	}
}

// ErrHAProxyStart: haproxy is installed but did not come up.
var ErrHAProxyStart = errors.New("haproxy did not start")

// Stop kills haproxy.
func (h *HAProxy) Stop() {
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// Get fetches / through haproxy and returns the trimmed body ("" on error).
func (h *HAProxy) Get(client *http.Client) string {
	resp, err := client.Get("http://" + h.Front + "/")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return ""
	}
	body, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body))
}
