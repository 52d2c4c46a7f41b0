package process

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// TestReloadAddChangeRemove: a live reload adds a group (it gets an owner),
// changes the running group web (its hooks' timeout, its priorities), and
// removes the added group again (its owner runs the standby hook) — and web
// keeps its owner and epoch throughout, with no hook run for it. A node that
// has not reloaded yet is marked in status; a refused file changes nothing.
func TestReloadAddChangeRemove(t *testing.T) {
	c := start(t, proctest.Spec{})
	orig, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	hook := c.Dir + "/hook.sh"
	webHooks := func() int {
		n := 0
		for _, e := range c.Hooks() {
			if e.Group == "web" {
				n++
			}
		}
		return n
	}
	// Every node's startup hooks for web have run (n2's standby may come
	// after n1's active): from here on, none may.
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Group == "web" && e.Role == "standby" && e.Node == "n2"
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a hook runs in a few ms; its line may still be on its way
	before := webHooks()
	webUnchanged := func(when string) {
		t.Helper()
		for _, n := range []string{"n1", "n2", "w1"} {
			st, err := c.Status(n)
			if err != nil {
				t.Fatalf("%s: status via %s: %v", when, n, err)
			}
			g := group(st, "web")
			if g == nil || g.Owner != "n1" || g.Epoch != 1 {
				t.Fatalf("%s: web via %s is %+v, want n1 at epoch 1", when, n, g)
			}
		}
		if got := webHooks(); got != before {
			t.Fatalf("%s: %d hooks ran for web (want none): %+v", when, got-before, c.Hooks())
		}
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(c.ConfigPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reload := func(nodes ...string) {
		t.Helper()
		for _, n := range nodes {
			if n == "w1" {
				// One node by SIGHUP, the others by `baton reload`.
				if err := c.Signal(n, syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if out, err := c.Baton(n, "reload"); err != nil {
				t.Fatalf("baton reload on %s: %v\n%s", n, err, out)
			}
		}
	}
	sameConfig := func() {
		t.Helper()
		testkit.WaitForState(t, liveness, "every node to run the same config", func() (bool, string) {
			st, err := c.Status("n1")
			if err != nil {
				return false, err.Error()
			}
			for _, n := range st.Nodes {
				if n.ConfigDiffers || n.ConfigHash == "" {
					return false, n.Name + " differs"
				}
			}
			return true, ""
		})
	}

	// Add api on n2 (preferred) and n1.
	api := "  - name: api\n    members: [{node: n2, priority: 200}, {node: n1, priority: 100}]\n" +
		"    hooks: {active: [\"" + hook + "\"], standby: [\"" + hook + "\"], timeout: 5s}\n"
	write(string(orig) + api)
	reload("n1")
	testkit.WaitForState(t, liveness, "n1's status to mark n2 and w1 as running another config", func() (bool, string) {
		st, err := c.Status("n1")
		if err != nil {
			return false, err.Error()
		}
		differs := 0
		for _, n := range st.Nodes {
			if n.ConfigDiffers {
				differs++
			}
		}
		return differs == 2, ""
	})
	reload("n2", "w1")
	sameConfig()
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Group == "api" && e.Role == "active" && e.Node == "n2"
	}); err != nil {
		t.Fatal(err)
	}
	webUnchanged("after adding api")

	// Change web: its hooks' timeout and n2's priority.
	changed := strings.Replace(string(orig), "timeout: 5s", "timeout: 7s", 1)
	changed = strings.Replace(changed, "priority: 190", "priority: 120", 1)
	if changed == string(orig) {
		t.Fatal("the edit of web found nothing to change")
	}
	write(changed + api)
	reload("n1", "n2", "w1")
	sameConfig()
	time.Sleep(quiet(t, c)) // long enough for a disturbance to show
	webUnchanged("after changing web")

	// Refused: an invalid file, and a change that cannot be made live.
	write("version: 1\ncluster: {name: x}\n")
	out, err := c.Baton("n1", "reload")
	if err == nil || !strings.Contains(out, "reload refused, the running config stays") || !strings.Contains(out, "nodes: no nodes") {
		t.Fatalf("an invalid file: err %v, output:\n%s", err, out)
	}
	write(strings.Replace(changed, fmt.Sprintf("port: %d", c.Port), fmt.Sprintf("port: %d", c.Port+10), 1) + api)
	out, err = c.Baton("n1", "reload")
	if err == nil || !strings.Contains(out, "cluster.port:") || !strings.Contains(out, "cannot change live") {
		t.Fatalf("a new port: err %v, output:\n%s", err, out)
	}
	if b, err := os.ReadFile(c.Dir + "/n1.log"); err != nil || !strings.Contains(string(b), "reload refused") {
		t.Fatalf("n1's log does not tell of the refused reload (%v)", err)
	}

	// Remove api: n2 hands it off (standby hook); web stays.
	write(changed)
	reload("n1", "n2", "w1")
	sameConfig()
	if _, err := c.WaitHook(liveness, func(e proctest.HookEvent) bool {
		return e.Group == "api" && e.Role == "standby" && e.Node == "n2" && e.Epoch >= 1
	}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("n1")
	if err != nil {
		t.Fatal(err)
	}
	if g := group(st, "api"); g != nil {
		t.Fatalf("api is still in n1's status after its removal: %+v", g)
	}
	webUnchanged("after removing api")
}

func group(st core.Status, name string) *core.GroupStatus {
	for i := range st.Groups {
		if st.Groups[i].Name == name {
			return &st.Groups[i]
		}
	}
	return nil
}

// TestReloadFrontDoors: a reload moves a group's proxy to another port and
// renames its DNS name: every agent serves the new ones and no longer the
// old ones, and the group keeps its owner and epoch.
func TestReloadFrontDoors(t *testing.T) {
	c := startFrontDoors(t)
	waitDNS(t, c, c.Addrs["n1"])
	orig, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	newPort := c.ProxyPort + 10
	edited := strings.Replace(string(orig), fmt.Sprintf("listen: \":%d\"", c.ProxyPort), fmt.Sprintf("listen: \":%d\"", newPort), 1)
	edited = strings.Replace(edited, "dns: {name: web}", "dns: {name: www}", 1)
	if edited == string(orig) || !strings.Contains(edited, "name: www") {
		t.Fatalf("the edit found nothing to change:\n%s", orig)
	}
	if err := os.WriteFile(c.ConfigPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "w1"} {
		if out, err := c.Baton(n, "reload"); err != nil || !strings.Contains(out, "changed: web") {
			t.Fatalf("baton reload on %s: %v\n%s", n, err, out)
		}
	}
	for _, n := range []string{"n1", "n2", "w1"} {
		testkit.WaitForState(t, liveness, n+"'s proxy on the new port to reach n1", func() (bool, string) {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.Addrs[n], fmt.Sprint(newPort)), 2*time.Second)
			if err != nil {
				return false, err.Error()
			}
			defer conn.Close()
			who, err := ask(conn, bufio.NewReader(conn))
			return err == nil && who == "n1", fmt.Sprintf("%q %v", who, err)
		})
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.Addrs[n], fmt.Sprint(c.ProxyPort)), time.Second); err == nil {
			conn.Close()
			t.Fatalf("%s still listens on the old proxy port %d", n, c.ProxyPort)
		}
		for name, want := range map[string]int{"www.baton.": dns.RcodeSuccess, "web.baton.": dns.RcodeNameError} {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, net.JoinHostPort(c.Addrs[n], fmt.Sprint(c.DNSPort)))
			if err != nil || r.Rcode != want {
				t.Fatalf("%s's DNS for %s: %v %v, want %s", n, name, r, err, dns.RcodeToString[want])
			}
			if want == dns.RcodeSuccess && (len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != c.Addrs["n1"]) {
				t.Fatalf("%s's DNS for %s: %v, want n1's address", n, name, r.Answer)
			}
		}
	}
	st, err := c.Status("w1")
	if err != nil {
		t.Fatal(err)
	}
	if g := group(st, "web"); g == nil || g.Owner != "n1" || g.Epoch != 1 {
		t.Fatalf("web after the reload: %+v, want n1 at epoch 1", g)
	}
}
