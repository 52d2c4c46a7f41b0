package labtest

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	vipmgr "github.com/baton-ha/baton/internal/frontdoor/vip"
	"github.com/baton-ha/baton/internal/lab"
)

// TestVIPTCPResetSetting: a VIP with tcp_reset: false is in no node's reset
// rule, and a switchover leaves an idle client connection to it alone (its
// client hears nothing, as from keepalived); a reload that turns tcp_reset on
// puts the VIP in the rule of every member and the next switchover resets
// that connection at once.
func TestVIPTCPResetSetting(t *testing.T) {
	l, c := startLab(t, lab.Options{Hosts: 3}, lab.ClusterSpec{VIP: vip + "/24", VIPOptions: "tcp_reset: false"})
	if _, err := c.WaitHolder(vip, "h1", liveness); err != nil {
		t.Fatal(err)
	}
	inRule := func(host string) bool {
		out, err := l.Run(host, "nft", "list", "table", "inet", vipmgr.ResetTable("lab", host))
		return err == nil && strings.Contains(string(out), vip)
	}
	for _, h := range c.Members {
		if inRule(h) {
			t.Errorf("%s resets TCP for a VIP with tcp_reset: false", h)
		}
	}
	// A server on each member that accepts and never writes (whoami answers
	// at once and closes).
	for _, h := range c.Members {
		var ln net.Listener
		if err := l.InNS(h, func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:9099"); return err }); err != nil {
			t.Fatal(err)
		}
		var held []net.Conn
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, conn)
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			<-done
			for _, conn := range held {
				conn.Close()
			}
		})
	}
	// idleAcross opens a connection to a silent server through the VIP and
	// switches over to `to`: it returns what a read on the connection got.
	idleAcross := func(to string) error {
		t.Helper()
		conn, err := l.Dialer(lab.Client)(context.Background(), "tcp4", vip+":9099")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := c.Switchover(c.Witness, to); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitHolder(vip, to, liveness); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		t.Logf("an idle connection across the switchover to %s: %v", to, err)
		return err
	}
	if err := idleAcross("h2"); errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("with tcp_reset: false the old owner reset an idle connection to the VIP: %v", err)
	}

	b, err := os.ReadFile(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.Config, []byte(strings.Replace(string(b), "tcp_reset: false", "tcp_reset: true", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		if err := c.Agent(h).Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(liveness)
	for !inRule("h1") || !inRule("h2") {
		if time.Now().After(deadline) {
			t.Fatalf("after the reload to tcp_reset: true: in h1's rule %v, in h2's %v", inRule("h1"), inRule("h2"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := idleAcross("h1"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("with tcp_reset: true an idle connection to the VIP got %v when its owner switched over, want a reset", err)
	}
}
