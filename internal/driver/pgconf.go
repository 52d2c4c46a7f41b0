package driver

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The driver keeps every setting it manages in one file in the data dir, included at the end of postgresql.conf,
// and rewrites it whole on every change: the file is a function of the desired settings below, so a rewind or a
// base backup (which copy the primary's configuration files) cannot leave another node's port or primary behind.
const (
	batonConf   = "postgresql.baton.conf"
	includeLine = "include_if_exists = '" + batonConf + "'\t# added by baton: settings it manages"
	// noStandby is a synchronous_standby_names entry no member can match (node names cannot hold '_'): commits
	// wait for it forever, which is how strict mode blocks writes with no standby and how a fence keeps in-flight
	// commits from being acknowledged.
	noStandby  = "baton_none"
	fencedSync = "baton_fenced"
)

// settings are the desired server settings; pgconf renders them.
type settings struct {
	primary    *Peer    // nil: run as a primary; else stream from it
	sync       []string // synchronous standbys (ANY 1)
	strict     bool     // with no sync standbys: block commits rather than go asynchronous
	fenced     bool     // read-only, and no commit is acknowledged
	epoch      uint64
	generation uint64 // bumped on every write, so a reload can be confirmed (SHOW baton.generation)
}

// savedSettings is settings as the managed file records them (in a comment), so that a restarted agent carries on
// with what its predecessor set: a Fence after a restart must not drop a standby's primary_conninfo.
type savedSettings struct {
	Primary *Peer    `json:"primary,omitempty"`
	Sync    []string `json:"sync,omitempty"`
	Strict  bool     `json:"strict,omitempty"`
	Fenced  bool     `json:"fenced,omitempty"`
	Epoch   uint64   `json:"epoch,omitempty"`
}

const savedPrefix = "# baton-settings: "

// loadSettings reads the settings a previous agent left in the managed file; a missing or unreadable file gives
// the zero settings.
func (p *Postgres) loadSettings() settings {
	b, err := os.ReadFile(filepath.Join(p.dataDir, batonConf))
	if err != nil {
		return settings{}
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, savedPrefix); ok {
			var sv savedSettings
			if json.Unmarshal([]byte(rest), &sv) == nil {
				return settings{primary: sv.Primary, sync: sv.Sync, strict: sv.Strict, fenced: sv.Fenced, epoch: sv.Epoch}
			}
		}
	}
	return settings{}
}

// syncNames renders synchronous_standby_names.
func (s settings) syncNames() string {
	names := s.sync
	switch {
	case s.fenced:
		names = []string{fencedSync}
	case len(names) == 0 && s.strict:
		names = []string{noStandby}
	case len(names) == 0:
		return ""
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
	}
	return "ANY 1 (" + strings.Join(q, ", ") + ")"
}

// confString quotes v as a postgresql.conf string.
func confString(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// conninfoValue quotes v for a libpq connection string.
func conninfoValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}

// conninfo joins key=value pairs (in order) into a libpq connection string.
func conninfo(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[i] + "=" + conninfoValue(kv[i+1]))
	}
	return b.String()
}

// slotName is the replication slot a member streams through: slot names allow only [a-z0-9_].
func slotName(node string) string {
	var b strings.Builder
	b.WriteString("baton_")
	for _, r := range strings.ToLower(node) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// renderConf writes the managed settings file's content for s.
func (p *Postgres) renderConf(s settings, replPassword string) string {
	var b strings.Builder
	w := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, v) }
	b.WriteString("# Managed by baton: rewritten on every role change. Change the driver configuration instead.\n")
	saved, _ := json.Marshal(savedSettings{Primary: s.primary, Sync: s.sync, Strict: s.strict, Fenced: s.fenced, Epoch: s.epoch})
	b.WriteString(savedPrefix + string(saved) + "\n")
	w("port", strconv.Itoa(p.port))
	w("listen_addresses", confString(p.listen))
	w("unix_socket_directories", confString(p.socketDir))
	w("wal_level", "replica")
	w("wal_log_hints", "on # pg_rewind needs it to bring a returning primary back without a new base backup")
	w("hot_standby", "on")
	w("max_wal_senders", strconv.Itoa(max(10, 2*len(p.opts.Members)+2)))
	w("max_replication_slots", strconv.Itoa(max(10, 2*len(p.opts.Members)+2)))
	w("wal_keep_size", "'256MB' # a member without a slot (or before it has one) can still catch up")
	w("recovery_target_timeline", "'latest'")
	w("synchronous_commit", "on")
	w("synchronous_standby_names", confString(s.syncNames()))
	if s.fenced {
		w("default_transaction_read_only", "on # fenced: this node lost its lease")
	} else {
		w("default_transaction_read_only", "off")
	}
	if s.primary != nil {
		w("primary_conninfo", confString(conninfo(append([]string{
			"host", s.primary.Host, "port", strconv.Itoa(s.primary.Port),
			"user", p.repl.user, "password", replPassword,
			"application_name", p.opts.Node, "connect_timeout", "5"}, p.sslParams()...)...)))
		w("primary_slot_name", confString(slotName(p.opts.Node)))
	}
	w("baton.epoch", confString(strconv.FormatUint(s.epoch, 10)))
	w("baton.generation", confString(strconv.FormatUint(s.generation, 10)))
	return b.String()
}

// writeFileAs replaces path atomically with data, owned by the os user, mode 0600.
func (p *Postgres) writeFileAs(path string, data []byte) error {
	tmp := path + ".baton-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := p.user.chown(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ensureInclude appends the include line to postgresql.conf once.
func (p *Postgres) ensureInclude() error {
	path := filepath.Join(p.dataDir, "postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: data dir %s has no postgresql.conf (%v); a cluster whose configuration lives elsewhere (Debian keeps it in /etc/postgresql) needs postgresql.conf and pg_hba.conf copied into the data dir",
			ErrConfig, p.dataDir, err)
	}
	if strings.Contains(string(b), batonConf) {
		return nil
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, includeLine+"\n"...)
	return p.writeFileAs(path, b)
}
