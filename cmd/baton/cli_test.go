package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/testkit"
)

// fakeAgent answers like an agent's API would in the situations the exit
// codes tell apart.
func fakeAgent(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		fail(w, 503, "no quorum leader known")
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"seq":1,"group":"web","epoch":1,"to":"n1","reason":"initial","time_unix_ms":1}]`))
	})
	mux.HandleFunc("POST /v1/groups/{g}/switchover", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") == "":
			fail(w, 401, "missing API token")
		case r.Header.Get("Authorization") != "Bearer good":
			fail(w, 403, "wrong API token")
		case r.PathValue("g") != "web":
			fail(w, 404, "unknown group")
		default:
			fail(w, 409, "switchover refused: n2 is unhealthy")
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestExitCodes(t *testing.T) {
	api := fakeAgent(t)
	t.Setenv("BATON_API_TOKEN", "")
	dir := t.TempDir()
	good := filepath.Join(dir, "good-token")
	bad := filepath.Join(dir, "bad-token")
	os.WriteFile(good, []byte("good\n"), 0o600)
	os.WriteFile(bad, []byte("bad\n"), 0o600)
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("version: 1\nnodes: []\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"version", []string{"version"}, exitOK, ""},
		{"history", []string{"history", "--api", api}, exitOK, ""},
		{"unknown command", []string{"statuss"}, exitUsage, `unknown command "statuss"`},
		{"unknown flag", []string{"status", "--jsn"}, exitUsage, "unknown flag: --jsn"},
		{"missing argument", []string{"switchover"}, exitUsage, "accepts 1 arg(s), received 0"},
		{"bad argument", []string{"maintenance", "maybe", "--api", api}, exitUsage, `maintenance "maybe": want on or off`},
		{"failover without confirmation", []string{"failover", "db", "--to", "n2", "--api", api}, exitUsage, "--allow-data-loss"},
		{"bad log level", []string{"agent", "--log-level", "loud"}, exitUsage, "--log-level"},
		{"invalid config", []string{"check-config", "--config", badCfg}, exitUsage, "problem(s)"},
		{"agent refuses its config", []string{"agent", "--config", badCfg}, exitUsage, badCfg},
		{"agent unreachable", []string{"status", "--api", "127.0.0.1:1"}, exitFailed, "cannot reach the agent"},
		{"no quorum leader", []string{"status", "--api", api}, exitFailed, "no quorum leader known"},
		{"no token", []string{"switchover", "web", "--api", api}, exitRefused, "missing API token (set --token-file"},
		{"wrong token", []string{"switchover", "web", "--api", api, "--token-file", bad}, exitRefused, "wrong API token"},
		{"unknown group", []string{"switchover", "zz", "--api", api, "--token-file", good}, exitRefused, "unknown group"},
		{"refused switchover", []string{"switchover", "web", "--api", api, "--token-file", good}, exitRefused, "n2 is unhealthy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("baton %s: exit %d, want %d; stderr:\n%s", strings.Join(tc.args, " "), code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("baton %s: stderr lacks %q:\n%s", strings.Join(tc.args, " "), tc.want, stderr)
			}
		})
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	stdout, _, code := run(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"Exit codes", "2  usage", "3  refused", "baton completion bash|zsh|fish", "baton docs man DIR", "--json"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("baton --help lacks %q:\n%s", want, stdout)
		}
	}
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "# bash completion V2 for baton",
		"zsh":  "#compdef baton",
		"fish": "# fish completion for baton",
	} {
		stdout, stderr, code := run(t, "completion", shell)
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("completion %s: exit %d, output lacks %q (stderr %s)", shell, code, want, stderr)
		}
	}
	// The completion script asks the binary; it must offer the commands.
	stdout, _, _ := run(t, "__complete", "sta")
	if !strings.Contains(stdout, "status") {
		t.Errorf("completing 'sta' did not offer status:\n%s", stdout)
	}
}

func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if _, stderr, code := run(t, "docs", "man", dir); code != 0 {
		t.Fatalf("docs man: exit %d\n%s", code, stderr)
	}
	for page, want := range map[string]string{
		"baton.1":        `.TH "BATON" "1" "Nov 2023"`,
		"baton-status.1": `.TH "BATON-STATUS" "1"`,
		"baton-agent.1":  "Type=notify",
	} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("no man page %s: %v", page, err)
			continue
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%.600s", page, want, b)
		}
	}
	root, _ := os.ReadFile(filepath.Join(dir, "baton.1"))
	if !strings.Contains(string(root), "Exit codes") {
		t.Error("baton.1 does not document the exit codes")
	}
	// Hidden plumbing (the VIP fence the agent starts) gets no page.
	if _, err := os.Stat(filepath.Join(dir, "baton-fence.1")); err == nil {
		t.Error("a man page for the hidden fence command")
	}
}

// TestJSONOnReadCommands: every read command prints stable JSON with --json.
func TestJSONOnReadCommands(t *testing.T) {
	api := fakeAgent(t)
	stdout, _, code := run(t, "version", "--json")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil {
		t.Fatalf("version --json: exit %d, %q", code, stdout)
	}
	for _, k := range []string{"version", "commit", "built", "go"} {
		if _, ok := v[k]; !ok {
			t.Errorf("version --json lacks %q: %s", k, stdout)
		}
	}

	stdout, _, code = run(t, "history", "--json", "--api", api)
	var ev []map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &ev) != nil || len(ev) != 1 || ev[0]["reason"] != "initial" {
		t.Errorf("history --json: exit %d, %q", code, stdout)
	}

	stdout, _, code = run(t, "check-config", "--json", "--config", testkit.ExampleConfig(t))
	var okRep checkReport
	if code != 0 || json.Unmarshal([]byte(stdout), &okRep) != nil || !okRep.OK || len(okRep.Problems) != 0 || okRep.Cluster == "" || okRep.HeartbeatMs == 0 {
		t.Errorf("check-config --json on the example: exit %d, %s", code, stdout)
	}

	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("version: 1\ncluster: {name: prod, secret: \"cli-test-secret-0123456789abcdef0123\"}\nnodes:\n  - {name: n1, address: 10.0.0.300}\n"), 0o600)
	stdout, stderr, code := run(t, "check-config", "--json", "--config", path)
	var rep checkReport
	if code != exitUsage || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("check-config --json on a bad file: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if rep.OK || len(rep.Problems) == 0 {
		t.Fatalf("check-config --json: %+v", rep)
	}
	found := false
	for _, p := range rep.Problems {
		if p.Path == "nodes[0].address" && strings.Contains(p.Message, `"10.0.0.300" is not an IP address`) {
			found = true
		}
	}
	if !found {
		t.Errorf("problems lack nodes[0].address: %+v", rep.Problems)
	}
	if strings.Contains(stderr, "nodes[0].address") {
		t.Errorf("with --json the problems go to stdout only; stderr:\n%s", stderr)
	}
}
