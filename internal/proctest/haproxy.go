package proctest

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
	"time"
)

// Whoami serves "I am NODE" over HTTP on addr; call the returned func to stop.
func Whoami(addr, node string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "I am %s\n", node)
	})}
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// HAProxy runs a real haproxy whose backend servers are the group members'
// service addresses, each health-checked on its agent's
// /v1/groups/web/active (200 only on the owner).
type HAProxy struct {
	Front string
	cmd   *exec.Cmd
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
	cmd := exec.Command(bin, "-f", path, "-db")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &HAProxy{Front: front, cmd: cmd}, nil
}

// Stop kills haproxy.
func (h *HAProxy) Stop() {
	_ = h.cmd.Process.Kill()
	_, _ = h.cmd.Process.Wait()
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
