// Package proctest runs real `baton agent` processes on loopback addresses
// (127.0.x.y) for multi-process tests and benchmarks. The cluster itself is
// internal/demo's (what `baton demo` runs); proctest adds what only tests and
// benchmarks need: building the binary (from the working tree or a commit),
// a TestMain body, running a command with a deadline, and HAProxy.
package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/demo"
)

// Token is the API token of every proctest cluster.
const Token = demo.Token

// Spec describes a loopback cluster (see demo.Spec); the cluster is named
// "proctest" unless it says otherwise.
type Spec = demo.Spec

// HookEvent is one line of the hook log.
type HookEvent = demo.HookEvent

// Cluster is a running (or startable) set of agent processes: a
// demo.Cluster, plus the test-only StartHAProxy.
type Cluster struct{ *demo.Cluster }

// New writes the config for spec under dir. Loopback addresses and the port
// are chosen at random so that parallel runs do not collide.
func New(bin, dir string, spec Spec) (*Cluster, error) {
	if spec.Cluster == "" {
		spec.Cluster = "proctest"
	}
	if spec.Secret == "" {
		spec.Secret = "proctest-secret-0123456789abcdefghij"
	}
	c, err := demo.NewCluster(bin, dir, spec)
	if err != nil {
		return nil, err
	}
	return &Cluster{c}, nil
}

// Whoami serves "I am NODE" over HTTP on addr; call the returned func to stop.
func Whoami(addr, node string) (stop func(), err error) { return demo.Whoami(addr, node) }

// Build compiles cmd/baton into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "baton")
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/baton")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot is the nearest directory at or above the working directory with a
// go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Start writes spec's cluster under t's temporary directory and starts every
// node. When the test ends the agents are killed, and if it failed the tail
// of each agent's log is printed.
func Start(t testing.TB, bin string, spec Spec) *Cluster {
	t.Helper()
	c, err := New(bin, t.TempDir(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for n := range c.Addrs {
				b, _ := os.ReadFile(filepath.Join(c.Dir, n+".log"))
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("=== %s.log (tail) ===\n%s", n, b)
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	return c
}

// RunWithBinary is a TestMain body for packages that run the real binary:
// it builds cmd/baton into a temporary directory, stores its path in *bin,
// runs the tests and removes the directory. It returns the exit code.
func RunWithBinary(m interface{ Run() int }, bin *string) int {
	dir, err := os.MkdirTemp("", "baton-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// BuildRev builds cmd/baton into dir from commit rev (via git archive, so
// uncommitted edits in the working tree do not end up in a benchmark's
// numbers), or from the working tree if rev is "". It returns the binary
// and what it was built from (the commit hash, or "working tree").
func BuildRev(dir, rev string) (bin, from string, err error) {
	if rev == "" {
		bin, err = Build(dir)
		return bin, "working tree", err
	}
	// From the module root: git archive in a subdirectory (a test package's)
	// archives only that subdirectory.
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	revParse := exec.Command("git", "rev-parse", "--verify", rev+"^{commit}")
	revParse.Dir = root
	hash, err := revParse.Output()
	if err != nil {
		return "", "", fmt.Errorf("-rev %q: git rev-parse: %w", rev, err)
	}
	from = strings.TrimSpace(string(hash))
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", "", err
	}
	tar := filepath.Join(dir, "src.tar")
	for _, c := range []*exec.Cmd{
		exec.Command("git", "archive", "-o", tar, from),
		exec.Command("tar", "-xf", tar, "-C", src),
		exec.Command("go", "build", "-o", filepath.Join(dir, "baton"), "./cmd/baton"),
	} {
		c.Dir = root
		if c.Args[0] == "go" {
			c.Dir = src
		}
		if out, err := c.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("%s: %w\n%s", strings.Join(c.Args, " "), err, out)
		}
	}
	return filepath.Join(dir, "baton"), from, nil
}

// RunWithin runs cmd to completion and returns its combined output, killing
// it if it is still running after d (timedOut then reports that).
func RunWithin(cmd *exec.Cmd, d time.Duration) (out []byte, err error, timedOut bool) {
	done := make(chan struct{})
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
		return out, err, false
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return out, err, true
	}
}
