// Package demo is what `baton demo` runs: a cluster of real `baton agent`
// processes on loopback addresses (127.0.x.y, no root needed) started from a
// given binary — the running one, for the demo — with a cluster file whose
// hooks append to a log; it starts, kills, stops and continues agents, reads
// their hook log and HTTP API, waits for an owner or a hook, and serves the
// "who am I" service a client asks through the front doors.
//
// It is product code, linked into the baton binary. The multi-process test
// harness (internal/proctest) builds on it, never the other way round: a
// test's helpers do not belong in what operators install (cmd/baton's
// deps_test.go checks).
package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/baton-ha/baton/internal/core"
)

// Token is the API token of every demo cluster.
const Token = "demo-api-token-0123456"

// Spec describes a loopback cluster: node i gets 127.0.<third>.<base+i>, with
// third and base chosen at random.
type Spec struct {
	Cluster string   // cluster name (default "demo")
	Members []string // member node names, highest priority first
	Witness string   // "" for none
	Profile string
	Secret  string
	Extra   string // extra YAML appended under cluster: (indented two spaces)
	// GroupExtra is extra YAML for each group (indented four spaces).
	GroupExtra string
	HookWait   string // optional: sleep this long in the hook (e.g. "0")
	// Top is extra top-level YAML (e.g. a dns: section). In Top and
	// GroupExtra, $SVC, $PROXY and $DNS stand for the cluster's SvcPort,
	// ProxyPort and DNSPort.
	Top string
	// Groups is how many groups to configure, all with the same members and
	// hooks: "web", then "web-2", "web-3", ... (0 means 1).
	Groups int
	// MoreGroups is YAML for groups after those (list items indented two
	// spaces: "  - name: ...").
	MoreGroups string
	// APIExtra is added inside the api: {...} flow map after the token (e.g. ", tls: {cert_file: api.crt, ...}";
	// relative paths are relative to the cluster's directory).
	APIExtra string
}

// Cluster is a running (or startable) set of agent processes.
type Cluster struct {
	Bin, Dir, ConfigPath string
	Port                 int
	// SvcPort, ProxyPort and DNSPort are free ports next to Port for a
	// group's service, its proxy and the DNS server (see Spec.Top).
	SvcPort, ProxyPort, DNSPort int
	Addrs                       map[string]string // node → 127.0.0.x
	APIs                        map[string]string // node → host:port
	// Env adds environment variables ("K=V") to one node's agent from its
	// next start (e.g. a test's fake NOTIFY_SOCKET).
	Env   map[string][]string
	mu    sync.Mutex
	procs map[string]*exec.Cmd
	waits map[string]chan error
}

// NewCluster writes the config for spec under dir; bin is the baton binary
// the agents run. Loopback addresses and the port
// are chosen at random so that parallel runs do not collide.
func NewCluster(bin, dir string, spec Spec) (*Cluster, error) {
	if spec.Profile == "" {
		spec.Profile = "default"
	}
	if spec.Cluster == "" {
		spec.Cluster = "demo"
	}
	if spec.Secret == "" {
		spec.Secret = "demo-secret-0123456789abcdefghijklmn"
	}
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	c := &Cluster{Bin: bin, Dir: dir, Addrs: map[string]string{}, APIs: map[string]string{},
		procs: map[string]*exec.Cmd{}, waits: map[string]chan error{}, Env: map[string][]string{}}
	c.Port = 20000 + r.Intn(20000)
	c.SvcPort, c.ProxyPort, c.DNSPort = c.Port+2, c.Port+3, c.Port+4
	ports := strings.NewReplacer("$SVC", strconv.Itoa(c.SvcPort), "$PROXY", strconv.Itoa(c.ProxyPort), "$DNS", strconv.Itoa(c.DNSPort))
	spec.Top, spec.GroupExtra = ports.Replace(spec.Top), ports.Replace(spec.GroupExtra)
	base := 2 + r.Intn(200)
	third := 1 + r.Intn(250)
	names := append([]string{}, spec.Members...)
	if spec.Witness != "" {
		names = append(names, spec.Witness)
	}
	for i, n := range names {
		c.Addrs[n] = fmt.Sprintf("127.0.%d.%d", third, base+i)
		c.APIs[n] = net.JoinHostPort(c.Addrs[n], strconv.Itoa(c.Port+1))
	}
	hook := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\necho \"$(date +%s%N) $BATON_NODE $BATON_GROUP $BATON_ROLE $BATON_EPOCH $BATON_PREVIOUS_OWNER $BATON_CLUSTER\" >> " +
		filepath.Join(dir, "hooks.log") + "\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ncluster:\n  name: %s\n  secret: %q\n  profile: %s\n  port: %d\n%s", spec.Cluster, spec.Secret, spec.Profile, c.Port, spec.Extra)
	fmt.Fprintf(&b, "api: {token: %q%s}\n", Token, spec.APIExtra)
	b.WriteString(spec.Top)
	b.WriteString("nodes:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - {name: %s, address: %s, api: %q, data_dir: %q, witness: %v}\n",
			n, c.Addrs[n], c.APIs[n], filepath.Join(dir, n), n == spec.Witness)
	}
	b.WriteString("groups:\n")
	for gi := 0; gi < max(spec.Groups, 1); gi++ {
		fmt.Fprintf(&b, "  - name: %s\n    members:\n", GroupName(gi))
		for i, n := range spec.Members {
			fmt.Fprintf(&b, "      - {node: %s, priority: %d}\n", n, 200-i*10)
		}
		fmt.Fprintf(&b, "    hooks: {active: [%q], standby: [%q], timeout: 5s}\n%s", hook, hook, spec.GroupExtra)
	}
	b.WriteString(spec.MoreGroups)
	c.ConfigPath = filepath.Join(dir, "baton.yaml")
	if err := os.WriteFile(c.ConfigPath, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// GroupName is the name of the i-th group (from 0) of a Spec with Groups > 1.
func GroupName(i int) string {
	if i == 0 {
		return "web"
	}
	return fmt.Sprintf("web-%d", i+1)
}

// Start launches one agent (logs to <dir>/<node>.log).
func (c *Cluster) Start(node string) error { return c.StartWith(node, c.ConfigPath) }

// StartWith launches one agent with another config file (e.g. an impostor's).
func (c *Cluster) StartWith(node, configPath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, running := c.procs[node]; running {
		return fmt.Errorf("%s already running", node)
	}
	logf, err := os.OpenFile(filepath.Join(c.Dir, node+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.Bin, "agent", "--config", configPath, "--node", node)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env := c.Env[node]; len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait(); logf.Close() }()
	c.procs[node], c.waits[node] = cmd, ch
	return nil
}

// StartAll starts every node.
func (c *Cluster) StartAll() error {
	for n := range c.Addrs {
		if err := c.Start(n); err != nil {
			return err
		}
	}
	return nil
}

// Signal sends sig to a node's agent.
func (c *Cluster) Signal(node string, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[node]
	if p == nil {
		return fmt.Errorf("%s not running", node)
	}
	return p.Process.Signal(sig)
}

// Wait waits up to d for a node's agent to exit and forgets it.
func (c *Cluster) Wait(node string, d time.Duration) error {
	c.mu.Lock()
	ch := c.waits[node]
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case err := <-ch:
		c.mu.Lock()
		delete(c.procs, node)
		delete(c.waits, node)
		c.mu.Unlock()
		return err
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %v", node, d)
	}
}

// Kill sends SIGKILL and reaps the process.
func (c *Cluster) Kill(node string) error {
	if err := c.Signal(node, syscall.SIGKILL); err != nil {
		return err
	}
	_ = c.Wait(node, 10*time.Second)
	return nil
}

// PID returns a node's process id (0 if not running).
func (c *Cluster) PID(node string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[node]; p != nil {
		return p.Process.Pid
	}
	return 0
}

// Stop kills every agent still running (SIGCONT first, for stopped ones).
func (c *Cluster) Stop() {
	c.mu.Lock()
	var names []string
	for n := range c.procs {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		_ = c.Signal(n, syscall.SIGCONT)
		_ = c.Kill(n)
	}
}

// HookEvent is one line of the hook log.
type HookEvent struct {
	At                 time.Time
	Node, Group, Role  string
	Epoch              uint64
	PrevOwner, Cluster string
}

// Hooks reads the hook log.
func (c *Cluster) Hooks() []HookEvent {
	f, err := os.Open(filepath.Join(c.Dir, "hooks.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []HookEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), " ")
		if len(fs) < 7 {
			continue
		}
		ns, _ := strconv.ParseInt(fs[0], 10, 64)
		ep, _ := strconv.ParseUint(fs[4], 10, 64)
		out = append(out, HookEvent{At: time.Unix(0, ns), Node: fs[1], Group: fs[2], Role: fs[3], Epoch: ep, PrevOwner: fs[5], Cluster: fs[6]})
	}
	return out
}

// WaitHook polls the hook log until match returns true for an event, up to d.
func (c *Cluster) WaitHook(d time.Duration, match func(HookEvent) bool) (HookEvent, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, e := range c.Hooks() {
			if match(e) {
				return e, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return HookEvent{}, fmt.Errorf("no matching hook within %v; hooks so far: %+v", d, c.Hooks())
}

// Baton runs the baton CLI against a node's API with the cluster's token.
func (c *Cluster) Baton(node string, args ...string) (string, error) {
	args = append(args, "--api", c.API(node))
	cmd := exec.Command(c.Bin, args...)
	cmd.Env = append(os.Environ(), "BATON_API_TOKEN="+Token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// API is node's API address ("" if unknown). Safe while SetNode runs.
func (c *Cluster) API(node string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.APIs[node]
}

// SetNode records the address and API of a node added to the cluster file
// (proctest's AddNode), safely against concurrent Status and Baton calls.
func (c *Cluster) SetNode(name, addr, api string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Addrs[name], c.APIs[name] = addr, api
}

// Status fetches a node's own view, /v1/status?stale=true: what that node acts
// on, also while it is cut off from the quorum (a consistent read would ask
// the leader).
func (c *Cluster) Status(node string) (core.Status, error) {
	var st core.Status
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + c.API(node) + "/v1/status?stale=true")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return st, fmt.Errorf("status %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WaitOwner polls a node's status until the group has an owner that the
// hook log shows active at that epoch, up to d.
func (c *Cluster) WaitOwner(via string, d time.Duration) (string, uint64, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st, err := c.Status(via); err == nil && len(st.Groups) > 0 && st.Groups[0].Owner != "" {
			g := st.Groups[0]
			for _, e := range c.Hooks() {
				if e.Role == "active" && e.Node == g.Owner && e.Epoch == g.Epoch {
					return g.Owner, g.Epoch, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("no active owner seen via %s within %v", via, d)
}
