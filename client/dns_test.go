package client

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS is Baton's authoritative DNS front door reduced to a table:
// A/AAAA for each known name, NXDOMAIN for the rest.
type fakeDNS struct {
	srv  *dns.Server
	addr string

	mu    sync.Mutex
	names map[string][]netip.Addr
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{addr: pc.LocalAddr().String(), names: make(map[string][]netip.Addr)}
	started := make(chan struct{})
	f.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(f.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		f.srv.Shutdown()
		<-done
	})
	return f
}

func (f *fakeDNS) set(name string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.names[dns.Fqdn(name)] = as
}

func (f *fakeDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	f.mu.Lock()
	addrs, ok := f.names[strings.ToLower(q.Name)]
	f.mu.Unlock()
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		case a.Is6() && q.Qtype == dns.TypeAAAA:
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

func TestDNSMode(t *testing.T) {
	n1 := newBackend(t, "n1", "127.0.0.1:0")
	port := n1.endpoint("").Port
	newBackend(t, "n2", net.JoinHostPort("127.0.0.2", strconv.Itoa(port))) // same port, as on a VIP
	ns := newFakeDNS(t)
	ns.set("web.baton.", "127.0.0.1")
	ns.set("db.baton.") // known, no owner
	c := newClient(t, Options{DNSServer: ns.addr, Port: port})

	eps, err := c.Endpoints(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps.Endpoints) != 1 || eps.Endpoints[0].Address != "127.0.0.1" || eps.Endpoints[0].Port != port {
		t.Fatalf("Endpoints = %+v", eps)
	}

	old, got := dialName(t, c, "web")
	if got != "n1" {
		t.Fatalf("dialled %q, want n1", got)
	}
	blocked := readErr(old)
	ns.set("web.baton.", "127.0.0.2") // failover: the name now points at n2
	if err := waitErr(t, blocked, 2*time.Second); !errors.Is(err, ErrDeposed) {
		t.Fatalf("read on the deposed owner's connection: %v, want ErrDeposed", err)
	}
	if _, got := dialName(t, c, "web"); got != "n2" {
		t.Fatalf("redial reached %q, want n2", got)
	}

	start := time.Now()
	if _, err := c.Dial(context.Background(), "nope"); !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown group: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("unknown group took %v", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Dial(ctx, "db"); !errors.Is(err, ErrNoOwner) {
		t.Fatalf("group without owner: %v, want ErrNoOwner", err)
	}
}

func TestDNSGenerationIsTheAddressSet(t *testing.T) {
	ns := newFakeDNS(t)
	c := newClient(t, Options{DNSServer: ns.addr, Port: 80})
	gen := func(addrs ...string) uint64 {
		t.Helper()
		ns.set("web.baton.", addrs...)
		eps, err := c.Endpoints(context.Background(), "web")
		if err != nil {
			t.Fatal(err)
		}
		return eps.Generation
	}
	a := gen("10.0.0.1", "10.0.0.2", "fd00::1")
	if b := gen("fd00::1", "10.0.0.2", "10.0.0.1"); b != a {
		t.Fatal("the same address set in another order gave another generation")
	}
	if b := gen("10.0.0.1", "10.0.0.2"); b == a {
		t.Fatal("a changed address set kept its generation")
	}
}
