package dns

import (
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkServeDNS measures the handler alone (no sockets): lookup, building the answer, truncation check and
// packing, for the common queries.
func BenchmarkServeDNS(b *testing.B) {
	zone := cluster()
	s, err := New("", 0, func() map[string]Record { return zone }, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		q    *dns.Msg
	}{
		{"A", query("web.baton.", dns.TypeA)},
		{"SRV", query("_http._tcp.api.baton.", dns.TypeSRV)},
		{"NXDOMAIN", query("nope.baton.", dns.TypeA)},
		{"REFUSED", query("web.example.", dns.TypeA)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := &recorder{remote: udpClient}
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(w, bc.q)
			}
		})
	}
}
