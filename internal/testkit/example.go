package testkit

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// ExampleConfig copies internal/config/testdata (example.yaml and the
// secret and token files it names) into a private temporary directory and
// returns the copy of example.yaml. The agent refuses secret files that
// group or others can read, and git checks files out 0644, so tests read the
// example from a 0600 copy.
func ExampleConfig(t testing.TB) string {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(here), "..", "config", "testdata")
	dst := t.TempDir()
	for _, name := range []string{"example.yaml", "secret", "api-token"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dst, "example.yaml")
}
