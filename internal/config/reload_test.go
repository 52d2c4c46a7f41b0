package config

import (
	"strings"
	"testing"
)

// reloadBase is the running config of the reload tests: three nodes, a group
// web with a check, a VIP, a proxy and hooks, and a data-aware group db.
const reloadBase = `version: 1
cluster: {name: prod, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.1, data_dir: /var/lib/baton/n1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
dns: {listen: ":5353", zone: baton.}
groups:
  - name: web
    members: [{node: n1, priority: 150}, {node: n2}]
    checks: [{type: tcp, address: "127.0.0.1:8080", interval: 100ms, timeout: 100ms}]
    vips: [{address: 10.0.0.100/24, interface: eth0}]
    proxy: {listen: ":9080", port: 8080}
    hooks: {active: [/bin/true]}
    dns: {name: web}
  - name: db
    members: [{node: n1}, {node: n2}]
    driver: {type: exec, commands: {state: [/bin/true], promote: [/bin/true]}}
`

func reloadConfigs(t *testing.T, edit func(string) string) (*Config, *Config) {
	t.Helper()
	cur, err := Parse([]byte(reloadBase), "")
	if err != nil {
		t.Fatalf("base: %v", err)
	}
	next, err := Parse([]byte(edit(reloadBase)), "")
	if err != nil {
		t.Fatalf("edited: %v", err)
	}
	return cur, next
}

// TestCheckReloadRefuses: every change that cannot be made live is refused
// with its path and reason.
func TestCheckReloadRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, old, new string
		want           string
	}{
		{"cluster name", "name: prod", "name: test",
			`cluster.name: "prod" → "test": cannot change live: every node must run with the same value at once; stop every agent, change it, start them again (it keys all cluster traffic, so the change makes a new cluster)`},
		{"secret", `secret: "0123456789abcdef0123456789abcdef"`, `secret: "0123456789abcdef0123456789abcdeX"`,
			"cluster.secret: the cluster secret changed: cannot change live: every node must run with the same value at once; stop every agent, change it, start them again (nodes with different secrets cannot authenticate each other's heartbeats or quorum traffic)"},
		{"port", `name: prod,`, `name: prod, port: 7947,`,
			"cluster.port: 7946 → 7947: cannot change live: every node must run with the same value at once; stop every agent, change it, start them again (the agents listen on it)"},
		{"profile", `name: prod,`, `name: prod, profile: fast,`,
			"cluster.profile: the effective timing changed (profile default → fast, or a timing override): cannot change live: every node must run with the same value at once; stop every agent, change it, start them again (owners and voters count leases and holds with the same timing)"},
		{"timing override", `name: prod,`, `name: prod, heartbeat_interval: 70ms,`,
			"cluster.profile: the effective timing changed (profile default → default, or a timing override)"},
		{"ui", "dns: {", "api: {ui: false}\ndns: {",
			"api.ui: true → false: cannot change live (the dashboard is mounted when the agent starts); restart the agents one at a time"},
		{"node address", "address: 10.0.0.2}", "address: 10.0.0.9}",
			"nodes[1].address: 10.0.0.2 → 10.0.0.9: cannot change live for an existing node (n2): the quorum and the heartbeats know nodes by address; remove the node and add it again under its new address"},
		{"node api", "address: 10.0.0.2}", "address: 10.0.0.2, api: 10.0.0.2:7481}",
			"nodes[1].api: 10.0.0.2:7480 → 10.0.0.2:7481: cannot change live for an existing node (n2): the agent listens on it and the others forward requests to it; restart that node's agent with the new file"},
		{"data dir", "data_dir: /var/lib/baton/n1", "data_dir: /srv/baton/n1",
			"nodes[0].data_dir: /var/lib/baton/n1 → /srv/baton/n1: cannot change live for an existing node (n1): the agent holds its quorum store open there; stop the agent, move the directory, start it again"},
		{"witness", "address: 10.0.0.3, witness: true}", "address: 10.0.0.3}",
			"nodes[2].witness: true → false: cannot change live for an existing node (w1): restart that node's agent with the new file"},
		{"nodes added", "dns: {", "dns: {",
			""}, // placeholder replaced below
		{"mode", "  - name: web\n", "  - name: web\n    mode: active-active\n",
			`groups[0].mode: active-passive → active-active: cannot change live for an existing group; remove group "web" and add it under a new name, or restart the agents one at a time`},
		{"standby", "  - name: web\n", "  - name: web\n    standby: cold\n",
			`groups[0].standby: hot → cold: cannot change live for an existing group; remove group "web" and add it under a new name, or restart the agents one at a time`},
		{"service", "  - name: web\n", "  - name: web\n    service: {run: [/bin/sleep, \"1000\"]}\n",
			`groups[0].service: changed: cannot change live for an existing group; remove group "web" and add it under a new name, or restart the agents one at a time (the supervised service would have to be restarted)`},
		{"driver", "promote: [/bin/true]}}", "promote: [/bin/false]}}",
			`groups[1].driver: changed: cannot change live for an existing group; remove group "db" and add it under a new name, or restart the agents one at a time (the data-aware driver keeps state about its database)`},
		{"data members", "  - name: db\n    members: [{node: n1}, {node: n2}]", "  - name: db\n    members: [{node: n1}]",
			`groups[1].members: the members of data-aware group "db" changed: a database cannot join or leave replication live; restart the agents one at a time`},
		{"data group added", "  - name: db\n", "  - name: db2\n    members: [{node: n1}, {node: n2}]\n    driver: {type: exec, commands: {state: [/bin/true], promote: [/bin/true]}}\n  - name: db\n",
			`groups[1].driver: group "db2" is new and data-aware: a driver cannot be started live; restart the agents one at a time to add it`},
		{"data group removed", "  - name: db\n    members: [{node: n1}, {node: n2}]\n    driver: {type: exec, commands: {state: [/bin/true], promote: [/bin/true]}}\n", "",
			`groups: group "db" (data-aware, groups[1] of the running config) was removed: a driver cannot be stopped live; restart the agents one at a time to remove it`},
	} {
		if tt.name == "nodes added" {
			tt.old = "  - {name: w1, address: 10.0.0.3, witness: true}\n"
			tt.new = tt.old + "  - {name: n3, address: 10.0.0.4}\n  - {name: n4, address: 10.0.0.5}\n"
			tt.want = "nodes: nodes added: n3, n4: add or remove one node per reload (the quorum changes its members one at a time, so that the old and the new majorities always overlap); reload every node after each, and wait until `baton status` shows no node whose config DIFFERS"
		}
		t.Run(tt.name, func(t *testing.T) {
			cur, next := reloadConfigs(t, func(s string) string {
				if !strings.Contains(s, tt.old) {
					t.Fatalf("base lacks %q", tt.old)
				}
				return strings.Replace(s, tt.old, tt.new, 1)
			})
			// The first problem is the change itself; a derived default
			// (a data_dir under the cluster name, an api on the address)
			// may add its own.
			errs := CheckReload(cur, next, "n1")
			if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Fatalf("got %d problem(s):\n%v\nwant the first starting:\n%s", len(errs), errs, tt.want)
			}
		})
	}
	// A node replaced by another in one reload is two changes; removing the
	// node the agent runs as says so; a removal that leaves 2 voters is refused.
	cur, _ := reloadConfigs(t, func(s string) string { return s })
	next, err := Parse([]byte(strings.NewReplacer("  - {name: n2, address: 10.0.0.2}\n", "  - {name: w2, address: 10.0.0.5}\n",
		"{node: n1, priority: 150}, {node: n2}", "{node: n1, priority: 150}",
		"members: [{node: n1}, {node: n2}]", "members: [{node: n1}, {node: w2}]").Replace(reloadBase)), "")
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckReload(cur, next, "n1"); !strings.Contains(errs.Error(), "nodes: nodes added: w2; nodes removed: n2: add or remove one node per reload") {
		t.Errorf("a replacement in one reload: %s", errs.Error())
	}
	if errs := CheckReload(cur, next, "n2"); !strings.Contains(errs.Error(), `nodes: node "n2" (nodes[1] of the running config) was removed: this is the node the agent runs as; stop its agent, then reload the others`) {
		t.Errorf("n2's own removal: %s", errs.Error())
	}
	// Down to two voters the file itself is refused (check-config's message).
	if _, err := Parse([]byte(strings.NewReplacer("  - {name: w1, address: 10.0.0.3, witness: true}\n", "").Replace(reloadBase)), ""); err == nil || !strings.Contains(err.Error(), "only 2 voting nodes") {
		t.Fatalf("a two-voter cluster: %v", err)
	}
	four := strings.Replace(reloadBase, "  - {name: w1, address: 10.0.0.3, witness: true}\n", "  - {name: w1, address: 10.0.0.3, witness: true}\n  - {name: w2, address: 10.0.0.4, witness: true}\n", 1)
	cur4, err := Parse([]byte(four), "")
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckReload(cur4, cur, "n1"); len(errs) > 0 {
		t.Errorf("removing one of four voters: %v", errs)
	}
}

// TestCheckReloadAllows: what may change live passes, and the hash follows
// what the file means, not how it is written.
func TestCheckReloadAllows(t *testing.T) {
	for _, tt := range []struct{ name, old, new string }{
		{"priority", "priority: 150", "priority: 90"},
		{"failback", "  - name: web\n", "  - name: web\n    failback: true\n"},
		{"check", "127.0.0.1:8080", "127.0.0.1:8081"},
		{"vip", "10.0.0.100/24", "10.0.0.101/24"},
		{"proxy", `":9080"`, `":9081"`},
		{"hooks", "active: [/bin/true]", "active: [/bin/false]"},
		{"dns", `":5353"`, `":5354"`},
		{"group dns", "dns: {name: web}", "dns: {name: www}"},
		{"new group", "  - name: db\n", "  - name: api\n    members: [{node: n2}]\n  - name: db\n"},
		{"group removed", "    dns: {name: web}\n", "    dns: {name: web}\n  - name: api\n    members: [{node: n2}]\n"},
		{"node dns", "address: 10.0.0.2}", "address: 10.0.0.2, dns: \"10.0.0.2:53\"}"},
		{"node added", "  - {name: w1, address: 10.0.0.3, witness: true}\n", "  - {name: w1, address: 10.0.0.3, witness: true}\n  - {name: n3, address: 10.0.0.4}\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur, next := reloadConfigs(t, func(s string) string { return strings.Replace(s, tt.old, tt.new, 1) })
			if errs := CheckReload(cur, next, "n1"); len(errs) > 0 {
				t.Fatalf("refused: %v", errs)
			}
			if cur.Hash() == next.Hash() {
				t.Error("the hash did not change")
			}
		})
	}
	cur, next := reloadConfigs(t, func(s string) string {
		return "# a comment\n" + strings.Replace(s, "members: [{node: n1}, {node: n2}]", "members: [{node: n1, priority: 100}, {node: n2}]", 1)
	})
	if cur.Hash() != next.Hash() {
		t.Error("a comment and a spelt-out default changed the hash")
	}
}
