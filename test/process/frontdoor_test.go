package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/baton-ha/baton/internal/proctest"
	"github.com/baton-ha/baton/internal/testkit"
)

// frontDoorSpec: group web with a DNS name and a proxy on every agent; each
// member runs a who-am-I HTTP service on its own address at SvcPort.
var frontDoorSpec = proctest.Spec{
	Top:        "dns: {listen: \":$DNS\", ttl: 1s}\n",
	GroupExtra: "    dns: {name: web}\n    proxy: {listen: \":$PROXY\", port: $SVC}\n",
}

func startFrontDoors(t *testing.T) *proctest.Cluster {
	t.Helper()
	c := start2(t, frontDoorSpec)
	serveWhoami(t, c)
	return c
}

// serveWhoami runs a who-am-I service on n1 and n2 at SvcPort and waits
// until n1 owns the group.
func serveWhoami(t *testing.T, c *proctest.Cluster) {
	t.Helper()
	for _, n := range []string{"n1", "n2"} {
		stop, err := proctest.Whoami(net.JoinHostPort(c.Addrs[n], fmt.Sprint(c.SvcPort)), n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	if owner, _, err := c.WaitOwner("w1", liveness); err != nil || owner != "n1" {
		t.Fatalf("initial owner %q, %v; want n1", owner, err)
	}
}

// lookup asks node's DNS server for web.baton. A and returns the addresses.
func lookup(c *proctest.Cluster, node string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion("web.baton.", dns.TypeA)
	cl := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := cl.Exchange(m, net.JoinHostPort(c.Addrs[node], fmt.Sprint(c.DNSPort)))
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return nil, fmt.Errorf("rcode %s, authoritative %v", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
			if rr.Header().Ttl != 1 {
				return nil, fmt.Errorf("TTL %d, want 1", rr.Header().Ttl)
			}
		}
	}
	return out, nil
}

// waitDNS polls every node's DNS server until all answer want.
func waitDNS(t *testing.T, c *proctest.Cluster, want string) {
	t.Helper()
	for _, n := range []string{"n1", "n2", "w1"} {
		if c.PID(n) == 0 {
			continue
		}
		testkit.WaitForState(t, liveness, fmt.Sprintf("DNS on %s to answer [%s]", n, want), func() (bool, string) {
			got, err := lookup(c, n)
			return err == nil && len(got) == 1 && got[0] == want, fmt.Sprintf("answers %v (%v)", got, err)
		})
	}
}

// ask sends one HTTP request on conn and returns who answered.
func ask(conn net.Conn, br *bufio.Reader) (string, error) {
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
		return "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if who, ok := strings.CutPrefix(strings.TrimSpace(line), "I am "); ok {
			return who, nil
		}
	}
}

// viaProxy opens a connection through node's proxy and asks who answers.
func viaProxy(c *proctest.Cluster, node string) (string, net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.Addrs[node], fmt.Sprint(c.ProxyPort)), 2*time.Second)
	if err != nil {
		return "", nil, nil, err
	}
	br := bufio.NewReader(conn)
	who, err := ask(conn, br)
	if err != nil {
		conn.Close()
		return "", nil, nil, err
	}
	return who, conn, br, nil
}

func TestDNSAndProxyFollowFailover(t *testing.T) {
	c := startFrontDoors(t)
	waitDNS(t, c, c.Addrs["n1"])
	who, held, heldR, err := viaProxy(c, "w1")
	if err != nil || who != "n1" {
		t.Fatalf("through w1's proxy: %q, %v; want n1", who, err)
	}
	defer held.Close()

	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	// Once w1's status shows the new owner, its proxy sends nothing to n1.
	testkit.WaitForState(t, liveness, "w1 to see n2 own web", func() (bool, string) {
		st, err := c.Status("w1")
		return err == nil && st.Groups[0].Owner == "n2", fmt.Sprintf("%+v %v", st, err)
	})
	for i := range 20 {
		who, conn, _, err := viaProxy(c, "w1")
		if err != nil {
			t.Fatalf("connection %d through w1's proxy after the failover: %v", i, err)
		}
		conn.Close()
		if who != "n2" {
			t.Fatalf("connection %d after the failover committed went to %s", i, who)
		}
	}
	// The connection held to the dead owner was closed, not left hanging.
	_ = held.SetReadDeadline(time.Now().Add(liveness))
	if _, err := heldR.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection to the deposed owner still open after the failover (read: %v)", err)
	}
	waitDNS(t, c, c.Addrs["n2"])
	// The proxy on n2 itself serves too.
	if who, conn, _, err := viaProxy(c, "n2"); err != nil || who != "n2" {
		t.Fatalf("through n2's proxy: %q, %v", who, err)
	} else {
		conn.Close()
	}
}

func TestProxyDrainsOnSwitchover(t *testing.T) {
	c := startFrontDoors(t)
	who, held, heldR, err := viaProxy(c, "w1")
	if err != nil || who != "n1" {
		t.Fatalf("through w1's proxy: %q, %v; want n1", who, err)
	}
	defer held.Close()
	if out, err := c.Baton("w1", "switchover", "web", "--to", "n2"); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	if _, err := c.Status("w1"); err != nil { // status publishes: the proxy now follows
		t.Fatal(err)
	}
	who, conn, _, err := viaProxy(c, "w1")
	if err != nil || who != "n2" {
		t.Fatalf("new connection after the switchover: %q, %v; want n2", who, err)
	}
	conn.Close()
	// The old connection drains: it still works, served by n1.
	if who, err := ask(held, heldR); err != nil || who != "n1" {
		t.Fatalf("held connection after the switchover: %q, %v; want it drained on n1", who, err)
	}
	waitDNS(t, c, c.Addrs["n2"])
}

func TestDNSRefusesOutsideZoneAndNXDOMAIN(t *testing.T) {
	c := startFrontDoors(t)
	cl := &dns.Client{Timeout: 2 * time.Second}
	for name, want := range map[string]int{"nope.baton.": dns.RcodeNameError, "example.org.": dns.RcodeRefused} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, _, err := cl.Exchange(m, net.JoinHostPort(c.Addrs["n2"], fmt.Sprint(c.DNSPort)))
		if err != nil || r.Rcode != want {
			t.Fatalf("%s: %v %v, want %s", name, r, err, dns.RcodeToString[want])
		}
	}
}
