package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/testkit"
)

// run runs the command line as main does and returns what it printed and
// its exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(newRoot(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestCheckConfigReportsEveryProblemWithItsPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baton.yaml")
	os.WriteFile(path, []byte(`version: 1
cluster: {name: prod, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.11}
  - {name: n2, address: 10.0.0.300}
groups:
  - name: web
    members: [{node: n1}, {node: n9}]
    vips: [{address: 10.0.0.300/24, interface: eth0}]
    intervall: 1s
`), 0o600)
	_, stderr, code := run(t, "check-config", "--config", path)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		`nodes[1].address: "10.0.0.300" is not an IP address`,
		`groups[0].members[1].node: unknown node "n9"`,
		`groups[0].vips[0].address: "10.0.0.300/24" is not an IP prefix`,
		`groups[0].intervall: unknown field (line 10)`,
		`only 2 voting nodes`,
		`add a witness node`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCheckConfigValid(t *testing.T) {
	stdout, stderr, code := run(t, "check-config", "--config", testkit.ExampleConfig(t))
	if code != 0 || !strings.Contains(stdout, ": ok") {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

func TestCheckConfigUnknownNode(t *testing.T) {
	_, stderr, code := run(t, "check-config", "--config", testkit.ExampleConfig(t), "--node", "zz")
	if code != 2 || !strings.Contains(stderr, "--node") {
		t.Fatalf("code %d stderr %s", code, stderr)
	}
}

func TestStatusWithoutAgentSaysWhatToDo(t *testing.T) {
	_, _, code := run(t, "status", "--api", "127.0.0.1:1")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
}

// TestCheckConfigRefusesADriverTheAgentCannotStart: with --node, check-config
// builds the member's driver as the agent would, so missing binaries or
// password files are refused before a start that would fail.
func TestCheckConfigRefusesADriverTheAgentCannotStart(t *testing.T) {
	dir := t.TempDir()
	cfg := func(binDir string) string {
		path := filepath.Join(dir, "baton.yaml")
		os.WriteFile(path, []byte(`version: 1
cluster: {name: prod, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 127.0.0.1, data_dir: `+dir+`/data}
  - {name: n2, address: 127.0.0.2}
  - {name: w1, address: 127.0.0.3, witness: true}
groups:
  - name: db
    members: [{node: n1}, {node: n2}]
    driver:
      type: postgres
      bin_dir: `+binDir+`
      data_dir: `+dir+`/pg/{node}
      superuser:   {user: postgres,   password_file: `+dir+`/pg.pass}
      replication: {user: replicator, password_file: `+dir+`/repl.pass}
`), 0o600)
		return path
	}
	for _, f := range []string{"pg.pass", "repl.pass"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, code := run(t, "check-config", "--config", cfg(dir+"/no-such-bin"), "--node", "n1")
	if want := "groups[0].driver.bin_dir: " + dir + "/no-such-bin does not exist"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("missing bin_dir: exit %d, stderr lacks %q:\n%s", code, want, stderr)
	}
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(bins) == 0 {
		t.Skip("PostgreSQL is not installed: the password-file case needs a real bin_dir (scripts/test installs it as root)")
	}
	os.Remove(filepath.Join(dir, "pg.pass"))
	_, stderr, code = run(t, "check-config", "--config", cfg(bins[0]), "--node", "n1")
	if want := `groups[0].driver.superuser.password_file: cannot read "` + dir + `/pg.pass": no such file or directory; create it`; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("missing password file: exit %d, stderr lacks %q:\n%s", code, want, stderr)
	}
	// A password file others can read is refused like the secret file.
	for _, f := range []string{"pg.pass", "repl.pass"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "pg.pass"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = run(t, "check-config", "--config", cfg(bins[0]), "--node", "n1")
	if want := `groups[0].driver.superuser.password_file: "` + dir + `/pg.pass" is readable by group or others (mode 0644); chmod 600 ` + dir + "/pg.pass"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("password file readable by others: exit %d, stderr lacks %q:\n%s", code, want, stderr)
	}
}

// TestStatusShowsAPeerOfAnotherProtocol: a peer whose heartbeats this node
// refuses for their protocol version is named in status with the fix.
func TestStatusShowsAPeerOfAnotherProtocol(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, core.Status{Cluster: "prod", Node: "n1", Nodes: []core.NodeStatus{
		{Name: "n1", Self: true, Alive: true},
		{Name: "n2", Alive: false, LastSeenMs: -1, ProtocolMismatch: 3},
	}})
	want := fmt.Sprintf("speaks heartbeat protocol 3, this node %d: refused; run one baton release on every node", cluster.ProtocolVersion)
	if !strings.Contains(out.String(), want) {
		t.Fatalf("status does not say why n2's heartbeats are refused (want %q):\n%s", want, out.String())
	}
}
