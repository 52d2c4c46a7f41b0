package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults that Parse fills in where the file leaves a value out (or zero).
const (
	DefaultProfile       = "default"
	DefaultPort          = 7946
	DefaultAPIPort       = 7480
	DefaultDataRoot      = "/var/lib/baton" // node data_dir: DefaultDataRoot/<cluster>/<node>
	DefaultZone          = "baton."
	DefaultDNSTTL        = Duration(time.Second)
	DefaultMode          = "active-passive"
	DefaultPriority      = 100
	DefaultStandby       = "hot"
	DefaultHookTimeout   = Duration(10 * time.Second)
	DefaultCheckInterval = Duration(time.Second)
	DefaultCheckTimeout  = Duration(time.Second) // or the interval, if that is shorter
	DefaultFall          = 3
	DefaultRise          = 2
	DefaultExpectStatus  = "200-399"
	DefaultStartTimeout  = Duration(30 * time.Second)
	DefaultStopTimeout   = Duration(10 * time.Second)
)

// MinSecretBytes is the shortest cluster secret accepted. The raft certificate, whose key is derived from the secret,
// is shown to anyone who connects to the quorum port, so the secret must resist offline guessing: 32 bytes is what
// `head -c 32 /dev/urandom | base64` gives (44 characters), and the agent stretches it with argon2id on top
// (internal/clusterkey).
const MinSecretBytes = 32

// maxSecretFile bounds what is read from a secret, token or password file: they hold a line, and a config that
// points one at a huge file by mistake must fail rather than eat memory.
const maxSecretFile = 64 << 10

// Load reads the config file at path; see Parse. Relative file paths inside it are relative to its directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

// Parse reads a config from data: it decodes it strictly, fills in defaults, makes relative file paths relative
// to baseDir, reads the cluster secret and the API token, and validates the result. On failure the error is
// Errors, holding every problem found, each with its field path.
func Parse(data []byte, baseDir string) (*Config, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, Errors{{Msg: err.Error()}}
	}
	c := &Config{}
	d := strictDecoder{expanding: map[*yaml.Node]bool{}}
	if root != nil {
		if root.Kind != yaml.MappingNode {
			return nil, Errors{{Msg: fmt.Sprintf("line %d: a config file is a YAML mapping (version: 1, cluster: ..., nodes: ...), not %s", root.Line, describeNode(root))}}
		}
		d.decode(root, reflect.ValueOf(c).Elem(), "")
	}
	c.ApplyDefaults()
	c.resolvePaths(baseDir)
	later := c.resolveSecrets()
	later = append(later, c.Validate()...)
	errs := append(d.errs, notUnder(later, d.errs)...)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// notUnder drops the errors in es about a field that already has a decode error (at it or above it): a field that
// could not be read has its zero value, and reporting that too would only repeat the first error.
func notUnder(es, decodeErrs Errors) Errors {
	bad := make(map[string]bool, len(decodeErrs))
	for _, de := range decodeErrs {
		if de.Path != "" {
			bad[de.Path] = true
		}
	}
	var out Errors
	for _, e := range es {
		if !bad[e.Path] && !slices.ContainsFunc(parentPaths(e.Path), func(p string) bool { return bad[p] }) {
			out = append(out, e)
		}
	}
	return out
}

// parentPaths returns the paths above p: "groups[0].vips[1].address" → groups[0].vips[1], groups[0].vips, groups[0],
// groups.
func parentPaths(p string) []string {
	var ps []string
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '.' || p[i] == '[' {
			ps = append(ps, p[:i])
		}
	}
	return ps
}

// ApplyDefaults fills in every value the file left out (or set to zero); Parse calls it. It is idempotent.
func (c *Config) ApplyDefaults() {
	cl := &c.Cluster
	if cl.Profile == "" {
		cl.Profile = DefaultProfile
	}
	if cl.Port == 0 {
		cl.Port = DefaultPort
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		if n.API == "" {
			if a, err := netip.ParseAddr(n.Address); err == nil {
				n.API = net.JoinHostPort(a.String(), fmt.Sprint(DefaultAPIPort))
			}
		}
		if n.DataDir == "" && n.Name != "" && cl.Name != "" {
			n.DataDir = filepath.Join(DefaultDataRoot, cl.Name, n.Name)
		}
	}
	if c.DNS.Zone == "" {
		c.DNS.Zone = DefaultZone
	} else if !strings.HasSuffix(c.DNS.Zone, ".") {
		c.DNS.Zone += "."
	}
	if c.DNS.TTL == 0 {
		c.DNS.TTL = DefaultDNSTTL
	}
	for i := range c.Groups {
		g := &c.Groups[i]
		if g.Mode == "" {
			g.Mode = DefaultMode
		}
		for j := range g.Members {
			if g.Members[j].Priority == 0 {
				g.Members[j].Priority = DefaultPriority
			}
		}
		if g.Standby == "" {
			g.Standby = DefaultStandby
			if g.Driver != nil && g.Mode != ModeActiveActive {
				g.Standby = "warm" // a database standby replicates: it runs, in a standby role
			}
		}
		if dr := g.Driver; dr != nil {
			if dr.Sync == "" {
				dr.Sync = "off"
			}
			if dr.Port == 0 && dr.Type == "postgres" {
				dr.Port = 5432
			}
		}
		if g.Hooks.Timeout == 0 {
			g.Hooks.Timeout = DefaultHookTimeout
		}
		for j := range g.Checks {
			ch := &g.Checks[j]
			if ch.Interval == 0 {
				ch.Interval = DefaultCheckInterval
			}
			if ch.Timeout == 0 {
				ch.Timeout = min(DefaultCheckTimeout, ch.Interval)
			}
			if ch.Fall == 0 {
				ch.Fall = DefaultFall
			}
			if ch.Rise == 0 {
				ch.Rise = DefaultRise
			}
			if ch.ExpectStatus == "" && ch.Type == "http" {
				ch.ExpectStatus = DefaultExpectStatus
			}
		}
		if s := g.Service; s != nil {
			if s.StartTimeout == 0 {
				s.StartTimeout = DefaultStartTimeout
			}
			if s.StopTimeout == 0 {
				s.StopTimeout = DefaultStopTimeout
			}
		}
	}
}

// resolvePaths makes every relative file path relative to baseDir, so that a config means the same whatever the
// agent's working directory.
func (c *Config) resolvePaths(baseDir string) {
	if baseDir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	abs(&c.Cluster.SecretFile)
	abs(&c.API.TokenFile)
	if t := c.API.TLS; t != nil {
		abs(&t.CertFile)
		abs(&t.KeyFile)
		abs(&t.CAFile)
	}
	for i := range c.Nodes {
		abs(&c.Nodes[i].DataDir)
	}
	for i := range c.Groups {
		if dr := c.Groups[i].Driver; dr != nil {
			abs(&dr.BinDir)
			abs(&dr.DataDir)
			for _, cr := range []*Credential{dr.Superuser, dr.Replication} {
				if cr != nil {
					abs(&cr.PasswordFile)
				}
			}
			abs(&dr.SSLRootCert)
		}
	}
}

// resolveSecrets reads the cluster secret and the API token. Conflicts (both inline and file) are left to
// Validate, which also checks the secret's length.
func (c *Config) resolveSecrets() Errors {
	var errs Errors
	cl := c.Cluster
	switch {
	case cl.SecretFile != "" && cl.Secret == "":
		b, err := ReadSecretFile(cl.SecretFile)
		if err != nil {
			errs.add("cluster.secret_file", "%v", err)
		} else {
			c.Secret = append([]byte{}, trimTrailingSpace(b)...) // non-nil even when empty: "resolved"
		}
	case cl.Secret != "" && cl.SecretFile == "":
		c.Secret = trimTrailingSpace([]byte(cl.Secret))
	}
	switch {
	case c.API.TokenFile != "" && c.API.Token == "":
		b, err := ReadSecretFile(c.API.TokenFile)
		switch {
		case err != nil:
			errs.add("api.token_file", "%v", err)
		case len(trimTrailingSpace(b)) == 0:
			errs.add("api.token_file", "%q is empty; put the token in it (e.g. head -c 32 /dev/urandom | base64 > FILE)", c.API.TokenFile)
		default:
			c.APIToken = string(trimTrailingSpace(b))
		}
	case c.API.Token != "" && c.API.TokenFile == "":
		c.APIToken = string(trimTrailingSpace([]byte(c.API.Token)))
	}
	return errs
}

func trimTrailingSpace(b []byte) []byte { return bytes.TrimRight(b, " \t\r\n") }

// ReadSecretFile reads a file holding a secret (the cluster secret, the API token, a driver's password). It
// refuses devices and pipes, which could block or never end, files larger than a secret, and — judged on the file
// it opened, not the name — files group or others may read or that someone other than this user or root owns
// (who could rewrite it); each error names the file and the fix.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, pathErr(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, pathErr(err))
	}
	defer f.Close()
	// Judge the file that was opened, not the name (it may be replaced in
	// between): a secret others can read, or someone else can rewrite, is
	// not one.
	if fi, err := f.Stat(); err == nil {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("%q is readable by group or others (mode %04o); chmod 600 %s", path, perm, path)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return nil, fmt.Errorf("%q is owned by uid %d, not by this user (uid %d) or root; chown it to the user the agent runs as", path, st.Uid, os.Geteuid())
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", path, pathErr(err))
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%q is larger than %d bytes; it should hold just the secret", path, maxSecretFile)
	}
	return b, nil
}

// pathErr drops the operation and path that a *fs.PathError repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
