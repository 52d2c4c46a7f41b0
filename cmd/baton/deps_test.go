package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestHarnessInTheBinary: what operators install must not carry the
// test harnesses. internal/proctest (building binaries, HAProxy) and
// internal/lab (fault injection) are for tests and benchmarks; `baton demo`
// uses internal/demo and internal/nsnet instead.
func TestNoTestHarnessInTheBinary(t *testing.T) {
	// go test puts its own GOROOT/bin first in the test's PATH: this is the
	// go that is building the test.
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/baton: %v\n%s", err, out)
	}
	const mod = "github.com/baton-ha/baton/"
	harnesses := map[string]bool{mod + "internal/proctest": true, mod + "internal/lab": true}
	var found []string
	for pkg := range strings.FieldsSeq(string(out)) {
		// The package builder (packaging/, nfpm) is a build tool too.
		if harnesses[pkg] || strings.HasPrefix(pkg, "github.com/goreleaser/") || strings.HasPrefix(pkg, mod+"packaging") {
			found = append(found, pkg)
		}
	}
	if len(found) > 0 {
		t.Errorf("cmd/baton links test harnesses %v; move what the product needs into a product package "+
			"(internal/demo, internal/nsnet, internal/probe) and import that instead", found)
	}
}
