package config

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics or hangs, and that a config it accepts survives a round trip:
// parse → encode → parse → encode gives the same text.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(example), design, head, "", "version: 1\n", "groups: &g [*g]\n", "a: &a {<<: *a}\n"} {
		f.Add([]byte(seed))
	}
	base, err := filepath.Abs("testdata") // where example.yaml's secret and token files are
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, base)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			if len(err.Error()) == 0 {
				t.Fatal("empty error message")
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a parsed config: %v", err)
		}
		c2, err := Parse(out, base)
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", out, err)
		}
		out2, err := yaml.Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", out, out2)
		}
	})
}
