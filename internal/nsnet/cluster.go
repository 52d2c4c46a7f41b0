package nsnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// APIToken is the API token of every lab cluster (mutations need it).
const APIToken = "lab-token-0123456789"

// ClusterSpec describes a Baton cluster on the lab's hosts: the first
// len(Members) hosts are members (priority descending), then one witness.
type ClusterSpec struct {
	Bin     string // baton binary
	Dir     string // config, data dirs and logs
	Members int    // default 2
	Profile string // default "default"
	VIP     string // e.g. "10.77.0.100/24"; "" for none
	// VIPOptions are more fields of the VIP's YAML flow map, e.g. "tcp_reset: false".
	VIPOptions string
	Extra      string // extra YAML under cluster: (two-space indent)
	Port       int    // service port each host's whoami listens on (default 8080)
	APIPort    int    // default 7480
	Failback   bool
	// GroupExtra is extra YAML for the group (four-space indent), e.g. a
	// service and checks; NoWhoami then leaves the service port to it.
	GroupExtra string
	NoWhoami   bool
	// Groups is YAML for more groups after "web" (list items at two-space
	// indent: "  - name: db\n    members: ...").
	Groups string
	// Env is appended to every agent's environment (see also
	// StartAgentEnv).
	Env func(host string) []string
}

// Cluster is Baton running in a lab.
type Cluster struct {
	L       *Lab
	Spec    ClusterSpec
	Config  string
	Members []string
	Witness string
	procs   map[string]*Proc
}

// StartCluster writes the config and starts an agent and a whoami server on
// every host it uses.
func (l *Lab) StartCluster(s ClusterSpec) (*Cluster, error) {
	if s.Members == 0 {
		s.Members = 2
	}
	if s.Profile == "" {
		s.Profile = "default"
	}
	if s.Port == 0 {
		s.Port = 8080
	}
	if s.APIPort == 0 {
		s.APIPort = 7480
	}
	hosts := l.Hosts()
	if len(hosts) < s.Members+1 {
		return nil, fmt.Errorf("lab has %d hosts; need %d members + a witness", len(hosts), s.Members)
	}
	c := &Cluster{L: l, Spec: s, Members: hosts[:s.Members], Witness: hosts[s.Members], procs: map[string]*Proc{}}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ncluster:\n  name: lab\n  secret: \"lab-secret-0123456789abcdefghijklmnop\"\n  profile: %s\n%s", s.Profile, s.Extra)
	fmt.Fprintf(&b, "api: {token: %q}\nnodes:\n", APIToken)
	for _, h := range append(append([]string{}, c.Members...), c.Witness) {
		fmt.Fprintf(&b, "  - {name: %s, address: %s, api: \"%s:%d\", data_dir: %q, witness: %v}\n",
			h, l.Addr(h), l.Addr(h), s.APIPort, filepath.Join(s.Dir, h), h == c.Witness)
	}
	b.WriteString("groups:\n  - name: web\n    members:\n")
	for i, h := range c.Members {
		fmt.Fprintf(&b, "      - {node: %s, priority: %d}\n", h, 200-10*i)
	}
	if s.VIP != "" {
		opts := ""
		if s.VIPOptions != "" {
			opts = ", " + s.VIPOptions
		}
		fmt.Fprintf(&b, "    vips: [{address: %s, interface: %s%s}]\n", s.VIP, l.Iface(), opts)
	}
	if s.Failback {
		b.WriteString("    failback: true\n")
	}
	b.WriteString(s.GroupExtra)
	b.WriteString(s.Groups)
	c.Config = filepath.Join(s.Dir, "baton.yaml")
	if err := os.WriteFile(c.Config, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	for _, h := range c.Members {
		if s.NoWhoami {
			break
		}
		if err := l.StartWhoami(h, s.Port); err != nil {
			return nil, err
		}
	}
	for _, h := range append(append([]string{}, c.Members...), c.Witness) {
		if err := c.StartAgent(h); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// StartAgent (re)starts the agent of one host.
func (c *Cluster) StartAgent(host string) error {
	var env []string
	if c.Spec.Env != nil {
		env = c.Spec.Env(host)
	}
	p, err := c.L.Start(host, "agent", []string{c.Spec.Bin, "agent", "--config", c.Config, "--node", host}, env,
		filepath.Join(c.Spec.Dir, host+".log"))
	if err != nil {
		return err
	}
	c.procs[host] = p
	return nil
}

// Agent returns a host's agent process (nil if never started).
func (c *Cluster) Agent(host string) *Proc { return c.procs[host] }

// KillAgent kill -9s a host's agent (not its VIP fence, which has its own
// process group and must clean up after it).
func (c *Cluster) KillAgent(host string) error {
	p := c.procs[host]
	if p == nil {
		return fmt.Errorf("%s: no agent", host)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := p.Wait(10 * time.Second); errors.Is(err, ErrTimeout) {
		return err
	}
	return nil // "signal: killed" is what we asked for
}

// Status asks a host's agent for its own view, /v1/status?stale=true (from
// inside the client namespace), and decodes it into v: tests look at what
// that node acts on, also while it is cut off from the quorum.
func (c *Cluster) Status(host string, v any) error {
	resp, err := c.L.HTTPClient(Client, 2*time.Second).Get("http://" + net.JoinHostPort(c.L.Addr(host), fmt.Sprint(c.Spec.APIPort)) + "/v1/status?stale=true")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %s", host, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Owner returns the group owner and epoch as a host's agent reports them.
func (c *Cluster) Owner(host string) (string, uint64, error) {
	var st struct {
		Groups []struct {
			Owner string
			Epoch uint64
		}
	}
	if err := c.Status(host, &st); err != nil {
		return "", 0, err
	}
	if len(st.Groups) == 0 {
		return "", 0, fmt.Errorf("no groups")
	}
	return st.Groups[0].Owner, st.Groups[0].Epoch, nil
}

// HoldersOf lists the hosts whose eth0 carries the address (without prefix).
func (c *Cluster) HoldersOf(addr string) ([]string, error) { return c.L.Holders(addr, c.L.Hosts()) }

// Stop kills every agent (SIGCONT first for stopped ones).
func (c *Cluster) Stop() {
	for _, p := range c.procs {
		_ = p.Signal(syscall.SIGCONT)
		_ = p.Kill()
	}
}

// WaitHolder waits until exactly one host carries addr (and, if want is not
// "", that it is want) and returns it.
func (c *Cluster) WaitHolder(addr, want string, limit time.Duration) (string, error) {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h, err := c.HoldersOf(addr)
		if err == nil && len(h) == 1 && (want == "" || h[0] == want) {
			return h[0], nil
		}
	}
	h, _ := c.HoldersOf(addr)
	return "", fmt.Errorf("%s is on %v after %v, want exactly one host (%q)", addr, h, limit, want)
}

// Switchover asks host's agent (from inside the client namespace) to switch
// the group over to `to`, as `baton switchover web --to TO --api
// http://HOST:PORT` would; the agent forwards it to the quorum leader.
func (c *Cluster) Switchover(host, to string) error {
	body := strings.NewReader(fmt.Sprintf(`{"to": %q}`, to))
	url := "http://" + net.JoinHostPort(c.L.Addr(host), fmt.Sprint(c.Spec.APIPort)) + "/v1/groups/web/switchover"
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+APIToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.L.HTTPClient(Client, 15*time.Second).Do(req) // the agent waits up to 10 s for the commit
	if err != nil {
		return fmt.Errorf("switchover to %s via %s: %w", to, host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("switchover to %s via %s: %s: %s", to, host, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
