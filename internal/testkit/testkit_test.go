package testkit

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/config"
)

// fakeT records a failure instead of failing the test, so WaitFor's failure can be checked.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, 5*time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("WaitFor returned after %d polls, want 3 (the first that held)", n)
	}

	f := &fakeT{TB: t}
	WaitForState(f, 30*time.Millisecond, "n2 to catch up", func() (bool, string) { return false, "n2 at 1/30" })
	if !strings.HasPrefix(f.failed, "timed out after ") || !strings.HasSuffix(f.failed, " waiting for n2 to catch up (n2 at 1/30)") {
		t.Errorf("failure message %q: want what, how long and what it last saw", f.failed)
	}
	f = &fakeT{TB: t}
	WaitFor(f, 10*time.Millisecond, "ready", func() bool { return false })
	if !strings.HasPrefix(f.failed, "timed out after ") || !strings.HasSuffix(f.failed, " waiting for ready") {
		t.Errorf("failure message %q", f.failed)
	}
}

// The fixture is a valid cluster as it stands and with every field set.
func TestThreeNodesParses(t *testing.T) {
	for _, tt := range []struct {
		c      ThreeNodes
		groups int
	}{
		{ThreeNodes{}, 1},
		{ThreeNodes{Name: "sim", Profile: "fast", Port: 7000, Net: "127.1.9", DataDir: "/var/lib/baton",
			Top: "dns: {listen: \"127.0.0.1:5300\"}", Group: "db",
			GroupExtra: "driver: {type: exec, commands: {state: [/bin/true]}}",
			Groups:     "- name: api\n  members: [{node: n2}]\n  dns: {name: api}"}, 2},
	} {
		cfg, err := config.Parse([]byte(tt.c.YAML()), t.TempDir())
		if err != nil {
			t.Fatalf("%v\n%s", err, tt.c.YAML())
		}
		var nodes []string
		for _, n := range cfg.Nodes {
			nodes = append(nodes, n.Name)
		}
		if !slices.Equal(nodes, Members) || !cfg.Nodes[2].Witness || len(cfg.Groups) != tt.groups {
			t.Errorf("nodes %v, groups %d, want %v and %d\n%s", nodes, len(cfg.Groups), Members, tt.groups, tt.c.YAML())
		}
	}
}

// Test helpers stay out of the product binary.
func TestProductDoesNotLinkTestkit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/baton-ha/baton/cmd/baton").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/baton: %v\n%s", err, out)
	}
	if slices.Contains(strings.Fields(string(out)), "github.com/baton-ha/baton/internal/testkit") {
		t.Fatal("cmd/baton links internal/testkit; it is for tests only: import it from _test.go files")
	}
}
