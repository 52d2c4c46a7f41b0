package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/baton-ha/baton/internal/testkit"
)

// cluster is the zone most tests answer from: web failed over to n2 (one IPv4 and one IPv6 address) with the node
// names given, api served on two addresses with names derived from them, db between owners, and the nodes.
func cluster() map[string]Record {
	return map[string]Record{
		"web": {Addrs: addrs("10.0.0.12", "fd00::12"), Port: 8080,
			Targets: []Target{{Node: "n2", Addr: netip.MustParseAddr("10.0.0.12")}, {Node: "n2", Addr: netip.MustParseAddr("fd00::12")}}},
		"api":    {Addrs: addrs("10.0.0.11", "10.0.0.12"), Port: 443},
		"api6":   {Addrs: addrs("fd00::11"), Port: 443},
		"db":     {Port: 5432},
		"plain":  {Addrs: addrs("10.0.0.13")},
		"n1":     {Addrs: addrs("10.0.0.11")},
		"n2":     {Addrs: addrs("10.0.0.12", "fd00::12")},
		"ns":     {Addrs: addrs("10.0.0.11", "10.0.0.12")},
		"web.eu": {Addrs: addrs("10.1.0.1")},
	}
}

// lines returns rrs in presentation format, tabs turned into spaces.
func lines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

const (
	soaLine = "baton. 1 IN SOA ns.baton. hostmaster.baton. 1 3600 600 86400 1"
	nsLine  = "baton. 1 IN NS ns.baton."
)

func TestAnswers(t *testing.T) {
	s := listen(t, newZoneState(cluster()).snap)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		aa    bool
		ans   []string
		ns    []string
		extra []string
	}{
		// A and AAAA, each family from its own addresses.
		{"web.baton.", dns.TypeA, dns.RcodeSuccess, true, []string{"web.baton. 1 IN A 10.0.0.12"}, nil, nil},
		{"web.baton.", dns.TypeAAAA, dns.RcodeSuccess, true, []string{"web.baton. 1 IN AAAA fd00::12"}, nil, nil},
		{"api.baton.", dns.TypeA, dns.RcodeSuccess, true, []string{"api.baton. 1 IN A 10.0.0.11", "api.baton. 1 IN A 10.0.0.12"}, nil, nil},
		{"api.baton.", dns.TypeAAAA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		// Case does not matter, and the answer keeps the question's spelling (0x20 resolvers check it).
		{"WeB.BaTon.", dns.TypeA, dns.RcodeSuccess, true, []string{"WeB.BaTon. 1 IN A 10.0.0.12"}, nil, nil},
		// Nodes are names like any other.
		{"n1.baton.", dns.TypeA, dns.RcodeSuccess, true, []string{"n1.baton. 1 IN A 10.0.0.11"}, nil, nil},
		// A name nobody serves exists: NOERROR, no answer, the SOA for negative caching.
		{"db.baton.", dns.TypeA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"db.baton.", dns.TypeSRV, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		// Other types, ANY included: NOERROR and the SOA.
		{"web.baton.", dns.TypeANY, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"web.baton.", dns.TypeTXT, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"web.baton.", dns.TypeMX, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		// SRV with node names: one record per node, its addresses as glue.
		{"web.baton.", dns.TypeSRV, dns.RcodeSuccess, true, []string{"web.baton. 1 IN SRV 0 10 8080 n2.baton."}, nil,
			[]string{"n2.baton. 1 IN A 10.0.0.12", "n2.baton. 1 IN AAAA fd00::12"}},
		{"_http._tcp.web.baton.", dns.TypeSRV, dns.RcodeSuccess, true, []string{"_http._tcp.web.baton. 1 IN SRV 0 10 8080 n2.baton."}, nil,
			[]string{"n2.baton. 1 IN A 10.0.0.12", "n2.baton. 1 IN AAAA fd00::12"}},
		{"_http._tcp.web.baton.", dns.TypeA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"_tcp.web.baton.", dns.TypeSRV, dns.RcodeSuccess, true, nil, []string{soaLine}, nil}, // empty non-terminal
		{"_http._udp.web.baton.", dns.TypeSRV, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		// SRV without node names: one record per address, at a name derived from it.
		{"_https._tcp.api.baton.", dns.TypeSRV, dns.RcodeSuccess, true, []string{
			"_https._tcp.api.baton. 1 IN SRV 0 10 443 10-0-0-11.api.baton.",
			"_https._tcp.api.baton. 1 IN SRV 0 10 443 10-0-0-12.api.baton."}, nil, []string{
			"10-0-0-11.api.baton. 1 IN A 10.0.0.11",
			"10-0-0-12.api.baton. 1 IN A 10.0.0.12"}},
		{"api6.baton.", dns.TypeSRV, dns.RcodeSuccess, true, []string{
			"api6.baton. 1 IN SRV 0 10 443 fd00-0000-0000-0000-0000-0000-0000-0011.api6.baton."}, nil, []string{
			"fd00-0000-0000-0000-0000-0000-0000-0011.api6.baton. 1 IN AAAA fd00::11"}},
		// The derived names resolve, but only to an address the name is served on now.
		{"10-0-0-12.api.baton.", dns.TypeA, dns.RcodeSuccess, true, []string{"10-0-0-12.api.baton. 1 IN A 10.0.0.12"}, nil, nil},
		{"10-0-0-12.api.baton.", dns.TypeAAAA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"fd00-0000-0000-0000-0000-0000-0000-0011.api6.baton.", dns.TypeAAAA, dns.RcodeSuccess, true,
			[]string{"fd00-0000-0000-0000-0000-0000-0000-0011.api6.baton. 1 IN AAAA fd00::11"}, nil, nil},
		{"10-0-0-13.api.baton.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		{"fd00--11.api6.baton.", dns.TypeAAAA, dns.RcodeNameError, true, nil, []string{soaLine}, nil}, // not the one spelling
		// No port, no SRV; and no service names under it.
		{"plain.baton.", dns.TypeSRV, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"_x._tcp.plain.baton.", dns.TypeSRV, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		// The apex.
		{"baton.", dns.TypeSOA, dns.RcodeSuccess, true, []string{soaLine}, nil, nil},
		{"BATON.", dns.TypeSOA, dns.RcodeSuccess, true, []string{soaLine}, nil, nil},
		{"baton.", dns.TypeNS, dns.RcodeSuccess, true, []string{nsLine}, nil,
			[]string{"ns.baton. 1 IN A 10.0.0.11", "ns.baton. 1 IN A 10.0.0.12"}},
		{"baton.", dns.TypeANY, dns.RcodeSuccess, true, []string{soaLine, nsLine}, nil, nil},
		{"baton.", dns.TypeA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		// A dotted key makes the names above it exist.
		{"eu.baton.", dns.TypeA, dns.RcodeSuccess, true, nil, []string{soaLine}, nil},
		{"web.eu.baton.", dns.TypeA, dns.RcodeSuccess, true, []string{"web.eu.baton. 1 IN A 10.1.0.1"}, nil, nil},
		// Unknown names in the zone.
		{"nope.baton.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		{"x.web.baton.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		{"u.eu.baton.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		{`we\.b.baton.`, dns.TypeA, dns.RcodeNameError, true, nil, []string{soaLine}, nil},
		// Outside the zone: refused, not authoritative.
		{"web.example.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{"xbaton.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{".", dns.TypeNS, dns.RcodeRefused, false, nil, nil, nil},
		{`web\.baton.`, dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		// Zone transfers: refused.
		{"baton.", dns.TypeAXFR, dns.RcodeRefused, false, nil, nil, nil},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/%s/%s", network, tc.name, dns.TypeToString[tc.qtype]), func(t *testing.T) {
				if tc.qtype == dns.TypeAXFR && network == "udp" {
					t.Skip("the client sends AXFR only over TCP")
				}
				q := query(tc.name, tc.qtype)
				r := ask(t, s, network, q)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Authoritative != tc.aa {
					t.Errorf("AA %v, want %v", r.Authoritative, tc.aa)
				}
				if r.Truncated || r.RecursionAvailable {
					t.Errorf("TC %v RA %v, want neither", r.Truncated, r.RecursionAvailable)
				}
				if !r.RecursionDesired {
					t.Error("RD not copied from the query")
				}
				if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
					t.Errorf("question %v, want %v", r.Question, q.Question)
				}
				for _, sec := range []struct {
					name      string
					got, want []string
				}{{"answer", lines(r.Answer), tc.ans}, {"authority", lines(r.Ns), tc.ns}, {"additional", lines(r.Extra), tc.extra}} {
					if !slices.Equal(sec.got, sec.want) {
						t.Errorf("%s:\n got %q\nwant %q", sec.name, sec.got, sec.want)
					}
				}
			})
		}
	}
}

func TestFailoverChangesAnswers(t *testing.T) {
	z := newZoneState(map[string]Record{"web": {Addrs: addrs("10.0.0.11"), Port: 80}})
	s := listen(t, z.snap)
	a := func() []string { return lines(ask(t, s, "udp", query("web.baton.", dns.TypeA)).Answer) }
	if got, want := a(), []string{"web.baton. 1 IN A 10.0.0.11"}; !slices.Equal(got, want) {
		t.Fatalf("before: %q, want %q", got, want)
	}
	target := "10-0-0-11.web.baton."
	if r := ask(t, s, "udp", query(target, dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("old target before: %v", r)
	}

	z.set(map[string]Record{"web": {Port: 80}}) // n1 lost it, nobody has it yet
	if r := ask(t, s, "udp", query("web.baton.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Fatalf("between owners: want NOERROR, no answer, SOA; got %v", r)
	}

	z.set(map[string]Record{"web": {Addrs: addrs("10.0.0.12"), Port: 80}})
	if got, want := a(), []string{"web.baton. 1 IN A 10.0.0.12"}; !slices.Equal(got, want) {
		t.Fatalf("after: %q, want %q", got, want)
	}
	if got, want := lines(ask(t, s, "tcp", query("_http._tcp.web.baton.", dns.TypeSRV)).Answer),
		[]string{"_http._tcp.web.baton. 1 IN SRV 0 10 80 10-0-0-12.web.baton."}; !slices.Equal(got, want) {
		t.Fatalf("SRV after: %q, want %q", got, want)
	}
	if r := ask(t, s, "udp", query(target, dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Fatalf("the old owner's target after failover: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
}

func TestTTL(t *testing.T) {
	s, err := New("HA.Example.COM", 30*time.Second, newZoneState(cluster()).snap, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{remote: udpClient}
	s.ServeDNS(w, query("web.ha.example.com.", dns.TypeSRV))
	w2 := &recorder{remote: udpClient}
	s.ServeDNS(w2, query("nope.ha.example.com.", dns.TypeA))
	rrs := append(append(w.msg.Answer, w.msg.Extra...), w2.msg.Ns...)
	if len(rrs) != 4 {
		t.Fatalf("got %d records, want SRV, A, AAAA, SOA: %v %v", len(rrs), w.msg, w2.msg)
	}
	for _, rr := range rrs {
		if rr.Header().Ttl != 30 {
			t.Errorf("TTL %d, want 30: %v", rr.Header().Ttl, rr)
		}
	}
	soa := w2.msg.Ns[0].(*dns.SOA)
	if soa.Minttl != 30 || soa.Hdr.Name != "ha.example.com." || soa.Ns != "ns.ha.example.com." {
		t.Errorf("SOA %v, want minimum 30 for zone ha.example.com.", soa)
	}
}

func TestNew(t *testing.T) {
	snap := func() map[string]Record { return nil }
	for _, tc := range []struct {
		zone    string
		ttl     time.Duration
		snap    Snapshot
		want    string // the zone, or the error
		wantTTL uint32
	}{
		{"", 0, snap, "baton.", 1},
		{"Baton", 5 * time.Second, snap, "baton.", 5},
		{"ha.example.com.", 0, snap, "ha.example.com.", 1},
		{".", 0, snap, `dns: zone "." is the root; use a zone of its own, such as "baton." or "ha.example.com."`, 0},
		{"a..b", 0, snap, `dns: zone "a..b." is not a domain name (e.g. baton. or ha.example.com.)`, 0},
		{"a b", 0, snap, `dns: zone "a b." is not a domain name (e.g. baton. or ha.example.com.)`, 0},
		{"", -time.Second, snap, "dns: ttl -1s is negative; use e.g. 1s", 0},
		{"", 1500 * time.Millisecond, snap, "dns: ttl 1.5s is not a whole number of seconds (DNS TTLs count seconds); use e.g. 1s", 0},
		{"", (1 << 31) * time.Second, snap, "dns: ttl 596523h14m8s is longer than DNS allows (2^31-1 seconds); use e.g. 1s", 0},
		{"", 0, nil, "dns: no snapshot function", 0},
	} {
		s, err := New(tc.zone, tc.ttl, tc.snap, nil)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			got = s.Zone()
			if s.ttl != tc.wantTTL {
				t.Errorf("New(%q, %v): ttl %d, want %d", tc.zone, tc.ttl, s.ttl, tc.wantTTL)
			}
		}
		if got != tc.want {
			t.Errorf("New(%q, %v):\n got %s\nwant %s", tc.zone, tc.ttl, got, tc.want)
		}
	}
}

func TestMalformedQueries(t *testing.T) {
	s := listen(t, newZoneState(cluster()).snap)
	twoQuestions := query("web.baton.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "api.baton.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	noQuestion := query("web.baton.", dns.TypeA)
	noQuestion.Question = nil
	twoOPT := query("web.baton.", dns.TypeA).SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	notify := query("baton.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := query("baton.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	chaos := query("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	anyClass := query("web.baton.", dns.TypeA)
	anyClass.Question[0].Qclass = dns.ClassANY
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		rcode int
	}{
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two OPT records", twoOPT, dns.RcodeFormatError},
		{"NOTIFY", notify, dns.RcodeNotImplemented},
		{"UPDATE", update, dns.RcodeNotImplemented},
		{"class CHAOS", chaos, dns.RcodeRefused},
		{"class ANY", anyClass, dns.RcodeSuccess},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				r := ask(t, s, network, tc.q)
				if r.Rcode != tc.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Opcode != tc.q.Opcode {
					t.Errorf("opcode %d, want %d", r.Opcode, tc.q.Opcode)
				}
			})
		}
	}

	t.Run("garbage after the header", func(t *testing.T) {
		c, err := net.Dial("udp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wire, _ := query("web.baton.", dns.TypeA).Pack()
		wire = wire[:len(wire)-3] // cut into the question
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var r dns.Msg
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
		}
	})

	t.Run("a response is not answered", func(t *testing.T) {
		r := query("web.baton.", dns.TypeA)
		r.Response = true
		c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
		if _, _, err := c.Exchange(r, s.Addr().String()); err == nil {
			t.Error("got an answer to a response")
		}
	})
}

func TestEDNS(t *testing.T) {
	s := listen(t, newZoneState(cluster()).snap)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := ask(t, s, network, query("web.baton.", dns.TypeA).SetEdns0(4096, true))
			opt := r.IsEdns0()
			if opt == nil {
				t.Fatal("no OPT record in the response")
			}
			if opt.UDPSize() != maxUDPSize || !opt.Do() || opt.Version() != 0 {
				t.Errorf("OPT %v: want size %d, DO, version 0", opt, maxUDPSize)
			}
			if len(r.Answer) != 1 {
				t.Errorf("answer %v", r.Answer)
			}

			r = ask(t, s, network, query("web.baton.", dns.TypeA).SetEdns0(1232, false))
			if opt := r.IsEdns0(); opt == nil || opt.Do() {
				t.Errorf("OPT %v: want one without DO", opt)
			}

			if r = ask(t, s, network, query("web.baton.", dns.TypeA)); r.IsEdns0() != nil {
				t.Error("OPT record in the response to a query without one")
			}

			q := query("web.baton.", dns.TypeA).SetEdns0(1232, false)
			q.IsEdns0().SetVersion(1)
			r = ask(t, s, network, q)
			if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
				t.Errorf("EDNS version 1: got %v, want BADVERS with an OPT of version 0", r)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	var many []netip.Addr
	for i := range 200 {
		many = append(many, netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}))
	}
	s := listen(t, newZoneState(map[string]Record{"big": {Addrs: many, Port: 80}}).snap)
	for _, tc := range []struct {
		name    string
		network string
		edns    uint16
		qtype   uint16
		tc      bool
		max     int
	}{
		{"udp", "udp", 0, dns.TypeA, true, dns.MinMsgSize},
		{"udp edns 4096", "udp", 4096, dns.TypeA, true, maxUDPSize},
		{"udp edns 100", "udp", 100, dns.TypeA, true, dns.MinMsgSize},
		{"udp srv", "udp", 0, dns.TypeSRV, true, dns.MinMsgSize},
		{"tcp", "tcp", 0, dns.TypeA, false, dns.MaxMsgSize},
		{"tcp srv", "tcp", 0, dns.TypeSRV, false, dns.MaxMsgSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := query("big.baton.", tc.qtype)
			if tc.edns > 0 {
				q.SetEdns0(tc.edns, false)
			}
			c := &dns.Client{Net: tc.network, Timeout: 2 * time.Second, UDPSize: dns.MaxMsgSize}
			r, _, err := c.Exchange(q, s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			r.Compress = true // as sent
			wire, _ := r.Pack()
			if r.Truncated != tc.tc || len(wire) > tc.max {
				t.Errorf("TC %v, %d bytes, %d answers; want TC %v and at most %d bytes", r.Truncated, len(wire), len(r.Answer), tc.tc, tc.max)
			}
			if !tc.tc && len(r.Answer) != 200 {
				t.Errorf("%d answers, want all 200", len(r.Answer))
			}
			if tc.edns > 0 && r.IsEdns0() == nil {
				t.Error("truncation dropped the OPT record")
			}
		})
	}
}

func TestOnQuery(t *testing.T) {
	s, err := New("", 0, newZoneState(cluster()).snap, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	counts := map[int]int{}
	s.OnQuery = func(rcode int, took time.Duration) {
		if took <= 0 || took > time.Second {
			t.Errorf("took %v", took)
		}
		mu.Lock()
		counts[rcode]++
		mu.Unlock()
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ask(t, s, "udp", query("web.baton.", dns.TypeA))
	ask(t, s, "tcp", query("web.baton.", dns.TypeA))
	ask(t, s, "udp", query("nope.baton.", dns.TypeA))
	ask(t, s, "udp", query("web.example.", dns.TypeA))
	two := query("web.baton.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	ask(t, s, "udp", two)
	// OnQuery runs once the answer has gone to the socket, so the client may
	// have it a moment before the count moves.
	want := map[int]int{dns.RcodeSuccess: 2, dns.RcodeNameError: 1, dns.RcodeRefused: 1, dns.RcodeFormatError: 1}
	testkit.WaitForState(t, 5*time.Second, fmt.Sprintf("the counts to reach %v", want), func() (bool, string) {
		mu.Lock()
		got := fmt.Sprint(counts)
		mu.Unlock()
		return got == fmt.Sprint(want), "counts " + got
	})
}

func TestSnapshotPanicIsServfail(t *testing.T) {
	var boom atomic.Bool
	z := newZoneState(cluster())
	s := listen(t, func() map[string]Record {
		if boom.Load() {
			panic("replica torn")
		}
		return z.snap()
	})
	boom.Store(true)
	if r := ask(t, s, "udp", query("web.baton.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	boom.Store(false)
	if r := ask(t, s, "tcp", query("web.baton.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after the panic: %v", r)
	}
}

func TestBadRecords(t *testing.T) {
	// The agent should not produce these, but a bad record must not break the zone.
	z := newZoneState(map[string]Record{
		"odd": {Addrs: []netip.Addr{{}, netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("fe80::1%eth0")}, Port: 70000},
		"tgt": {Addrs: addrs("10.0.0.1"), Port: 80, Targets: []Target{{Node: "", Addr: netip.MustParseAddr("10.0.0.1")},
			{Node: "a b", Addr: netip.MustParseAddr("10.0.0.1")}, {Node: "N1", Addr: netip.MustParseAddr("10.0.0.1")}, {Node: "n1"}}},
	})
	s := listen(t, z.snap)
	if got, want := lines(ask(t, s, "udp", query("odd.baton.", dns.TypeA)).Answer), []string{"odd.baton. 1 IN A 10.0.0.1"}; !slices.Equal(got, want) {
		t.Errorf("A: %q, want %q", got, want)
	}
	if got, want := lines(ask(t, s, "udp", query("odd.baton.", dns.TypeAAAA)).Answer), []string{"odd.baton. 1 IN AAAA fe80::1"}; !slices.Equal(got, want) {
		t.Errorf("AAAA: %q, want %q", got, want)
	}
	if r := ask(t, s, "udp", query("odd.baton.", dns.TypeSRV)); len(r.Answer) != 0 {
		t.Errorf("SRV with port 70000: %v", r.Answer)
	}
	r := ask(t, s, "udp", query("tgt.baton.", dns.TypeSRV))
	if got, want := lines(r.Answer), []string{"tgt.baton. 1 IN SRV 0 10 80 n1.baton."}; !slices.Equal(got, want) {
		t.Errorf("SRV: %q, want %q", got, want)
	}
	if got, want := lines(r.Extra), []string{"n1.baton. 1 IN A 10.0.0.1"}; !slices.Equal(got, want) {
		t.Errorf("glue: %q, want %q", got, want)
	}
}

func TestAddrLabel(t *testing.T) {
	for _, a := range addrs("10.0.0.5", "0.0.0.0", "255.255.255.255", "fd00::5", "::", "::1", "2001:db8:1:2:3:4:5:6") {
		l := addrLabel(a)
		if b, ok := parseAddrLabel(l); !ok || b != a {
			t.Errorf("%s → %q → %s, %v", a, l, b, ok)
		}
		if _, ok := dns.IsDomainName(l + ".baton."); !ok || strings.HasPrefix(l, "-") || len(l) > 63 {
			t.Errorf("%s → %q: not a good label", a, l)
		}
	}
	for _, l := range []string{"10-0-0-05", "10-0-0", "fd00--5", "FD00-0000-0000-0000-0000-0000-0000-0005", "a-b-c-d", "web", "1-2-3-4-5"} {
		if a, ok := parseAddrLabel(l); ok {
			t.Errorf("parseAddrLabel(%q) = %s, want none", l, a)
		}
	}
}

func TestListen(t *testing.T) {
	snap := newZoneState(cluster()).snap
	s := listen(t, snap)
	busy := s.Addr().String()

	t.Run("port in use", func(t *testing.T) {
		s2, _ := New("", 0, snap, testLog(t))
		err := s2.Listen(busy)
		if err == nil {
			s2.Close()
			t.Fatal("listening twice on one port worked")
		}
		if want := "dns: listen udp " + busy + ": the port is in use"; !strings.HasPrefix(err.Error(), want) ||
			!strings.Contains(err.Error(), "dns.listen") || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("error %q, want it to start %q, name dns.listen and wrap EADDRINUSE", err, want)
		}
		if err := s2.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Run("TCP port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		s2, _ := New("", 0, snap, testLog(t))
		addr := l.Addr().String()
		err = s2.Listen(addr)
		if want := "dns: listen tcp " + addr + ": the port is in use"; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %v, want it to start %q", err, want)
		}
		// The UDP socket it opened first is closed again.
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Errorf("UDP port left bound: %v", err)
		} else {
			pc.Close()
		}
	})
	t.Run("not host:port", func(t *testing.T) {
		s2, _ := New("", 0, snap, testLog(t))
		err := s2.Listen("127.0.0.1")
		if want := `dns: listen address "127.0.0.1": address 127.0.0.1: missing port in address; use host:port, e.g. 127.0.0.1:53 or [::]:53`; err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("not an address here", func(t *testing.T) {
		s2, _ := New("", 0, snap, testLog(t))
		err := s2.Listen("192.0.2.1:0") // TEST-NET-1, on no interface
		if err == nil || !strings.Contains(err.Error(), "the address is not on this host") {
			t.Errorf("error %v, want it to say the address is not on this host", err)
		}
	})
	t.Run("twice", func(t *testing.T) {
		err := s.Listen("127.0.0.1:0")
		if want := "dns: listen 127.0.0.1:0: already listening on " + busy; err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("after close", func(t *testing.T) {
		s2, _ := New("", 0, snap, testLog(t))
		if err := s2.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if err := s2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := s2.Listen("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "the server is closed") {
			t.Errorf("Listen after Close: %v", err)
		}
	})
	t.Run("IPv6 loopback", func(t *testing.T) {
		s2, _ := New("", 0, snap, testLog(t))
		if err := s2.Listen("[::1]:0"); err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		defer s2.Close()
		for _, network := range []string{"udp", "tcp"} {
			if r := ask(t, s2, network, query("web.baton.", dns.TypeAAAA)); len(r.Answer) != 1 {
				t.Errorf("%s: %v", network, r)
			}
		}
	})
}

// TestCloseWithOpenTCPConnection: a client that keeps its TCP connection open does not hold Close up.
func TestCloseWithOpenTCPConnection(t *testing.T) {
	s, _ := New("", 0, newZoneState(cluster()).snap, testLog(t))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	conn, err := c.Dial(s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, _, err := c.ExchangeWithConn(query("web.baton.", dns.TypeA), conn); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with an idle TCP client", d)
	}
}

// TestConcurrentQueriesDuringFailovers runs with -race: queries over both transports while the zone flips.
func TestConcurrentQueriesDuringFailovers(t *testing.T) {
	a := map[string]Record{"web": {Addrs: addrs("10.0.0.11"), Port: 80}}
	b := map[string]Record{"web": {Addrs: addrs("10.0.0.12"), Port: 80}}
	z := newZoneState(a)
	s := listen(t, z.snap)
	var answered atomic.Int64
	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				z.set(b)
			} else {
				z.set(a)
			}
		}
	})
	var clients sync.WaitGroup
	for i := range 8 {
		clients.Go(func() {
			network := []string{"udp", "tcp"}[i%2]
			c := &dns.Client{Net: network, Timeout: 2 * time.Second}
			for range 100 {
				r, _, err := c.Exchange(query("web.baton.", dns.TypeA), s.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				if len(r.Answer) != 1 {
					t.Errorf("answer %v", r.Answer)
					return
				}
				if got := r.Answer[0].(*dns.A).A.String(); got != "10.0.0.11" && got != "10.0.0.12" {
					t.Errorf("answer %s", got)
				}
				answered.Add(1)
			}
		})
	}
	clients.Wait()
	close(stop)
	flips.Wait()
	if n := answered.Load(); n != 800 {
		t.Errorf("%d answers, want 800", n)
	}
}
