package dns

import (
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// zoneState is a Snapshot the test can swap, as the agent's replica does at failover.
type zoneState struct {
	p atomic.Pointer[map[string]Record]
}

func newZoneState(m map[string]Record) *zoneState {
	z := &zoneState{}
	z.set(m)
	return z
}

func (z *zoneState) set(m map[string]Record) { z.p.Store(&m) }
func (z *zoneState) snap() map[string]Record { return *z.p.Load() }

// listen returns a Server for zone baton. with a 1 s TTL, listening on a free loopback port until the test ends.
func listen(t testing.TB, snap Snapshot) *Server {
	t.Helper()
	s, err := New("", 0, snap, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// ask sends q to s over network ("udp" or "tcp") and returns the response.
func ask(t testing.TB, s *Server, network string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, s.Addr().String())
	if err != nil {
		t.Fatalf("%s %v: %v", network, q.Question, err)
	}
	if r.Id != q.Id {
		t.Fatalf("response id %d for query id %d", r.Id, q.Id)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	return new(dns.Msg).SetQuestion(name, qtype)
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// recorder is a dns.ResponseWriter that keeps what is written to it.
type recorder struct {
	remote net.Addr
	msg    *dns.Msg
	wire   []byte
	writes int
}

func (w *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *recorder) RemoteAddr() net.Addr { return w.remote }
func (w *recorder) WriteMsg(m *dns.Msg) error {
	w.writes++
	w.msg = m
	var err error
	w.wire, err = m.Pack()
	return err
}
func (w *recorder) Write(b []byte) (int, error) { w.writes++; w.wire = b; return len(b), nil }
func (w *recorder) Close() error                { return nil }
func (w *recorder) TsigStatus() error           { return nil }
func (w *recorder) TsigTimersOnly(bool)         {}
func (w *recorder) Hijack()                     {}

var (
	udpClient = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	tcpClient = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)
