// Package testkit is for Baton's tests only: helpers that several test packages need, kept in one place so that
// they do not drift apart. [WaitFor] polls a condition with a deadline; [ThreeNodes] writes the cluster file most
// tests start from. Product code never imports it (TestProductDoesNotLinkTestkit checks cmd/baton).
package testkit

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// WaitFor polls cond until it holds and returns how long that took. If within passes first it fails t, naming how
// long it waited and for what: "timed out after 5s waiting for <what>". cond runs on the calling goroutine and is
// asked once more after the deadline, so a test that was descheduled past it (a loaded CI host) is not failed for
// that.
//
// Tests on real time assert what happens, not how fast: give within a generous bound (seconds), or a multiple of
// the profile timing the behaviour depends on.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return WaitForState(t, within, what, func() (bool, string) { return cond(), "" })
}

// WaitForState is [WaitFor] for a condition that also says what it saw; on failure the message ends with the
// last thing it saw, e.g. "timed out after 20s waiting for n2 to catch up (n2 at 1/3000060, n1 at 1/3000100)".
func WaitForState(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) time.Duration {
	t.Helper()
	start := time.Now()
	// Poll often enough that a short wait is not lengthened much, rarely enough that a long one does not spin.
	every := min(max(within/200, time.Millisecond), 20*time.Millisecond)
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if waited := time.Since(start); waited > within {
			if state != "" {
				state = " (" + state + ")"
			}
			t.Fatalf("timed out after %v waiting for %s%s", waited.Round(time.Millisecond), what, state)
			return waited
		}
		time.Sleep(every)
	}
}

// ThreeNodes is the cluster most tests start from: two service nodes n1 and n2 and a vote-only witness w1 (the
// smallest cluster whose quorum survives the loss of any one node), with one active-passive group, "web", on n1
// (preferred, priority 150) and n2. The zero value is that cluster; set fields to vary it. It is config text, not
// a parsed config, so that package config's own tests can use it too: parse it with config.Parse.
type ThreeNodes struct {
	Name    string // cluster.name; default "test"
	Profile string // cluster.profile; "" leaves it out (the default profile)
	Port    int    // cluster.port; 0 leaves it out (the default port)
	// Net is the first three octets of the nodes' addresses: n1 is Net.1, n2 Net.2 and w1 Net.3. Default
	// "10.0.0": documentation addresses nothing binds to; tests that run agents use a random 127.x.y.
	Net     string
	DataDir string // when set, each node's data_dir is DataDir/<node>
	Top     string // more top-level YAML, written after cluster: (e.g. "dns: {listen: ...}")
	Group   string // the group's name; default "web"
	// GroupExtra is more YAML for the group, written as its fields, e.g. "driver: {type: exec, ...}" (indented
	// for you).
	GroupExtra string
	// Groups are more groups after the first, as YAML list items, e.g. "- name: api\n  members: [{node: n2}]"
	// (indented for you).
	Groups string
}

// Members are the nodes of a ThreeNodes cluster: the two service nodes, then the witness.
var Members = []string{"n1", "n2", "w1"}

// YAML returns the cluster file.
func (c ThreeNodes) YAML() string {
	name, net, group := or(c.Name, "test"), or(c.Net, "10.0.0"), or(c.Group, "web")
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ncluster: {name: %s, secret: \"0123456789abcdef0123456789abcdef\"", name)
	if c.Profile != "" {
		fmt.Fprintf(&b, ", profile: %s", c.Profile)
	}
	if c.Port != 0 {
		fmt.Fprintf(&b, ", port: %d", c.Port)
	}
	b.WriteString("}\n")
	b.WriteString(indent(c.Top, ""))
	b.WriteString("nodes:\n")
	for i, n := range Members {
		fmt.Fprintf(&b, "  - {name: %s, address: %s.%d", n, net, i+1)
		if c.DataDir != "" {
			fmt.Fprintf(&b, ", data_dir: %q", c.DataDir+"/"+n)
		}
		if n == "w1" {
			b.WriteString(", witness: true")
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "groups:\n  - name: %s\n    members: [{node: n1, priority: 150}, {node: n2}]\n", group)
	b.WriteString(indent(c.GroupExtra, "    "))
	b.WriteString(indent(c.Groups, "  "))
	return b.String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// indent prefixes each line of s with prefix and ends it with a newline ("" stays "").
func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}
