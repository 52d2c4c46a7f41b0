package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/config"
)

var initArgs = []string{"init", "--cluster", "prod", "--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12",
	"--witness", "w1=10.0.0.13", "--vip", "10.0.0.100/24@eth0", "--check", "http://127.0.0.1:8080/healthz"}

// TestInitWritesAConfigThatChecks: what init writes loads and validates (what
// check-config does without --node); the host-local checks need the real
// nodes, so they are the only problems check-config --node reports here.
func TestInitWritesAConfigThatChecks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc-baton")
	stdout, stderr, code := run(t, append(initArgs, "--dir", dir)...)
	if code != 0 {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	cfg, err := config.Load(filepath.Join(dir, "baton.yaml"))
	if err != nil {
		t.Fatalf("config.Load on what init wrote: %v", err)
	}
	if cfg.Cluster.Name != "prod" || len(cfg.Nodes) != 3 || !cfg.Nodes[2].Witness || len(cfg.Groups) != 1 {
		t.Fatalf("unexpected config: %+v", cfg)
	}
	g := cfg.Groups[0]
	if g.Name != "web" || len(g.Members) != 2 || g.Members[0].Node != "n1" || g.Members[0].Priority <= g.Members[1].Priority {
		t.Errorf("group %+v: want web with n1 preferred over n2", g)
	}
	if len(g.VIPs) != 1 || g.VIPs[0].Address != "10.0.0.100/24" || g.VIPs[0].Interface != "eth0" {
		t.Errorf("vips %+v", g.VIPs)
	}
	if len(g.Checks) != 1 || g.Checks[0].Type != "http" || g.Checks[0].URL != "http://127.0.0.1:8080/healthz" {
		t.Errorf("checks %+v", g.Checks)
	}
	if n, _ := cfg.NodeByName("n1"); n.DataDir != "/var/lib/baton/prod/n1" || n.API != "10.0.0.11:7480" {
		t.Errorf("n1 defaults: %+v", n)
	}

	for _, f := range []string{"secret", "api-token"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
		b, _ := os.ReadFile(filepath.Join(dir, f))
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) < 32 {
			t.Errorf("%s: %d random bytes (%v), want at least 32", f, len(raw), err)
		}
	}
	if string(cfg.Secret) == cfg.APIToken {
		t.Error("the secret and the API token are the same")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "baton.yaml")); !strings.Contains(string(b), "# ") {
		t.Error("the config has no comments")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".baton-init-*")); len(left) > 0 {
		t.Errorf("init left its scratch directory behind: %v", left)
	}

	// The commands to run next, for every node.
	for _, want := range []string{
		"scp -p " + filepath.Join(dir, "baton.yaml") + " " + filepath.Join(dir, "secret") + " " + filepath.Join(dir, "api-token") + " root@10.0.0.12:/etc/baton/",
		"ssh root@10.0.0.13 install -d -m 755 /etc/baton",
		"ssh root@10.0.0.11 baton check-config --config /etc/baton/baton.yaml --node n1",
		"ssh root@10.0.0.13 baton check-config --config /etc/baton/baton.yaml --node w1",
		"ssh root@10.0.0.12 systemctl enable --now --no-block baton",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("init's instructions lack %q:\n%s", want, stdout)
		}
	}

	// check-config passes on it ...
	if out, errOut, code := run(t, "check-config", "--config", filepath.Join(dir, "baton.yaml")); code != 0 {
		t.Errorf("check-config: exit %d\n%s%s", code, out, errOut)
	}
	// ... and with --node only what this host cannot be (10.0.0.11, eth0 with 10.0.0.0/24) fails.
	_, errOut, code := run(t, "check-config", "--config", filepath.Join(dir, "baton.yaml"), "--node", "n1")
	if code != exitUsage {
		t.Skipf("this host passes n1's host checks (exit %d): it has 10.0.0.11", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if strings.HasPrefix(line, "baton:") {
			continue
		}
		if !strings.Contains(line, "nodes[0].address") && !strings.Contains(line, "groups[0].vips[0]") {
			t.Errorf("a problem that is not a host check: %s", line)
		}
	}
}

func TestInitRefusesBadFlags(t *testing.T) {
	base := []string{"init", "--cluster", "prod", "--dir", t.TempDir()}
	three := []string{"--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no cluster", []string{"init", "--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}, "--cluster: missing"},
		{"no nodes", nil, "--node: give the service nodes"},
		{"no =", []string{"--node", "n1", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}, "--node n1: want NAME=ADDRESS"},
		{"bad address", []string{"--node", "n1=10.0.0.300", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}, `--node n1=10.0.0.300: "10.0.0.300" is not an IP address`},
		{"duplicate name", []string{"--node", "n1=10.0.0.11", "--node", "n1=10.0.0.12", "--witness", "w1=10.0.0.13"}, `--node n1=10.0.0.12: node name "n1" is given twice (also --node n1=10.0.0.11)`},
		{"duplicate address", []string{"--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.11"}, "--witness w1=10.0.0.11: address 10.0.0.11 is given twice"},
		{"two voters", []string{"--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12"}, "only 2 voting node(s): a quorum needs at least 3"},
		{"two voters hint", []string{"--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12"}, "add --witness w1=ADDRESS"},
		{"vip without interface", append([]string{"--vip", "10.0.0.100/24"}, three...), "--vip 10.0.0.100/24: name the interface the VIP goes on, e.g. --vip 10.0.0.100/24@eth0"},
		{"vip not a prefix", append([]string{"--vip", "10.0.0.100@eth0"}, three...), `--vip 10.0.0.100@eth0: "10.0.0.100" is not ADDRESS/PREFIX`},
		{"vip is a node", append([]string{"--vip", "10.0.0.12/24@eth0"}, three...), "10.0.0.12 is also a node's address (--node n2=10.0.0.12)"},
		{"bad check", append([]string{"--check", "127.0.0.1:8080"}, three...), "--check 127.0.0.1:8080: want an http:// or https:// URL"},
		{"bad node name", []string{"--node", "N1=10.0.0.11", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}, "--node N1=10.0.0.11: nodes[0].name:"},
		{"bad cluster name", []string{"--cluster", "Prod!", "--node", "n1=10.0.0.11", "--node", "n2=10.0.0.12", "--witness", "w1=10.0.0.13"}, "--cluster Prod!: cluster.name:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			if tc.name == "no cluster" {
				args = append(tc.args, "--dir", t.TempDir())
			}
			_, stderr, code := run(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
		})
	}
}

func TestInitDoesNotOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := run(t, append(initArgs, "--dir", dir)...); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	secret, _ := os.ReadFile(filepath.Join(dir, "secret"))
	_, stderr, code := run(t, append(initArgs, "--dir", dir)...)
	if code != exitRefused || !strings.Contains(stderr, "already exists") || !strings.Contains(stderr, "--force") {
		t.Errorf("second init: exit %d, stderr:\n%s", code, stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "secret")); string(again) != string(secret) {
		t.Error("a refused init changed the secret")
	}
	if _, stderr, code := run(t, append(initArgs, "--dir", dir, "--force")...); code != 0 {
		t.Fatalf("init --force: exit %d\n%s", code, stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "secret")); string(again) == string(secret) {
		t.Error("init --force kept the old secret")
	}
}

// TestInitReplacesThePackagedExample: the packages install an example as
// /etc/baton/baton.yaml; init replaces it without --force.
func TestInitReplacesThePackagedExample(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "packaging", "baton.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(example), ExampleMarker) {
		t.Fatalf("packaging/baton.yaml does not start with %q", ExampleMarker)
	}
	os.WriteFile(filepath.Join(dir, "baton.yaml"), example, 0o644)
	if _, stderr, code := run(t, append(initArgs, "--dir", dir)...); code != 0 {
		t.Fatalf("init over the example: exit %d\n%s", code, stderr)
	}
	if _, err := config.Load(filepath.Join(dir, "baton.yaml")); err != nil {
		t.Fatal(err)
	}
}

// TestPackagedExampleChecks: the example the packages install passes
// check-config once its secret and token exist (it has nothing else to fill).
func TestPackagedExampleChecks(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "packaging", "baton.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "baton.yaml"), example, 0o644)
	if _, _, code := run(t, "check-config", "--config", filepath.Join(dir, "baton.yaml")); code != exitUsage {
		t.Errorf("check-config on the example without a secret: exit %d, want %d", code, exitUsage)
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "api-token"), []byte("token-token-token-token\n"), 0o600)
	if out, errOut, code := run(t, "check-config", "--config", filepath.Join(dir, "baton.yaml")); code != 0 {
		t.Errorf("check-config on the example with its secret: exit %d\n%s%s", code, out, errOut)
	}
}

func TestInitTCPCheckAndIPv6(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := run(t, "init", "--cluster", "v6", "--dir", dir, "--group", "db",
		"--node", "a=fd00::11", "--node", "b=fd00::12", "--witness", "w=fd00::13",
		"--vip", "fd00::100/64@eth0", "--check", "tcp://127.0.0.1:5432")
	if code != 0 {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	cfg, err := config.Load(filepath.Join(dir, "baton.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Groups[0]
	if g.Name != "db" || len(g.Checks) != 1 || g.Checks[0].Type != "tcp" || g.Checks[0].Address != "127.0.0.1:5432" {
		t.Errorf("group %s checks %+v: want one tcp check of 127.0.0.1:5432", g.Name, g.Checks)
	}
	if n, _ := cfg.NodeByName("a"); n.API != "[fd00::11]:7480" {
		t.Errorf("a's API %q", n.API)
	}
	// scp needs brackets around an IPv6 address; ssh does not take them.
	if !strings.Contains(stdout, "root@[fd00::12]:/etc/baton/") || !strings.Contains(stdout, "ssh root@fd00::12 baton check-config") {
		t.Errorf("IPv6 commands:\n%s", stdout)
	}
}
