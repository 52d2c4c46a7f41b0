package labtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/lab"
	"github.com/baton-ha/baton/internal/testkit"
)

// TestREADMEQuickStart follows the README's "Quick start: a real cluster" on
// three lab hosts standing in for the three machines, running the README's
// own text blocks, so the quick start cannot drift from what works.
//
// Each machine is a network namespace plus a mount and UTS namespace of its
// own: its hostname is the node's name, and /etc, /usr/local and /var/lib are
// overlays, so /etc/baton, /usr/local/bin/baton and the default data_dir
// (/var/lib/baton/...) are private to it and nothing lands on this host (a
// data_dir left behind once made a later run start from an old cluster's
// state). The only edits to the README's text: its example addresses
// (10.0.0.11–13) become the lab's, `--node n1` names the node it runs on, a
// `baton agent` line runs in the background, and `logger` (no syslog here)
// is a shim that appends to a file the test reads.
func TestREADMEQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	qs := quickStartBlocks(t, string(readme))

	l, err := lab.New(lab.Options{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := t.TempDir()

	hostOf := map[string]string{"n1": "h1", "n2": "h2", "w1": "h3"}
	addrs := strings.NewReplacer("10.0.0.11", l.Addr("h1"), "10.0.0.12", l.Addr("h2"), "10.0.0.13", l.Addr("h3"))
	shim := filepath.Join(dir, "shim")
	if err := os.MkdirAll(shim, 0o755); err != nil {
		t.Fatal(err)
	}
	// logger → $BATON_QS_LOG, one line per call (the hooks log through it).
	if err := os.WriteFile(filepath.Join(shim, "logger"), []byte("#!/bin/sh\n[ \"$1\" = -t ] && shift 2\necho \"$*\" >> \"$BATON_QS_LOG\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	machines := map[string]*qsMachine{}
	for _, node := range []string{"n1", "n2", "w1"} {
		m := &qsMachine{t: t, l: l, node: node, host: hostOf[node], dir: filepath.Join(dir, node), root: root, shim: shim}
		m.boot()
		machines[node] = m
	}
	n1, n2, w1 := machines["n1"], machines["n2"], machines["w1"]
	all := []*qsMachine{n1, n2, w1}

	// What the operator copies between machines (scp in real life) passes
	// through stage, outside the overlays.
	stage := filepath.Join(dir, "stage")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	// 1. Build once and copy the binary to every node.
	n1.run(qs.build)
	n1.run("cp /usr/local/bin/baton " + stage + "/")
	// 2. Make the secret and the API token on one node and copy them.
	n1.run(qs.secret)
	n1.run("cp -p /etc/baton/secret /etc/baton/api-token " + stage + "/")
	for _, m := range []*qsMachine{n2, w1} {
		m.run(fmt.Sprintf("install -D -m 755 %[1]s/baton /usr/local/bin/baton && install -d -m 700 /etc/baton && "+
			"install -m 600 %[1]s/secret %[1]s/api-token /etc/baton/", stage))
	}
	// 3. The same config everywhere, hooks on every node, the stand-in
	// service on the members.
	if err := os.WriteFile(filepath.Join(stage, "baton.yaml"), []byte(addrs.Replace(qs.config)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		m.run("install -m 600 " + stage + "/baton.yaml /etc/baton/baton.yaml")
		m.run(qs.hooks)
		if m != w1 {
			m.start("service", qs.service)
		}
	}
	// 4. check-config, then the agent, on each node.
	for _, m := range all {
		m.run(strings.ReplaceAll(qs.checkConfig, "--node n1", "--node "+m.node))
	}
	for _, m := range all {
		m.start("agent", strings.ReplaceAll(qs.agent, "--node n1", "--node "+m.node))
	}

	// 5. Watch it: n1 (the higher priority) owns web and ran its active hook;
	// kill -9 of its agent → n2 runs its active hook with BATON_EPOCH=2.
	testkit.WaitForState(t, 30*time.Second, "n1 owns web at epoch 1 (README step 5)", noErr(func() error {
		return n2.ownerIs("n1", 1)
	}))
	if out := n1.run(qs.status); !regexp.MustCompile(`web\s.*n1`).MatchString(out) {
		t.Errorf("README's `%s` on n1 does not show n1 owning web:\n%s", qs.status, out)
	}
	testkit.WaitForState(t, 10*time.Second, "n1's active hook logged epoch 1", noErr(func() error {
		return n1.hookLogged("web: active at epoch 1")
	}))
	if err := n1.procs["agent"].Kill(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitForState(t, 20*time.Second, "n2 owns web at epoch 2 after kill -9 of n1's agent", noErr(func() error {
		return w1.ownerIs("n2", 2)
	}))
	testkit.WaitForState(t, 10*time.Second, "n2's active hook logged epoch 2", noErr(func() error {
		return n2.hookLogged("web: active at epoch 2")
	}))
	if out := n2.run(qs.history); !strings.Contains(out, "n2") {
		t.Errorf("`%s` on n2 does not mention n2:\n%s", qs.history, out)
	}
}

// qsBlocks are the quick start's commands, taken from the README.
type qsBlocks struct {
	build, secret, config, service, hooks string
	checkConfig, agent                    string // the two lines of step 4
	status, history                       string // from step 5's text
}

// quickStartBlocks cuts the README's quick-start section into the blocks the
// test runs, failing with what it looked for when the README changed shape.
func quickStartBlocks(t *testing.T, readme string) qsBlocks {
	t.Helper()
	start := strings.Index(readme, "\n## Quick start: a real cluster\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Quick start: a real cluster" section`)
	}
	sec := readme[start+1:]
	if end := strings.Index(sec, "\n## "); end >= 0 {
		sec = sec[:end]
	}
	fence := regexp.MustCompile("(?ms)^[ \t]*```([a-z]*)\n(.*?)^[ \t]*```[ \t]*$")
	var q qsBlocks
	for _, m := range fence.FindAllStringSubmatch(sec, -1) {
		lang, body := m[1], dedent(m[2])
		switch {
		case lang == "yaml":
			q.config = body
		case strings.Contains(body, "/etc/baton/secret"):
			q.secret = body
		case strings.Contains(body, "demo-service"):
			q.service = body
		case strings.Contains(body, "on-active"):
			q.hooks = body
		case strings.Contains(body, "baton agent"):
			for _, line := range strings.Split(body, "\n") {
				switch {
				case strings.HasPrefix(line, "baton check-config"):
					q.checkConfig = line
				case strings.HasPrefix(line, "baton agent"):
					q.agent = line
				}
			}
		}
	}
	inline := func(prefix string) string {
		m := regexp.MustCompile("`(" + regexp.QuoteMeta(prefix) + "[^`]*)`").FindStringSubmatch(sec)
		if m == nil {
			return ""
		}
		return m[1]
	}
	q.build, q.status, q.history = inline("scripts/build /usr/local/bin/baton"), inline("baton status"), inline("baton history")
	for name, v := range map[string]string{
		"the build command (`scripts/build /usr/local/bin/baton`)": q.build,
		"a block making /etc/baton/secret":                         q.secret,
		"the yaml config block":                                    q.config,
		"a block starting `baton demo-service`":                    q.service,
		"a block writing the on-active/on-standby hooks":           q.hooks,
		"a `baton check-config …` line":                            q.checkConfig,
		"a `baton agent …` line":                                   q.agent,
		"`baton status`":                                           q.status,
		"`baton history`":                                          q.history,
	} {
		if v == "" {
			t.Fatalf("README quick start: found no %s; keep the README and this test in step", name)
		}
	}
	if !strings.Contains(q.checkConfig, "--node n1") || !strings.Contains(q.agent, "--node n1") {
		t.Fatalf("README quick start: step 4 should name --node n1 (the test runs it as each node): %q / %q", q.checkConfig, q.agent)
	}
	q.service = strings.TrimSuffix(strings.TrimSpace(q.service), "&") // the test runs it in the background itself
	return q
}

// dedent removes the indentation of the block's first line from every line
// (blocks inside list items are indented).
func dedent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) == 0 {
		return s
	}
	ind := len(lines[0]) - len(strings.TrimLeft(lines[0], " \t"))
	for i, ln := range lines {
		if len(ln) >= ind && strings.TrimSpace(ln[:ind]) == "" {
			lines[i] = ln[ind:]
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// qsMachine is one "machine" of the quick start: a lab host with its own
// mount and UTS namespace, held open by a sleeping process that every
// command enters with nsenter.
type qsMachine struct {
	t                     *testing.T
	l                     *lab.Lab
	node, host            string
	dir, root, shim, logf string
	holder                *lab.Proc
	procs                 map[string]*lab.Proc
}

func (m *qsMachine) boot() {
	t := m.t
	m.procs = map[string]*lab.Proc{}
	m.logf = filepath.Join(m.dir, "hooks.log")
	var mounts []string
	for _, mp := range [][2]string{{"/etc", "etc"}, {"/usr/local", "usr-local"}, {"/var/lib", "var-lib"}} {
		up, work := filepath.Join(m.dir, mp[1], "upper"), filepath.Join(m.dir, mp[1], "work")
		for _, d := range []string{up, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		mounts = append(mounts, fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s %s", mp[0], up, work, mp[0]))
	}
	ready := filepath.Join(m.dir, "ready")
	script := fmt.Sprintf("set -e; hostname %s; %s; touch %s; exec sleep 100000", m.node, strings.Join(mounts, "; "), ready)
	p, err := m.l.Start(m.host, m.node+"-machine", []string{"unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script}, nil, filepath.Join(m.dir, "machine.log"))
	if err != nil {
		t.Fatal(err)
	}
	m.holder = p
	testkit.WaitForState(t, 10*time.Second, m.node+"'s mount namespace is up", noErr(func() error {
		if _, err := os.Stat(ready); err != nil {
			b, _ := os.ReadFile(filepath.Join(m.dir, "machine.log"))
			return fmt.Errorf("not yet: %s", b)
		}
		return nil
	}))
}

func (m *qsMachine) argv(script string) []string {
	return []string{"nsenter", "-t", fmt.Sprint(m.holder.Pid()), "-m", "-u", "--", "sh", "-c", "cd " + m.root + " && " + script}
}

func (m *qsMachine) env() []string {
	return []string{
		"PATH=" + m.shim + ":/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"BATON_QS_LOG=" + m.logf,
	}
}

// run runs script on the machine and returns its output, failing the test
// if it fails.
func (m *qsMachine) run(script string) string {
	m.t.Helper()
	out := filepath.Join(m.dir, fmt.Sprintf("run-%d.log", time.Now().UnixNano()))
	p, err := m.l.Start(m.host, m.node+"-run", m.argv(script), m.env(), out)
	if err != nil {
		m.t.Fatal(err)
	}
	err = p.Wait(3 * time.Minute)
	b, _ := os.ReadFile(out)
	if err != nil {
		m.t.Fatalf("on %s, the README's\n%s\nfailed: %v\n%s", m.node, script, err, b)
	}
	return string(b)
}

// start runs script in the background (the lab kills it at the end).
func (m *qsMachine) start(name, script string) {
	m.t.Helper()
	p, err := m.l.Start(m.host, m.node+"-"+name, m.argv(script), m.env(), filepath.Join(m.dir, name+".log"))
	if err != nil {
		m.t.Fatal(err)
	}
	m.procs[name] = p
	m.t.Cleanup(func() {
		if m.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(m.dir, name+".log"))
			m.t.Logf("=== %s %s.log (tail) ===\n%s", m.node, name, tail(string(b), 3000))
		}
	})
}

// ownerIs asks this machine's agent (baton status --json, found from
// /etc/baton/baton.yaml and the hostname) who owns web.
func (m *qsMachine) ownerIs(node string, epoch uint64) error {
	out := filepath.Join(m.dir, "status.json")
	p, err := m.l.Start(m.host, m.node+"-status", m.argv("baton status --json"), m.env(), out)
	if err != nil {
		return err
	}
	defer os.Remove(out)
	if err := p.Wait(10 * time.Second); err != nil {
		return fmt.Errorf("baton status --json on %s: %v", m.node, err)
	}
	b, _ := os.ReadFile(out)
	var st struct {
		Groups []struct {
			Name  string `json:"name"`
			Owner string `json:"owner"`
			Epoch uint64 `json:"epoch"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("status --json on %s: %v: %s", m.node, err, b)
	}
	for _, g := range st.Groups {
		if g.Name == "web" {
			if g.Owner != node || g.Epoch != epoch {
				return fmt.Errorf("web is owned by %q at epoch %d", g.Owner, g.Epoch)
			}
			return nil
		}
	}
	return fmt.Errorf("no group web in %s's status", m.node)
}

func (m *qsMachine) hookLogged(want string) error {
	b, _ := os.ReadFile(m.logf)
	if !strings.Contains(string(b), want) {
		return fmt.Errorf("hooks logged %q", b)
	}
	return nil
}

// noErr adapts a check that returns why it is not there yet to
// testkit.WaitForState.
func noErr(f func() error) func() (bool, string) {
	return func() (bool, string) {
		if err := f(); err != nil {
			return false, err.Error()
		}
		return true, ""
	}
}
