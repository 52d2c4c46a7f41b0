package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
cluster: {name: prod, secret: "0123456789abcdef0123"}
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
