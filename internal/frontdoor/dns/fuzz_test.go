package dns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw messages through the library's decoder and ServeDNS: neither may panic, ServeDNS writes
// exactly one response, and that response packs, unpacks again and fits a UDP client's buffer.
func FuzzServeDNS(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	for _, name := range []string{"web.baton.", "_http._tcp.web.baton.", "10-0-0-11.api.baton.", "baton.", "eu.baton.",
		"nope.baton.", "web.example.", "BIG.baton.", `w\.eb.baton.`} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeSOA, dns.TypeNS} {
			seed(query(name, qt))
		}
	}
	seed(query("big.baton.", dns.TypeA).SetEdns0(4096, true))
	two := query("web.baton.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	seed(two)
	f.Add([]byte{}, false)
	f.Add(make([]byte, 12), false)

	zone := cluster()
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.AddrFrom4([4]byte{10, 2, 0, byte(i + 1)}))
	}
	zone["big"] = Record{Addrs: many, Port: 80}
	s, err := New("", 0, func() map[string]Record { return zone }, nil)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		var r dns.Msg
		if err := r.Unpack(wire); err != nil {
			return // the server answers these itself (FORMERR) or drops them
		}
		w := &recorder{remote: udpClient}
		if tcp {
			w.remote = tcpClient
		}
		s.ServeDNS(w, &r)
		if w.writes != 1 {
			t.Fatalf("%d writes, want 1", w.writes)
		}
		if w.wire == nil {
			t.Fatalf("response does not pack: %v", w.msg)
		}
		if !tcp {
			limit := dns.MinMsgSize
			if r.IsEdns0() != nil {
				limit = maxUDPSize
			}
			if len(w.wire) > limit {
				t.Fatalf("%d-byte UDP response, limit %d", len(w.wire), limit)
			}
		}
		var back dns.Msg
		if err := back.Unpack(w.wire); err != nil {
			t.Fatalf("response does not unpack: %v\n%v", err, w.msg)
		}
		if back.Id != r.Id || !back.Response {
			t.Fatalf("response id %d QR %v for query id %d", back.Id, back.Response, r.Id)
		}
	})
}
