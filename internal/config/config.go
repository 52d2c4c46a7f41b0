// Package config reads, completes and checks Baton's cluster file: one versioned YAML document that every node of
// a cluster shares (see testdata/example.yaml for a complete, commented example).
//
// The file is read strictly. An unknown field is an error that names its path and line (a misspelt "intervall"
// must not silently fall back to a default), and so is a value of the wrong type. Parse then fills in defaults,
// reads the cluster secret and the API token, and runs Validate, and it reports every problem it finds at once,
// each as a FieldError with a path such as groups[0].vips[1].address, so that `baton check-config` can print them
// all in one go.
//
// Timing comes from a named profile (default, fast, wan; see Profile) with optional per-value overrides in the
// cluster section; Config.Timing gives the effective values.
package config

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileVersion is the only config file version (the top-level "version" field) this package reads.
const FileVersion = 1

// Config is a whole cluster file. Parse and Load return it with defaults filled in, file paths made relative to the
// file's directory, and the secret and API token read.
type Config struct {
	Version int     `yaml:"version,omitempty"`
	Cluster Cluster `yaml:"cluster"`
	Nodes   []Node  `yaml:"nodes,omitempty"`
	API     API     `yaml:"api,omitempty"`
	DNS     DNS     `yaml:"dns,omitempty"`
	Groups  []Group `yaml:"groups,omitempty"`

	// Path is the file the config was loaded from ("" when parsed from memory).
	Path string `yaml:"-" json:"-"`
	// Secret is the resolved cluster secret (from cluster.secret or cluster.secret_file, trailing whitespace
	// trimmed). It authenticates all cluster traffic, so it is never marshalled.
	Secret []byte `yaml:"-" json:"-"`
	// APIToken is the resolved API token (from api.token_file or api.token), "" if none is configured.
	APIToken string `yaml:"-" json:"-"`

	units []*Group // see Units
}

// Cluster holds what all nodes must agree on.
type Cluster struct {
	Name       string `yaml:"name,omitempty"`
	SecretFile string `yaml:"secret_file,omitempty"`
	Secret     string `yaml:"secret,omitempty" json:"-"` // never in JSON, which the API may serve
	Profile    string `yaml:"profile,omitempty"`         // default | fast | wan
	Port       int    `yaml:"port,omitempty"`            // UDP heartbeats and TCP quorum traffic

	// Explicit timing overrides; nil takes the profile's value (see Config.Timing).
	HeartbeatInterval *Duration `yaml:"heartbeat_interval,omitempty"`
	FailureTimeout    *Duration `yaml:"failure_timeout,omitempty"` // the lease length L
	LeaseGuard        *Duration `yaml:"lease_guard,omitempty"`
	ClockDrift        *float64  `yaml:"clock_drift,omitempty"`
	RaftTimeout       *Duration `yaml:"raft_timeout,omitempty"`
	StartupGrace      *Duration `yaml:"startup_grace,omitempty"`
	// KeepLeaderOffOwners (default true) moves quorum leadership to a voter that owns no group, so the death of
	// an owner never also costs a leader election. Benchmarks turn it off to measure that worst case.
	KeepLeaderOffOwners *bool `yaml:"keep_leader_off_owners,omitempty"`
}

// Node is one machine running `baton agent`. Every node votes in the quorum; a witness only votes and never owns
// a group.
type Node struct {
	Name    string `yaml:"name,omitempty"`
	Address string `yaml:"address,omitempty"`  // IP address for cluster traffic
	API     string `yaml:"api,omitempty"`      // host:port of the HTTP API; default <address>:7480
	DataDir string `yaml:"data_dir,omitempty"` // default /var/lib/baton/<cluster>/<node>
	Witness bool   `yaml:"witness,omitempty"`
	DNS     string `yaml:"dns,omitempty"` // host:port the built-in DNS server listens on here; overrides dns.listen
}

// API configures the agents' HTTP API.
type API struct {
	TokenFile string `yaml:"token_file,omitempty"`
	Token     string `yaml:"token,omitempty" json:"-"`
	// UI (default true) serves the read-only dashboard at /ui/ on the API listener. It is on by default because
	// it shows nothing GET /v1/status does not already show; turn it off where the API port is reachable by
	// people who should not browse the cluster's layout.
	UI *bool `yaml:"ui,omitempty"`
	// TLS, when set, makes every agent serve its API over HTTPS only; the CLI and the agents' own forwarding to
	// the quorum leader then use https and check the agents' certificates.
	TLS *APITLS `yaml:"tls,omitempty"`
}

// APITLS is the API's certificate. In cert_file and key_file "{node}" stands for the node's name, so one cluster
// file can give each node its own certificate.
type APITLS struct {
	CertFile string `yaml:"cert_file,omitempty"` // PEM certificate (chain) naming the node's API address
	KeyFile  string `yaml:"key_file,omitempty"`  // PEM private key; private to the agent's user, like the secret
	// CAFile is the PEM CA bundle that agents' certificates are checked against by the CLI and by forwarding. Without
	// it the node's own certificate is the only one trusted (pinned): every node must then serve that same
	// certificate, naming every node's API address.
	CAFile string `yaml:"ca_file,omitempty"`
}

// UIEnabled reports whether the agents serve the dashboard (api.ui, default true).
func (a API) UIEnabled() bool { return a.UI == nil || *a.UI }

// DNS configures the built-in authoritative DNS server.
type DNS struct {
	Listen string   `yaml:"listen,omitempty"` // host:port; an empty host (":53") means each node's own address
	Zone   string   `yaml:"zone,omitempty"`   // always ends in "." after Parse
	TTL    Duration `yaml:"ttl,omitempty"`
}

// Group is the unit that fails over.
type Group struct {
	Name          string   `yaml:"name,omitempty"`
	Mode          string   `yaml:"mode,omitempty"` // active-passive | active-active
	Members       []Member `yaml:"members,omitempty"`
	Failback      bool     `yaml:"failback,omitempty"`
	FailbackDelay Duration `yaml:"failback_delay,omitempty"`
	Standby       string   `yaml:"standby,omitempty"` // hot | warm | cold
	// Port is the service's port on each member, published by DNS SRV records, the proxy (unless proxy.port
	// says otherwise) and the client's endpoints; defaults to proxy.port or driver.port.
	Port int `yaml:"port,omitempty"`

	Checks  []Check   `yaml:"checks,omitempty"`
	VIPs    []VIP     `yaml:"vips,omitempty"`
	DNS     *GroupDNS `yaml:"dns,omitempty"`
	Proxy   *Proxy    `yaml:"proxy,omitempty"`
	Service *Service  `yaml:"service,omitempty"`
	Hooks   Hooks     `yaml:"hooks,omitempty"`
	Driver  *Driver   `yaml:"driver,omitempty"`

	// Parent and Slot are set on the units of an active-active group (see Units).
	Parent string `yaml:"-" json:"-"`
	Slot   int    `yaml:"-" json:"-"`
}

// Member is a node that may own a group. The healthy member with the highest priority is preferred.
type Member struct {
	Node     string `yaml:"node,omitempty"`
	Priority int    `yaml:"priority,omitempty"` // 1..255, default 100
}

// Check is a local health check of a group's service.
type Check struct {
	Type          string   `yaml:"type,omitempty"`    // tcp | http | exec
	URL           string   `yaml:"url,omitempty"`     // http
	Address       string   `yaml:"address,omitempty"` // tcp: host:port
	Command       []string `yaml:"command,omitempty"` // exec: argv, no shell
	Interval      Duration `yaml:"interval,omitempty"`
	Timeout       Duration `yaml:"timeout,omitempty"`
	Fall          int      `yaml:"fall,omitempty"`          // consecutive failures that make the service unhealthy
	Rise          int      `yaml:"rise,omitempty"`          // consecutive successes that make it healthy again
	ExpectStatus  string   `yaml:"expect_status,omitempty"` // http: "200" or "200-399" (default)
	BodyContains  string   `yaml:"body_contains,omitempty"`
	TLSSkipVerify bool     `yaml:"tls_skip_verify,omitempty"`
}

// ExpectStatusRange returns the inclusive range of HTTP status codes the check accepts. It assumes a validated
// config and falls back to 200-399.
func (c Check) ExpectStatusRange() (lo, hi int) {
	if lo, hi, ok := ParseStatusRange(c.ExpectStatus); ok {
		return lo, hi
	}
	return 200, 399
}

// VIP is a virtual IP address that moves with the group.
type VIP struct {
	Address   string `yaml:"address,omitempty"` // prefix, e.g. 10.0.0.100/24
	Interface string `yaml:"interface,omitempty"`
	// Refresh, when set, repeats the gratuitous ARP / unsolicited NA that often while this node owns the VIP, for
	// routers and switches that forget or ignore the burst sent at takeover (0 = only at takeover).
	Refresh Duration `yaml:"refresh,omitempty"`
	// TCPReset (default true): while this node does not hold the VIP, TCP packets that still reach it for the
	// address are answered with a reset, and the node resets the address's connections when it gives the VIP up,
	// so that clients fail at once and retry instead of waiting for a retransmission. false leaves them
	// unanswered, as keepalived does: for clients that back off after a refused connection (go-redis waits 1 s
	// once its pool's dials have failed), whose retransmission then reaches the next owner.
	TCPReset *bool `yaml:"tcp_reset,omitempty"`
}

// Resets reports whether v's TCP resets are on (tcp_reset, default true).
func (v VIP) Resets() bool { return v.TCPReset == nil || *v.TCPReset }

// GroupDNS publishes the group's owner(s) under Name in the built-in DNS zone.
type GroupDNS struct {
	Name string `yaml:"name,omitempty"`
}

// Proxy is an L4 TCP listener forwarding to the group's owner.
type Proxy struct {
	Listen string `yaml:"listen,omitempty"` // host:port; an empty host (":9080") means the node's own address
	Port   int    `yaml:"port,omitempty"`   // the service's port on the owner
	// MaxConnections bounds the client connections the proxy holds on each node (0: 4096); beyond it new
	// ones are reset, so silent clients cannot exhaust the agent's file descriptors.
	MaxConnections int `yaml:"max_connections,omitempty"`
	// IdleTimeout resets a connection on which neither side sent anything for that long (0: never).
	IdleTimeout Duration `yaml:"idle_timeout,omitempty"`
}

// Service is the group's process: Run is supervised by Baton; Start/Stop/Status are commands for a service that
// something else (e.g. systemd) runs. Promote and Demote switch a warm standby's role.
type Service struct {
	Run          []string `yaml:"run,omitempty"`
	Start        []string `yaml:"start,omitempty"`
	Stop         []string `yaml:"stop,omitempty"`
	Status       []string `yaml:"status,omitempty"`
	Promote      []string `yaml:"promote,omitempty"`
	Demote       []string `yaml:"demote,omitempty"`
	StartTimeout Duration `yaml:"start_timeout,omitempty"`
	StopTimeout  Duration `yaml:"stop_timeout,omitempty"`
}

// Hooks are argv commands run on role changes (no shell).
type Hooks struct {
	Active  []string `yaml:"active,omitempty"`
	Standby []string `yaml:"standby,omitempty"`
	Fault   []string `yaml:"fault,omitempty"`
	Notify  []string `yaml:"notify,omitempty"`
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Driver makes a stateful group data-aware.
type Driver struct {
	Type        string              `yaml:"type,omitempty"` // one of DriverTypes
	BinDir      string              `yaml:"bin_dir,omitempty"`
	DataDir     string              `yaml:"data_dir,omitempty"`
	Port        int                 `yaml:"port,omitempty"`
	OSUser      string              `yaml:"os_user,omitempty"`
	Superuser   *Credential         `yaml:"superuser,omitempty"`
	Replication *Credential         `yaml:"replication,omitempty"`
	Sync        string              `yaml:"sync,omitempty"`    // "" | off | on | strict
	MaxLag      string              `yaml:"max_lag,omitempty"` // size such as 1MB; see ParseSize
	Commands    map[string][]string `yaml:"commands,omitempty"`
	// AllowRebuild lets a returning old primary whose pg_rewind fails be rebuilt from a fresh base backup of the
	// new primary (its diverged, never-acknowledged-elsewhere writes are discarded either way).
	AllowRebuild bool `yaml:"allow_rebuild,omitempty"`
	// SSLMode is libpq's sslmode for the connections between members (replication, base backup, pg_rewind, the
	// agent's SQL to a peer): disable, allow, prefer (the default), require, verify-ca or verify-full (postgres).
	SSLMode string `yaml:"ssl_mode,omitempty"`
	// SSLRootCert is the CA file (PEM) that verify-ca and verify-full check the servers' certificates against
	// (postgres; readable by os_user).
	SSLRootCert string `yaml:"ssl_root_cert,omitempty"`
	// ClientNetworks are the networks (CIDR prefixes) a cluster the driver creates admits every user from (scram),
	// for the application's clients; members are admitted by their addresses anyway (postgres).
	ClientNetworks []string `yaml:"client_networks,omitempty"`
}

// SSLModes are the driver.ssl_mode values, weakest first (libpq's sslmode).
var SSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// DefaultSSLMode is used when driver.ssl_mode is not set: a cluster that initdb creates has ssl off, and "prefer"
// encrypts where the servers have a certificate without failing where they have none. Set require (encryption)
// or verify-full (encryption and the server's identity) once the servers have certificates.
const DefaultSSLMode = "prefer"

// DriverTypes are the driver.type values the agent can run: exactly the drivers driver.New builds (a test in
// package driver checks both ways), so a config that check-config accepts never fails at start with "not
// implemented".
var DriverTypes = []string{"exec", "postgres", "redis"}

// plannedDriverTypes are drivers on the way but not built yet. check-config refuses them like any unknown type, but
// says they are not available yet rather than "not a driver", so a reader of the docs or the roadmap is not left
// thinking they misspelt it. Move a type to DriverTypes when driver.New builds it.
var plannedDriverTypes = []string{}

// DriverOperations are the keys of driver.commands (the exec driver's operations; package driver checks that it
// knows the same list).
var DriverOperations = []string{"state", "bootstrap", "promote", "follow", "set_sync", "fence", "stop"}

// Credential is a database user whose password lives in a file.
type Credential struct {
	User         string `yaml:"user,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
}

// Duration is a time.Duration written as a string in YAML and JSON ("100ms", "1s", "2m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("cannot unmarshal %s into a duration (want e.g. 100ms, 1s, 2m)", describeNode(n))
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes d as a string such as "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil // as encoding/json does for other types
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1s\": %w", err)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 100ms, 1s, 2m)", s)
	}
	return Duration(v), nil
}

// FieldError is one problem in a config, at a field path such as groups[0].vips[1].address.
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found in a config, in file order where that is known.
type Errors []FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es *Errors) add(path, format string, args ...any) {
	*es = append(*es, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Voters returns the name of every node in config order: every node, witness or not, votes in the quorum.
func (c *Config) Voters() []string {
	names := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		names[i] = n.Name
	}
	return names
}

// NodeByName returns the node called name; the error lists the known nodes.
func (c *Config) NodeByName(name string) (*Node, error) {
	for i := range c.Nodes {
		if c.Nodes[i].Name == name {
			return &c.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("unknown node %q (known: %s)", name, c.knownNodes())
}

// hostname is os.Hostname, replaceable in tests.
var hostname = os.Hostname

// LocalNode returns the node this process runs as: the one called name, or, when name is "", the one whose name
// is this host's name (as given, lowercased, or its first label: "n1.example.com" finds node "n1").
func (c *Config) LocalNode(name string) (*Node, error) {
	if name != "" {
		return c.NodeByName(name)
	}
	h, err := hostname()
	if err != nil {
		return nil, fmt.Errorf("cannot tell which node this is: %w; pass --node NAME (known: %s)", err, c.knownNodes())
	}
	lower := strings.ToLower(h)
	short, _, _ := strings.Cut(lower, ".")
	for _, cand := range []string{h, lower, short} {
		for i := range c.Nodes {
			if c.Nodes[i].Name == cand {
				return &c.Nodes[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no node is named after this host %q (known: %s); pass --node NAME", h, c.knownNodes())
}

// knownNodes lists the node names for an error message, at most 10 of them.
func (c *Config) knownNodes() string {
	if len(c.Nodes) == 0 {
		return "none"
	}
	names := make([]string, 0, 10)
	for _, n := range c.Nodes[:min(len(c.Nodes), 10)] {
		names = append(names, n.Name)
	}
	if more := len(c.Nodes) - len(names); more > 0 {
		return fmt.Sprintf("%s and %d more", strings.Join(names, ", "), more)
	}
	return strings.Join(names, ", ")
}

// GroupByName returns the group called name, or nil.
func (c *Config) GroupByName(name string) *Group {
	for i := range c.Groups {
		if c.Groups[i].Name == name {
			return &c.Groups[i]
		}
	}
	return nil
}

// Member returns node's membership of g.
func (g *Group) Member(node string) (Member, bool) {
	i := slices.IndexFunc(g.Members, func(m Member) bool { return m.Node == node })
	if i < 0 {
		return Member{}, false
	}
	return g.Members[i], true
}
