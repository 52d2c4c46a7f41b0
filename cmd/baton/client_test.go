package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIFindsItsAgentFromTheConfig: with --config the CLI asks the agent of
// --node (or of the node named like this host), says so when neither
// matches instead of guessing 127.0.0.1, and takes the token from the
// config's api section.
func TestCLIFindsItsAgentFromTheConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "baton.yaml")
	text := `version: 1
cluster: {name: c, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: cli-test-n1, address: 10.0.0.1}
  - {name: cli-test-n2, address: 10.0.0.2, api: "10.0.0.2:9999"}
  - {name: cli-test-w1, address: 10.0.0.3, witness: true}
api: {token: "s3cret"}
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BATON_API_TOKEN", "")
	f := &apiFlags{cfgPath: path}
	if _, err := f.base(); err == nil || !strings.Contains(err.Error(), "--node") || !strings.Contains(err.Error(), "--api") {
		t.Fatalf("no node matches this host: got %v, want an error naming --node and --api", err)
	}
	f.node = "cli-test-n2"
	if u, err := f.base(); err != nil || u != "http://10.0.0.2:9999" {
		t.Fatalf("--node cli-test-n2: %q, %v", u, err)
	}
	if tok, err := f.token(); err != nil || tok != "s3cret" {
		t.Fatalf("token from the config: %q, %v", tok, err)
	}
	t.Setenv("BATON_API_TOKEN", "from-env")
	if tok, _ := f.token(); tok != "from-env" {
		t.Fatalf("BATON_API_TOKEN does not win over the config: %q", tok)
	}
	f = &apiFlags{cfgPath: filepath.Join(dir, "missing.yaml")}
	if u, err := f.base(); err != nil || u != "http://127.0.0.1:7480" {
		t.Fatalf("no config file: %q, %v, want the local default", u, err)
	}
}

// TestCLIReadsSendTheToken: reads carry the API token when the CLI has one
// (the agent then shows the check details it hides from others), and none
// when it has none.
func TestCLIReadsSendTheToken(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte("[]"))
	}))
	defer srv.Close()
	t.Setenv("BATON_API_TOKEN", "read-tok")
	f := &apiFlags{url: srv.URL, cfgPath: filepath.Join(t.TempDir(), "none.yaml")}
	var v []any
	if err := f.get("/v1/events", &v); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BATON_API_TOKEN", "")
	if err := f.get("/v1/events", &v); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "Bearer read-tok" || got[1] != "" {
		t.Fatalf("Authorization headers sent: %q, want [\"Bearer read-tok\" \"\"]", got)
	}
}
