package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/testkit"
	"go.yaml.in/yaml/v3"
)

// head is a valid cluster with two service nodes and a witness; test cases append groups to it (it is 6 lines).
const head = `version: 1
cluster: {name: prod, secret: 0123456789abcdef0123456789abcdef}
nodes:
  - {name: n1, address: 10.0.0.11}
  - {name: n2, address: 10.0.0.12}
  - {name: w1, address: 10.0.0.13, witness: true}
`

// errLines parses doc and returns its error lines (nil if it parses).
func errLines(t *testing.T, doc string) []string {
	t.Helper()
	_, err := Parse([]byte(doc), t.TempDir())
	if err == nil {
		return nil
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Parse error is %T, want Errors: %v", err, err)
	}
	return strings.Split(es.Error(), "\n")
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		// Decoding: unknown fields, types, syntax.
		{"unknown field with path and line", head + `groups:
  - name: web
    members: [{node: n1}]
    checks:
      - {type: tcp, address: "127.0.0.1:80"}
      - type: tcp
        address: "127.0.0.1:81"
        intervall: 1s
`, []string{"groups[0].checks[1].intervall: unknown field (line 14)"}},
		{"every unknown field is reported", `version: 1
clustr: {name: prod}
cluster: {name: prod, secret: 0123456789abcdef0123456789abcdef, profil: fast}
nodes: [{name: n1, address: 10.0.0.11, adress: 10.0.0.12}]
`, []string{
			"clustr: unknown field (line 2)",
			"cluster.profil: unknown field (line 3)",
			"nodes[0].adress: unknown field (line 4)",
		}},
		{"driver commands are the driver's operations", head + `groups:
  - name: db
    members: [{node: n1}]
    driver: {type: exec, commands: {promote: [/bin/p], anything-goes: [/bin/a]}}
`, []string{
			`groups[0].driver.commands.anything-goes: "anything-goes" is not a driver operation; use state, bootstrap, promote, follow, set_sync, fence, stop`,
			`groups[0].driver.commands.state: missing: the exec driver needs a state command (it prints e.g. "role=primary timeline=1 lsn=0/3000060")`,
		}},
		{"type error with path and line", `version: 1
cluster:
  name: prod
  secret: 0123456789abcdef0123456789abcdef
  port: abc
nodes: [{name: n1, address: 10.0.0.11}]
`, []string{`cluster.port: line 5: cannot unmarshal "abc" into int`}},
		{"type errors are all reported and not repeated by validation", `version: one
cluster: {name: prod, secret: 0123456789abcdef0123456789abcdef, clock_drift: [1]}
nodes: {name: n1}
`, []string{
			`version: line 1: cannot unmarshal "one" into int`,
			"cluster.clock_drift: line 2: cannot unmarshal a list into float64",
			"nodes: line 3: cannot unmarshal a mapping into a list",
		}},
		{"bad duration", head + `groups:
  - name: web
    members: [{node: n1}]
    checks: [{type: tcp, address: "127.0.0.1:80", interval: 1x}]
`, []string{`groups[0].checks[0].interval: line 10: invalid duration "1x" (want e.g. 100ms, 1s, 2m)`}},
		{"argv must be a list", head + `groups:
  - name: web
    members: [{node: n1}]
    hooks: {active: /etc/baton/on-active --now}
`, []string{`groups[0].hooks.active: line 10: cannot unmarshal "/etc/baton/on-active --now" into a list`}},
		{"syntax error", "version: 1\n\tcluster: {name: prod}\n",
			[]string{"line 2: found a tab character that violates indentation"}},
		{"duplicate key", head + "version: 1\n",
			[]string{"version: duplicate key (line 7; first at line 1)"}},
		{"two documents", head + "---\nversion: 1\n",
			[]string{`line 7: a second YAML document; a config file holds exactly one (remove the extra "---")`}},
		{"not a mapping", "- version: 1\n",
			[]string{"line 1: a config file is a YAML mapping (version: 1, cluster: ..., nodes: ...), not a list"}},
		{"merge of an anchor into itself", strings.Replace(head, "cluster: {", "cluster: &c {<<: *c, ", 1),
			[]string{`cluster: line 2: anchor "c" contains itself`}},

		// Version and cluster.
		{"empty file", "", []string{
			`version: missing (add "version: 1")`,
			"cluster.name: missing (e.g. name: prod)",
			"cluster.secret_file: missing; the cluster needs a shared secret of at least 32 bytes (e.g. head -c 32 /dev/urandom | base64 > FILE, then secret_file: FILE)",
			"nodes: no nodes; add at least one, e.g. {name: n1, address: 10.0.0.11}",
		}},
		{"version 2", strings.Replace(head, "version: 1", "version: 2", 1),
			[]string{"version: unsupported version 2 (this baton reads version 1)"}},
		{"cluster name", strings.Replace(head, "name: prod", "name: Prod_1", 1),
			[]string{`cluster.name: "Prod_1" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`}},
		{"secret and secret_file", strings.Replace(head, "secret:", "secret_file: s, secret:", 1),
			[]string{"cluster.secret: set either secret or secret_file, not both"}},
		{"short inline secret", strings.Replace(head, "0123456789abcdef0123456789abcdef", "short", 1),
			[]string{"cluster.secret: secret is 5 bytes; use at least 32 (e.g. the output of head -c 32 /dev/urandom | base64), or keep it in a file: head -c 32 /dev/urandom | base64 > FILE, then secret_file: FILE"}},
		{"profile and port", strings.Replace(head, "secret:", "profile: turbo, port: 70000, secret:", 1), []string{
			`cluster.profile: "turbo" is not a profile; use default, fast or wan`,
			"cluster.port: 70000 is out of range; use 1 to 65535 (default 7946)",
		}},

		// Timing overrides.
		{"heartbeat too short", strings.Replace(head, "secret:", "heartbeat_interval: 2ms, secret:", 1),
			[]string{"cluster.heartbeat_interval: 2ms is too short; use at least 5ms"}},
		{"failure_timeout below 3 heartbeats", strings.Replace(head, "secret:", "failure_timeout: 100ms, lease_guard: 20ms, secret:", 1),
			[]string{"cluster.failure_timeout: 100ms is less than 3 × heartbeat_interval (50ms); use at least 150ms so one lost heartbeat cannot look like a failure"}},
		{"heartbeat above a third of the profile's lease", strings.Replace(head, "secret:", "heartbeat_interval: 200ms, secret:", 1),
			[]string{"cluster.heartbeat_interval: 200ms is more than a third of failure_timeout (400ms); use at most 133ms so one lost heartbeat cannot look like a failure"}},
		{"lease guard too long", strings.Replace(head, "secret:", "lease_guard: 250ms, secret:", 1),
			[]string{"cluster.lease_guard: lease_guard 250ms must be above 0 and below half of failure_timeout (400ms): an owner that cannot renew drops its front doors lease_guard before its lease ends, and needs the rest of the lease to act"}},
		{"profile guard does not fit a short lease", strings.Replace(head, "secret:", "profile: wan, failure_timeout: 900ms, secret:", 1),
			[]string{"cluster.failure_timeout: lease_guard 500ms must be above 0 and below half of failure_timeout (900ms): an owner that cannot renew drops its front doors lease_guard before its lease ends, and needs the rest of the lease to act"}},
		{"drift, raft, grace", strings.Replace(head, "secret:", "clock_drift: 0.5, raft_timeout: 5ms, startup_grace: -1s, secret:", 1), []string{
			"cluster.clock_drift: 0.5 is out of range; use 0 to 0.1 (e.g. 0.01: real clocks drift ~0.0001)",
			"cluster.raft_timeout: 5ms is too short; use at least 10ms",
			"cluster.startup_grace: -1s is negative; use 0 or more",
		}},

		// Nodes.
		{"bad node address", head + "  - {name: n3, address: 10.0.0.300}\n",
			[]string{`nodes[3].address: "10.0.0.300" is not an IP address`}},
		{"node names and addresses", `version: 1
cluster: {name: prod, secret: 0123456789abcdef0123456789abcdef}
nodes:
  - {name: n1, address: 10.0.0.11}
  - {name: n1, address: 10.0.0.11}
  - {name: "N 3", api: "nohost"}
`, []string{
			`nodes[1].name: "n1" is already the name of nodes[0]`,
			"nodes[1].address: 10.0.0.11 is already the address of nodes[0]; every node needs its own (all use cluster.port 7946)",
			`nodes[1].api: 10.0.0.11:7480 is already the api of nodes[0]`,
			`nodes[2].name: "N 3" is not a valid node name: use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
			"nodes[2].address: missing (the node's IP address, e.g. 10.0.0.11)",
			`nodes[2].api: "nohost" is not host:port (e.g. 10.0.0.11:7480)`,
		}},
		{"api on the cluster port", strings.Replace(head, "10.0.0.11}", "10.0.0.11, api: \"10.0.0.11:7946\"}", 1),
			[]string{"nodes[0].api: 10.0.0.11:7946 clashes with the quorum traffic on cluster.port 7946; use another port (default 7480)"}},
		{"two voters", `version: 1
cluster: {name: prod, secret: 0123456789abcdef0123456789abcdef}
nodes:
  - {name: n1, address: 10.0.0.11}
  - {name: n2, address: 10.0.0.12}
`, []string{"nodes: only 2 voting nodes (n1, n2): a partition between them cannot be decided safely; add a witness node, e.g. {name: w1, address: 10.0.0.13, witness: true}"}},
		{"one voter is fine", `version: 1
cluster: {name: dev, secret: 0123456789abcdef0123456789abcdef}
nodes: [{name: n1, address: 127.0.0.1}]
`, nil},
		{"four voters are fine", head + "  - {name: n4, address: 10.0.0.14}\n", nil},

		// Groups and members.
		{"witness as member", head + `groups:
  - name: web
    members: [{node: n1}, {node: w1}]
`, []string{`groups[0].members[1].node: "w1" is a witness; witnesses vote but never own a group`}},
		{"unknown, missing and repeated members", head + `groups:
  - name: web
    members: [{node: n1}, {node: n1, priority: 300}, {node: n9}, {priority: 5}]
`, []string{
			`groups[0].members[1].node: "n1" is already members[0]`,
			"groups[0].members[1].priority: 300 is out of range; use 1 to 255 (higher wins; default 100)",
			`groups[0].members[2].node: unknown node "n9" (known: n1, n2, w1)`,
			"groups[0].members[3].node: missing (known: n1, n2, w1)",
		}},
		{"group fields", head + `groups:
  - {name: web, members: [{node: n1}], mode: master-slave, standby: lukewarm, failback_delay: 5s}
  - {name: web, members: []}
  - {name: Web_2, members: [{node: n2}]}
`, []string{
			`groups[0].mode: "master-slave" is not a mode; use active-passive or active-active`,
			`groups[0].standby: "lukewarm" is not a standby mode; use hot, warm or cold`,
			"groups[0].failback_delay: has no effect without failback: true",
			`groups[1].name: "web" is already the name of groups[0]`,
			"groups[1].members: no members; add at least one, e.g. [{node: n1, priority: 100}]",
			`groups[2].name: "Web_2" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		}},

		// Checks.
		{"checks", head + `groups:
  - name: web
    members: [{node: n1}]
    checks:
      - {type: icmp}
      - {type: tcp, url: "http://x/"}
      - {type: http, url: "ftp://x/", expect_status: 2xx}
      - {type: exec, interval: 5ms, timeout: -1s, fall: -1, rise: -2}
      - {type: http, address: "127.0.0.1:80", url: "https://x/health", tls_skip_verify: true}
`, []string{
			`groups[0].checks[0].type: "icmp" is not a check type; use tcp, http or exec`,
			"groups[0].checks[1].address: missing (a tcp check needs e.g. address: 127.0.0.1:5432)",
			"groups[0].checks[1].url: a tcp check does not use url (only http checks do)",
			`groups[0].checks[2].url: "ftp://x/" is not an http or https URL (e.g. http://127.0.0.1:8080/healthz)`,
			`groups[0].checks[2].expect_status: "2xx" is not a status or range (e.g. 200 or 200-399)`,
			"groups[0].checks[3].command: missing (an exec check needs an argv list, e.g. command: [/usr/local/bin/check-web, --quick])",
			"groups[0].checks[3].interval: 5ms is too short; use at least 10ms",
			"groups[0].checks[3].timeout: -1s must be above 0 (e.g. 1s)",
			"groups[0].checks[3].fall: -1 must be at least 1 (failures in a row that make the service unhealthy)",
			"groups[0].checks[3].rise: -2 must be at least 1 (successes in a row that make it healthy again)",
			"groups[0].checks[4].address: a http check does not use address (only tcp checks do)",
		}},

		// VIPs.
		{"vips", head + `groups:
  - name: web
    members: [{node: n1}]
    vips:
      - {address: 10.0.0.100/24, interface: eth0, refresh: 100ms}
      - {address: 10.0.0.300/24, interface: eth0}
      - {address: 10.0.0.101}
      - {address: 10.0.0.12/24, interface: "a very long interface name"}
  - name: api
    members: [{node: n2}]
    vips: [{address: 10.0.0.100/24, interface: eth1}]
`, []string{
			"groups[0].vips[0].refresh: 100ms is too often; use 0 (takeover only) or at least 1s",
			`groups[0].vips[1].address: "10.0.0.300/24" is not an IP prefix (want e.g. 10.0.0.100/24)`,
			`groups[0].vips[2].address: "10.0.0.101" is not an IP prefix (want e.g. 10.0.0.100/24)`,
			"groups[0].vips[2].interface: missing (the network interface to add the address to, e.g. eth0)",
			"groups[0].vips[3].address: 10.0.0.12 is the address of node n2; a VIP must be an address no node holds",
			`groups[0].vips[3].interface: "a very long interface name" is not an interface name (at most 15 characters, no '/' or spaces)`,
			"groups[1].vips[0].address: 10.0.0.100 is already used by groups[0].vips[0]; a VIP belongs to one group",
		}},

		// Front doors, service, hooks, driver.
		{"dns and proxy", head + `groups:
  - {name: web, members: [{node: n1}], dns: {name: web}, proxy: {listen: ":9080", port: 0}}
  - {name: api, members: [{node: n1}], dns: {name: web}, proxy: {listen: ":9080", port: 80}}
`, []string{
			"groups[0].dns: no DNS server serves it; set dns.listen (or nodes[].dns)",
			"groups[0].proxy.port: 0 is out of range; use the service's port, 1 to 65535",
			`groups[1].dns.name: "web" is already the DNS name of groups[0]`,
			"groups[1].dns: no DNS server serves it; set dns.listen (or nodes[].dns)",
			`groups[1].proxy.listen: ":9080" is already the proxy listener of groups[0]`,
		}},
		{"port collisions", head + `dns: {listen: ":7480"}
groups:
  - {name: web, members: [{node: n1}], proxy: {listen: ":7946", port: 80}}
`, []string{
			"groups[0].proxy.listen: port 7946 is also cluster.port's on node n1; give one of them another port",
			"dns.listen: port 7480 is also nodes[0].api's on node n1; give one of them another port",
			"dns.listen: port 7480 is also nodes[1].api's on node n2; give one of them another port",
			"dns.listen: port 7480 is also nodes[2].api's on node w1; give one of them another port",
		}},
		{"check timeout beyond its interval", head + `groups:
  - {name: web, members: [{node: n1}], checks: [{type: tcp, address: "127.0.0.1:80", interval: 100ms, timeout: 1s}]}
`, []string{
			"groups[0].checks[0].timeout: 1s is longer than the interval 100ms: a check runs once per interval, so a hung one would hold up the next; use at most 100ms",
		}},
		{"proxy limits", head + `groups:
  - {name: web, members: [{node: n1}], proxy: {listen: ":9080", port: 80, max_connections: -1, idle_timeout: 100ms}}
`, []string{
			"groups[0].proxy.max_connections: -1 is negative; use 0 for the default (4096)",
			"groups[0].proxy.idle_timeout: 100ms: use 0 (never) or at least 1s, longer than the service's quietest normal pause",
		}},
		{"dns section", head + "dns: {listen: nowhere, zone: Bad..zone, ttl: 1500ms}\n", []string{
			`dns.listen: "nowhere" is not host:port (e.g. 10.0.0.11:53)`,
			`dns.zone: "Bad..zone." is not a domain name (e.g. baton. or ha.example.com.)`,
			"dns.ttl: 1.5s is not a whole number of seconds (DNS TTLs count seconds); use e.g. 1s",
		}},
		{"service and hooks", head + `groups:
  - name: web
    members: [{node: n1}]
    service: {run: [/bin/web], start: [systemctl, start, web], stop: [""], stop_timeout: -1s}
    hooks: {active: [""], timeout: -1s}
  - name: api
    members: [{node: n1}]
    service: {status: [/bin/true]}
`, []string{
			"groups[0].service.start: set either run (a process Baton supervises) or start (a command that starts it), not both",
			"groups[0].service.stop[0]: empty program name; the first element is the program to run (there is no shell)",
			"groups[0].service.stop_timeout: -1s must be above 0 (e.g. 10s)",
			"groups[0].hooks.active[0]: empty program name; the first element is the program to run (there is no shell)",
			"groups[0].hooks.timeout: -1s must be above 0 (e.g. 10s)",
			"groups[1].service: nothing to run; set run (a process Baton supervises) or start (a command that starts it)",
		}},
		{"driver", head + `groups:
  - name: db
    mode: active-active
    members: [{node: n1}]
    driver: {type: mysql, sync: maybe, max_lag: 1 parsec, port: 70000, superuser: {password_file: p}, commands: {promote: [""]}}
`, []string{
			`groups[0].driver.type: "mysql" is not a driver; use exec, postgres or redis`,
			"groups[0].driver: a data driver needs mode active-passive (one writable primary), not active-active",
			`groups[0].driver.sync: "maybe" is not a sync mode; use off, on or strict`,
			`groups[0].driver.max_lag: "1 parsec" is not a size (e.g. 0, 512kB or 16MB)`,
			"groups[0].driver.port: 70000 is out of range; use 1 to 65535 (or leave it out for the driver's default)",
			"groups[0].driver.superuser.user: missing",
			"groups[0].driver.commands.promote[0]: empty program name; the first element is the program to run (there is no shell)",
		}},

		{"redis driver", head + `groups:
  - name: cache
    members: [{node: n1}]
    driver: {type: redis}
`, []string{
			"groups[0].driver.data_dir: missing (the Redis data directory the driver keeps its config, state and dump in, e.g. /var/lib/baton/redis)",
		}},
		{"postgres driver", head + `groups:
  - name: db
    standby: cold
    members: [{node: n1}]
    service: {run: [/bin/true]}
    driver: {type: postgres}
`, []string{
			`groups[0].driver: a data driver runs its standbys as replicas: set standby: warm (or leave it out), not "cold"`,
			"groups[0].driver: a group with a driver has the driver run its database; remove service (or the driver)",
			"groups[0].driver.data_dir: missing (the PostgreSQL data directory, e.g. /var/lib/postgresql/15/baton)",
			"groups[0].driver.bin_dir: missing (the PostgreSQL binaries, e.g. /usr/lib/postgresql/15/bin)",
			"groups[0].driver.superuser: missing (user and password_file of a PostgreSQL superuser the agent connects as)",
			"groups[0].driver.replication: missing (user and password_file of the replication user standbys stream as)",
		}},

		{"postgres ssl_mode", head + `groups:
  - name: db
    members: [{node: n1}]
    driver: {type: postgres, bin_dir: /b, data_dir: /d, superuser: {user: postgres, password_file: p}, replication: {user: r, password_file: p}, ssl_mode: tls, client_networks: [10.0.0.0/24, 10.0.1.300/32]}
  - name: db2
    members: [{node: n1}]
    driver: {type: postgres, bin_dir: /b, data_dir: /d2, superuser: {user: postgres, password_file: p}, replication: {user: r, password_file: p}, ssl_mode: verify-full}
  - name: ex
    members: [{node: n1}]
    driver: {type: exec, commands: {state: [/bin/true]}, ssl_mode: require, ssl_root_cert: ca.pem}
`, []string{
			`groups[0].driver.ssl_mode: "tls" is not an sslmode; use disable, allow, prefer, require, verify-ca or verify-full`,
			`groups[0].driver.client_networks[1]: "10.0.1.300/32" is not a network (e.g. 10.0.0.0/24, or 10.0.0.50/32 for one host)`,
			"groups[1].driver.ssl_root_cert: missing: ssl_mode verify-full checks the servers' certificates against this CA file (PEM), e.g. /etc/baton/pg-ca.pem",
			"groups[2].driver.ssl_mode: only the postgres driver connects members to each other; remove it",
			"groups[2].driver.ssl_root_cert: only the postgres driver connects members to each other; remove it",
		}},

		// YAML features that must keep working.
		{"anchors and merge keys", head + `groups:
  - name: web
    members: [{node: n1}]
    checks:
      - &chk {type: tcp, address: "127.0.0.1:80", interval: 200ms}
      - {<<: *chk, address: "127.0.0.1:81"}
`, nil},
		{"unknown field inside a merged mapping", head + `groups:
  - name: web
    members: [{node: n1}]
    checks:
      - &chk {type: tcp, adress: "127.0.0.1:80"}
      - {<<: *chk, address: "127.0.0.1:81"}
`, []string{
			"groups[0].checks[0].adress: unknown field (line 11)",
			"groups[0].checks[1].adress: unknown field (line 11)",
			"groups[0].checks[0].address: missing (a tcp check needs e.g. address: 127.0.0.1:5432)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errLines(t, tt.doc)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n  got:  %s\n  want: %s", strings.Join(got, "\n        "), strings.Join(tt.want, "\n        "))
			}
		})
	}
}

// design is the config sketch of DESIGN.md with the secret inline and no token file.
const design = `version: 1
cluster:
  name: prod
  secret: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  profile: default
  port: 7946
nodes:
  - {name: n1, address: 10.0.0.11, api: 10.0.0.11:7480, data_dir: /var/lib/baton/n1}
  - {name: n2, address: 10.0.0.12}
  - {name: w1, address: 10.0.0.13, witness: true}
dns:
  listen: 10.0.0.11:53
  zone: baton.
  ttl: 1s
groups:
  - name: web
    mode: active-passive
    members: [{node: n1, priority: 150}, {node: n2, priority: 100}]
    failback: false
    standby: hot
    checks: [{type: http, url: "http://127.0.0.1:8080/healthz", interval: 100ms, fall: 3, rise: 2}]
    vips: [{address: 10.0.0.100/24, interface: eth0}]
    dns: {name: web}
    proxy: {listen: ":9080", port: 8080}
    service: {run: ["/usr/bin/webapp", "--port", "8080"]}
    hooks: {active: ["/etc/baton/on-active"], standby: ["/etc/baton/on-standby"]}
  - name: db
    members: [{node: n1, priority: 100}, {node: n2}]
    standby: warm
    vips: [{address: 10.0.0.101/24, interface: eth0}]
    driver:
      type: postgres
      bin_dir: /usr/lib/postgresql/15/bin
      data_dir: /var/lib/baton/pg
      port: 5432
      os_user: postgres
      superuser: {user: postgres, password_file: /etc/baton/pg.pass}
      replication: {user: replicator, password_file: repl.pass}
      sync: on
      max_lag: 1MB
`

func TestParseDesignSketch(t *testing.T) {
	c, err := Parse([]byte(design), "/etc/baton")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(c.Secret), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; got != want {
		t.Errorf("Secret = %q, want %q", got, want)
	}
	if c.APIToken != "" {
		t.Errorf("APIToken = %q, want none", c.APIToken)
	}
	if got, want := c.Voters(), []string{"n1", "n2", "w1"}; !slices.Equal(got, want) {
		t.Errorf("Voters() = %v, want %v", got, want)
	}
	n2, err := c.NodeByName("n2")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Node{Name: "n2", Address: "10.0.0.12", API: "10.0.0.12:7480", DataDir: "/var/lib/baton/prod/n2"}); *n2 != want {
		t.Errorf("n2 = %+v, want defaults %+v", *n2, want)
	}
	if n1, _ := c.NodeByName("n1"); n1.DataDir != "/var/lib/baton/n1" {
		t.Errorf("n1.DataDir = %q, want the explicit /var/lib/baton/n1", n1.DataDir)
	}

	web := c.GroupByName("web")
	ch := web.Checks[0]
	if ch.Interval.D() != 100*time.Millisecond || ch.Timeout.D() != 100*time.Millisecond || ch.ExpectStatus != "200-399" {
		t.Errorf("web check = %+v, want interval 100ms, timeout = interval, expect_status 200-399", ch)
	}
	if lo, hi := ch.ExpectStatusRange(); lo != 200 || hi != 399 {
		t.Errorf("ExpectStatusRange() = %d-%d, want 200-399", lo, hi)
	}
	if web.Hooks.Timeout != DefaultHookTimeout || web.Service.StartTimeout != DefaultStartTimeout || web.Service.StopTimeout != DefaultStopTimeout {
		t.Errorf("web hooks/service timeouts = %v %v %v, want defaults", web.Hooks.Timeout, web.Service.StartTimeout, web.Service.StopTimeout)
	}
	if m, ok := web.Member("n1"); !ok || m.Priority != 150 {
		t.Errorf(`Member("n1") = %+v, %v`, m, ok)
	}
	if _, ok := web.Member("w1"); ok {
		t.Error(`Member("w1") found a witness`)
	}

	db := c.GroupByName("db")
	if db.Mode != "active-passive" || db.Standby != "warm" || db.Failback || db.FailbackDelay != 0 {
		t.Errorf("db = mode %q standby %q failback %v delay %v", db.Mode, db.Standby, db.Failback, db.FailbackDelay)
	}
	if m, _ := db.Member("n2"); m.Priority != DefaultPriority {
		t.Errorf("db member n2 priority = %d, want default %d", m.Priority, DefaultPriority)
	}
	if db.Driver.Sync != "on" {
		t.Errorf(`driver.sync = %q, want "on" (not a YAML 1.1 boolean)`, db.Driver.Sync)
	}
	if got, want := db.Driver.Replication.PasswordFile, "/etc/baton/repl.pass"; got != want {
		t.Errorf("relative password_file = %q, want %q", got, want)
	}
	if n, err := ParseSize(db.Driver.MaxLag); err != nil || n != 1<<20 {
		t.Errorf("ParseSize(%q) = %d, %v", db.Driver.MaxLag, n, err)
	}
	if c.GroupByName("nope") != nil {
		t.Error("GroupByName found a group that does not exist")
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`version: 1
cluster: {name: lab, secret: "0123456789abcdef0123456789abcdef  "}
nodes: [{name: n1, address: "fd00::1"}, {name: n2, address: 10.0.0.2}, {name: n3, address: 10.0.0.3}]
dns: {zone: ha.example.com}
groups:
  - name: web
    members: [{node: n1}]
    checks: [{type: http, url: "http://[::1]/"}, {type: tcp, address: ":80", interval: 300ms}]
    service: {start: [systemctl, start, web]}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Profile != "default" || c.Cluster.Port != 7946 {
		t.Errorf("profile, port = %q, %d", c.Cluster.Profile, c.Cluster.Port)
	}
	if string(c.Secret) != "0123456789abcdef0123456789abcdef" {
		t.Errorf("Secret = %q, want trailing spaces trimmed", c.Secret)
	}
	if got := c.Nodes[0].API; got != "[fd00::1]:7480" {
		t.Errorf("IPv6 node api = %q, want [fd00::1]:7480", got)
	}
	if c.Nodes[0].DataDir != "/var/lib/baton/lab/n1" {
		t.Errorf("data_dir = %q", c.Nodes[0].DataDir)
	}
	if c.DNS.Zone != "ha.example.com." || c.DNS.TTL.D() != time.Second {
		t.Errorf("dns = %+v, want zone with trailing dot, ttl 1s", c.DNS)
	}
	g := c.Groups[0]
	if g.Mode != "active-passive" || g.Standby != "hot" || g.Members[0].Priority != 100 || g.Hooks.Timeout.D() != 10*time.Second {
		t.Errorf("group defaults = %+v", g)
	}
	want := Check{Type: "http", URL: "http://[::1]/", Interval: Duration(time.Second), Timeout: Duration(time.Second), Fall: 3, Rise: 2, ExpectStatus: "200-399"}
	if !reflect.DeepEqual(g.Checks[0], want) {
		t.Errorf("http check = %+v, want %+v", g.Checks[0], want)
	}
	if tc := g.Checks[1]; tc.Timeout.D() != 300*time.Millisecond || tc.ExpectStatus != "" {
		t.Errorf("tcp check = %+v, want timeout = interval (shorter than 1s), no expect_status", tc)
	}
	if s := g.Service; s.StartTimeout.D() != 30*time.Second || s.StopTimeout.D() != 10*time.Second {
		t.Errorf("service timeouts = %v, %v", s.StartTimeout, s.StopTimeout)
	}
}

func TestExampleFile(t *testing.T) {
	path := testkit.ExampleConfig(t) // a 0600 copy: git checks the secret files out 0644
	c, err := Load(path)
	if err != nil {
		t.Fatalf("testdata/example.yaml must parse cleanly:\n%v", err)
	}
	if c.Path != path {
		t.Errorf("Path = %q", c.Path)
	}
	if string(c.Secret) != "example-only-secret-never-use-this-one" || c.APIToken != "example-only-api-token" {
		t.Errorf("secret %q, token %q: want the files next to example.yaml, trimmed", c.Secret, c.APIToken)
	}
	if len(c.Groups) != 4 {
		t.Errorf("%d groups, want 4", len(c.Groups))
	}
	if u := c.UnitsOf("edge"); len(u) != 2 || u[1].Name != "edge[1]" || u[1].VIPs[0].Address != "10.0.0.111/24" {
		t.Errorf("edge units %+v, want one per VIP", u)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("secret", "0123456789abcdef0123456789abcdef\n")
	write("short", "hello\n")
	write("twenty", "0123456789abcdef0123\n")
	write("token", "tok\n")
	write("empty", "\n")
	write("open", "0123456789abcdef0123456789abcdef\n")
	if err := os.Chmod(filepath.Join(dir, "open"), 0o644); err != nil {
		t.Fatal(err)
	}
	body := strings.TrimPrefix(head, "version: 1\ncluster: {name: prod, secret: 0123456789abcdef0123456789abcdef}\n")
	doc := func(cluster, api string) string {
		return "version: 1\ncluster: {name: prod, " + cluster + "}\n" + api + body
	}
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"relative secret and token files", doc("secret_file: secret", "api: {token_file: token}\n"), nil},
		{"short secret", doc("secret_file: short", ""),
			[]string{`cluster.secret_file: "` + filepath.Join(dir, "short") + `" holds a secret of 5 bytes; use at least 32: head -c 32 /dev/urandom | base64 > ` + filepath.Join(dir, "short")}},
		{"20-byte secret (the old fixtures' length)", doc("secret_file: twenty", ""),
			[]string{`cluster.secret_file: "` + filepath.Join(dir, "twenty") + `" holds a secret of 20 bytes; use at least 32: head -c 32 /dev/urandom | base64 > ` + filepath.Join(dir, "twenty")}},
		{"secret readable by others", doc("secret_file: open", ""),
			[]string{`cluster.secret_file: "` + filepath.Join(dir, "open") + `" is readable by group or others (mode 0644); chmod 600 ` + filepath.Join(dir, "open")}},
		{"missing secret file", doc("secret_file: nope", ""),
			[]string{`cluster.secret_file: cannot read "` + filepath.Join(dir, "nope") + `": no such file or directory`}},
		{"secret file is a directory", doc("secret_file: .", ""),
			[]string{`cluster.secret_file: "` + dir + `" is not a regular file`}},
		{"missing token file", doc("secret_file: secret", "api: {token_file: /nonexistent/token}\n"),
			[]string{`api.token_file: cannot read "/nonexistent/token": no such file or directory`}},
		{"empty token file", doc("secret_file: secret", "api: {token_file: empty}\n"),
			[]string{`api.token_file: "` + filepath.Join(dir, "empty") + `" is empty; put the token in it (e.g. head -c 32 /dev/urandom | base64 > FILE)`}},
		{"token and token file", doc("secret_file: secret", "api: {token_file: token, token: x}\n"),
			[]string{"api.token: set either token or token_file, not both"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc), dir)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("errors:\n  got:  %q\n  want: %q", got, tt.want)
			}
			if err == nil && (string(c.Secret) != "0123456789abcdef0123456789abcdef" || c.APIToken != "tok") {
				t.Errorf("Secret %q, APIToken %q", c.Secret, c.APIToken)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "baton.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want ErrNotExist", err)
	}
}

func TestProfiles(t *testing.T) {
	for _, name := range []string{"default", "fast", "wan"} {
		p, ok := Profile(name)
		if !ok {
			t.Fatalf("Profile(%q) missing", name)
		}
		// The profiles must pass the same rules as overrides, and Raft's own (lease ≤ heartbeat ≤ election).
		c := &Config{Version: 1, Cluster: Cluster{Name: "x", Secret: "0123456789abcdef0123456789abcdef", Profile: name, Port: 1}, Nodes: []Node{{Name: "n1", Address: "10.0.0.1", API: "10.0.0.1:7480"}}}
		c.ApplyDefaults()
		if errs := c.Validate(); errs != nil {
			t.Errorf("profile %s does not validate: %v", name, errs)
		}
		if p.FailureTimeout < 3*p.HeartbeatInterval || p.RaftLeaderLease > p.RaftHeartbeatTimeout || p.RaftElectionTimeout < p.RaftHeartbeatTimeout || p.RaftElectionTimeout >= p.FailureTimeout {
			t.Errorf("profile %s is inconsistent: %+v", name, p)
		}
		if p.QuietHeartbeatInterval < p.HeartbeatInterval || p.QuietHeartbeatInterval > p.FailureTimeout/4 {
			t.Errorf("profile %s: quiet heartbeat interval %v not within [heartbeat %v, failure timeout/4]", name, p.QuietHeartbeatInterval, p.HeartbeatInterval)
		}
		// Idle raft pace: slower than the normal one, and the longest gap between the leader's heartbeats (a
		// fifth of the timeout) at most half the leader lease it is checked against.
		if p.RaftIdleHeartbeatTimeout < p.RaftHeartbeatTimeout || p.RaftIdleHeartbeatTimeout/5 > p.RaftLeaderLease/2 {
			t.Errorf("profile %s: idle raft heartbeat timeout %v does not fit heartbeat timeout %v and leader lease %v",
				name, p.RaftIdleHeartbeatTimeout, p.RaftHeartbeatTimeout, p.RaftLeaderLease)
		}
	}
	if _, ok := Profile("turbo"); ok {
		t.Error(`Profile("turbo") exists`)
	}
	if d, _ := Profile("default"); d.HeartbeatInterval != 50*time.Millisecond || d.FailureTimeout != 400*time.Millisecond || d.StartupGrace != 2*time.Second {
		t.Errorf("default profile = %+v", d)
	}
}

func TestTimingOverrides(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(head, "secret:", "profile: wan, heartbeat_interval: 100ms, failure_timeout: 2s, lease_guard: 300ms, clock_drift: 0.02, raft_timeout: 600ms, startup_grace: 0s, secret:", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	want := core.Timing{
		HeartbeatInterval: 100 * time.Millisecond,
		// Twice the heartbeat interval.
		QuietHeartbeatInterval: 200 * time.Millisecond,
		FailureTimeout:         2 * time.Second,
		LeaseGuard:             300 * time.Millisecond,
		ClockDrift:             0.02,
		RaftHeartbeatTimeout:   600 * time.Millisecond,
		RaftElectionTimeout:    600 * time.Millisecond,
		RaftLeaderLease:        400 * time.Millisecond,
		// 2.5 × the lease.
		RaftIdleHeartbeatTimeout: time.Second,
		RaftCommitTimeout:        time.Second, // wan's, not overridable
		StartupGrace:             0,
	}
	if got := c.Timing(); got != want {
		t.Errorf("Timing() =\n  %+v, want\n  %+v", got, want)
	}

	c, err = Parse([]byte(strings.Replace(head, "secret:", "profile: fast, secret:", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if fast, _ := Profile("fast"); c.Timing() != fast {
		t.Errorf("Timing() without overrides = %+v, want the fast profile %+v", c.Timing(), fast)
	}
}

func TestLocalNode(t *testing.T) {
	c := &Config{Nodes: []Node{{Name: "n1"}, {Name: "n2"}}}
	t.Cleanup(func() { hostname = os.Hostname })
	for _, tt := range []struct{ host, want string }{{"n2", "n2"}, {"N1", "n1"}, {"n1.example.com", "n1"}} {
		hostname = func() (string, error) { return tt.host, nil }
		n, err := c.LocalNode("")
		if err != nil || n.Name != tt.want {
			t.Errorf("hostname %q: LocalNode(\"\") = %v, %v; want %s", tt.host, n, err, tt.want)
		}
	}
	hostname = func() (string, error) { return "db7", nil }
	if _, err := c.LocalNode(""); err == nil || err.Error() != `no node is named after this host "db7" (known: n1, n2); pass --node NAME` {
		t.Errorf("LocalNode on an unknown host: %v", err)
	}
	if n, err := c.LocalNode("n2"); err != nil || n != &c.Nodes[1] {
		t.Errorf(`LocalNode("n2") = %v, %v`, n, err)
	}
	if _, err := c.LocalNode("n9"); err == nil || err.Error() != `unknown node "n9" (known: n1, n2)` {
		t.Errorf(`LocalNode("n9") error = %v`, err)
	}

	// And the real hostname.
	hostname = os.Hostname
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	c.Nodes = append(c.Nodes, Node{Name: h})
	if n, err := c.LocalNode(""); err != nil || n.Name != h {
		t.Errorf("LocalNode(\"\") on host %q = %v, %v", h, n, err)
	}
}

func TestCheckHost(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "on-active")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		interfaceByName, hostAddrs = net.InterfaceByName, net.InterfaceAddrs
		interfaceAddrs = func(ifc *net.Interface) ([]net.Addr, error) { return ifc.Addrs() }
	})
	interfaceByName = func(name string) (*net.Interface, error) {
		if name == "eth0" {
			return &net.Interface{Name: name}, nil
		}
		return nil, errors.New("no such network interface")
	}
	ipnet := func(s string) *net.IPNet {
		ip, n, _ := net.ParseCIDR(s)
		n.IP = ip
		return n
	}
	interfaceAddrs = func(*net.Interface) ([]net.Addr, error) { return []net.Addr{ipnet("10.0.0.1/24")}, nil }
	hostAddrs = func() ([]net.Addr, error) { return []net.Addr{ipnet("127.0.0.1/8"), ipnet("10.0.0.1/24")}, nil }
	c := &Config{
		Nodes: []Node{{Name: "n1", Address: "10.0.0.1", DataDir: filepath.Join(dir, "a", "b")},
			{Name: "n2", Address: "10.0.0.2", DataDir: filepath.Join(file, "n2")}},
		Groups: []Group{
			{Name: "web", Members: []Member{{Node: "n1"}, {Node: "n2"}}, VIPs: []VIP{{Address: "10.0.0.100/24", Interface: "eth0"}},
				Hooks: Hooks{Active: []string{hook}, Standby: []string{"sh", "-c", "true"}}},
			{Name: "db", Members: []Member{{Node: "n2"}}, VIPs: []VIP{{Address: "10.0.1.101/24", Interface: "eth0"}, {Address: "10.0.0.102/24", Interface: "eth9"}},
				Hooks: Hooks{Active: []string{filepath.Join(dir, "missing")}, Standby: []string{file}, Fault: []string{"no-such-program-here"}}},
		},
	}
	if errs := CheckHost(c, "n1"); errs != nil {
		t.Errorf("CheckHost(n1) = %v, want no errors (eth0 exists, the VIP in its network, data_dir creatable, hooks there)", errs)
	}
	want := []string{
		"nodes[1].address: 10.0.0.2 is not an address of this host (it has 127.0.0.1, 10.0.0.1); is this node n2? pass the right --node",
		"groups[1].vips[0].address: 10.0.1.101/24 is outside eth0's networks (10.0.0.0/24); use an address in one of them, or the interface that has 10.0.1.0/24's network",
		`groups[1].vips[1].interface: no interface "eth9" on this host`,
		"groups[1].hooks.active[0]: " + filepath.Join(dir, "missing") + ": no such file or directory; write it (and chmod +x) before starting the agent, or remove the entry",
		"groups[1].hooks.standby[0]: " + file + " is not executable; chmod +x " + file,
		`groups[1].hooks.fault[0]: "no-such-program-here" is not on PATH (` + os.Getenv("PATH") + "); use the program's absolute path",
		"nodes[1].data_dir: cannot create " + filepath.Join(file, "n2") + ": " + file + " is not a directory",
	}
	if got := strings.Split(CheckHost(c, "n2").Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("CheckHost(n2) =\n  %q, want\n  %q", got, want)
	}
	if got := CheckHost(c, "n9").Error(); got != `unknown node "n9" (known: n1, n2)` {
		t.Errorf("CheckHost(n9) = %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 { // file and on-active
		t.Errorf("CheckHost left files behind in %s: %v", dir, entries)
	}
}

func TestDurationEncoding(t *testing.T) {
	var v struct {
		D Duration `yaml:"d" json:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 1m30s\n"), &v); err != nil || v.D.D() != 90*time.Second {
		t.Fatalf("yaml: %v, %v", v.D, err)
	}
	if out, _ := yaml.Marshal(v); string(out) != "d: 1m30s\n" {
		t.Errorf("yaml.Marshal = %q", out)
	}
	if out, _ := json.Marshal(v); string(out) != `{"d":"1m30s"}` {
		t.Errorf("json.Marshal = %s", out)
	}
	if err := json.Unmarshal([]byte(`{"d":"250ms"}`), &v); err != nil || v.D.D() != 250*time.Millisecond {
		t.Errorf("json.Unmarshal: %v, %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: 5\n"), &v); err == nil || !strings.Contains(err.Error(), `invalid duration "5" (want e.g. 100ms, 1s, 2m)`) {
		t.Errorf("yaml duration without unit: %v", err)
	}
}

func TestErrorsFormat(t *testing.T) {
	es := Errors{{Path: "nodes[0].address", Msg: "missing"}, {Msg: "line 3: bad"}}
	if got, want := es.Error(), "nodes[0].address: missing\nline 3: bad"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestSecretsStayOutOfJSON(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(head, "version: 1\n", "version: 1\napi: {token: tok-secret-xyz}\n", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(c)
	if strings.Contains(string(out), "0123456789abcdef0123456789abcdef") || strings.Contains(string(out), "tok-secret-xyz") || strings.Contains(string(out), "MDEy") {
		t.Errorf("JSON of a config leaks a secret: %s", out)
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "512": 512, "1kB": 1024, "16MB": 16 << 20, "2 GiB": 2 << 30, "1tb": 1 << 40} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MB", "-1MB", "1.5MB", "1 parsec", "99999999999TB"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) succeeded", s)
		}
	}
}

// TestAliasExpansionIsBounded: aliases let a small file stand for a huge config; decoding stops at maxNodes.
func TestAliasExpansionIsBounded(t *testing.T) {
	doc := head + "x-members: &m [" + strings.Repeat("{node: n1},", 1000) + "]\ngroups: [" + strings.Repeat("{name: g, members: *m},", 200) + "]\n"
	_, err := Parse([]byte(doc), "")
	if err == nil || !strings.Contains(err.Error(), "document too large (more than 100000 values, counting expanded aliases)") {
		t.Errorf("Parse of an alias bomb: %.300v", err)
	}
}

func TestAPIUI(t *testing.T) {
	for _, tt := range []struct {
		api  string
		want bool
		err  string
	}{
		{"", true, ""},
		{"api: {ui: true}\n", true, ""},
		{"api: {ui: false}\n", false, ""},
		{"api: {ui: maybe}\n", false, `api.ui: line 7: cannot unmarshal "maybe" into bool`},
	} {
		c, err := Parse([]byte(head+tt.api), "")
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%q: error %v, want %q", tt.api, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.api, err)
		}
		if got := c.API.UIEnabled(); got != tt.want {
			t.Errorf("%q: UIEnabled() = %v, want %v", tt.api, got, tt.want)
		}
	}
}

// TestVIPTCPReset: tcp_reset is on unless a VIP turns it off, and only a boolean is taken.
func TestVIPTCPReset(t *testing.T) {
	const group = `groups:
  - name: cache
    members: [{node: n1}, {node: n2}]
    vips: [{address: 10.0.0.100/24, interface: eth0}, {address: 10.0.0.101/24, interface: eth0, tcp_reset: false},
           {address: 10.0.0.102/24, interface: eth0, tcp_reset: true}]
`
	c, err := Parse([]byte(head+group), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, v := range c.Groups[0].VIPs {
		got = append(got, v.Resets())
	}
	if !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("Resets() = %v, want [true false true]", got)
	}
	_, err = Parse([]byte(head+strings.Replace(group, "tcp_reset: false", "tcp_reset: sometimes", 1)), "")
	if err == nil || !strings.Contains(err.Error(), `groups[0].vips[1].tcp_reset: line`) || !strings.Contains(err.Error(), `cannot unmarshal "sometimes" into bool`) {
		t.Errorf("tcp_reset: sometimes: %v", err)
	}
}

// TestHeartbeatSizeLimit: heartbeats are split across packets, so hundreds
// of groups pass (100 used to pass check-config and then serve no group: the
// members' heartbeats were never sent); a config whose worst-case heartbeat
// needs more packets than one heartbeat may use is refused with the field
// path, the limit and the fix.
func TestHeartbeatSizeLimit(t *testing.T) {
	groups := func(n int) string {
		var b strings.Builder
		b.WriteString("groups:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: service-number-%03d, members: [{node: n1}, {node: n2}]}\n", i)
		}
		return b.String()
	}
	for _, n := range []int{20, 200} {
		if _, err := Parse([]byte(head+groups(n)), ""); err != nil {
			t.Fatalf("%d groups refused: %v", n, err)
		}
	}
	_, err := Parse([]byte(head+groups(600)), "")
	if err == nil || !strings.Contains(err.Error(), "groups: node n1's heartbeat could need ") ||
		!strings.Contains(err.Error(), fmt.Sprintf("over the %d one heartbeat may be split into (600 units", cluster.MaxParts)) ||
		!strings.Contains(err.Error(), "use fewer groups or active-active VIPs, or shorter group and node names") {
		t.Fatalf("600 groups: %v, want a refusal that names the field, the size, the limit and the fix", err)
	}
}

// TestAPITLS: api.tls needs a certificate and a key; CheckHost loads them for
// the node ("{node}" in the path), refuses a key others can read, and a CA
// file that holds no certificate, each with its field path.
func TestAPITLS(t *testing.T) {
	body := strings.TrimPrefix(head, "version: 1\n")
	if _, err := Parse([]byte("version: 1\napi: {tls: {ca_file: ca.pem}}\n"+body), ""); err == nil ||
		!strings.Contains(err.Error(), `api.tls.cert_file: missing: the PEM certificate the API serves ("{node}" in the path stands for the node's name)`) ||
		!strings.Contains(err.Error(), "api.tls.key_file: missing: the PEM private key of cert_file") {
		t.Fatalf("api.tls without cert and key: %v", err)
	}
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name string, data []byte, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("n1.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	write("n1.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	write("open.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644)
	write("junk.pem", []byte("not a certificate\n"), 0o644)
	c, err := Parse([]byte("version: 1\napi: {tls: {cert_file: \"{node}.crt\", key_file: \"{node}.key\"}}\n"+body), dir)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.API.TLS.ServerConfig("n1")
	if err != nil || len(tc.Certificates) != 1 {
		t.Fatalf("ServerConfig(n1): %v", err)
	}
	if cc, err := c.API.TLS.ClientConfig("n1"); err != nil || cc.RootCAs == nil {
		t.Fatalf("ClientConfig(n1) pinning n1.crt: %v", err)
	}
	if _, err := c.API.TLS.ServerConfig("n2"); err == nil || !strings.Contains(err.Error(), `api.tls.cert_file: cannot read "`+filepath.Join(dir, "n2.crt")+`": no such file or directory`) {
		t.Errorf("ServerConfig(n2): %v", err)
	}
	c.API.TLS.KeyFile, c.API.TLS.CAFile = filepath.Join(dir, "open.key"), filepath.Join(dir, "junk.pem")
	_, err = c.API.TLS.ServerConfig("n1")
	if want := `api.tls.key_file: "` + filepath.Join(dir, "open.key") + `" is readable by group or others (mode 0644); chmod 600 ` + filepath.Join(dir, "open.key"); err == nil || err.Error() != want {
		t.Errorf("key readable by others: %v, want %q", err, want)
	}
	if _, err := c.API.TLS.ClientConfig("n1"); err == nil || err.Error() != `api.tls.ca_file: "`+filepath.Join(dir, "junk.pem")+`" holds no PEM certificate` {
		t.Errorf("junk CA file: %v", err)
	}
}
