package udp

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuf is a log sink safe for the reader goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// trio starts three transports on 127.0.0.1-3 (one port, as a cluster uses).
func trio(t *testing.T) (map[string]*UDP, *cluster.Codec, map[string]*syncBuf) {
	t.Helper()
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close()
	peers := map[string]string{}
	for i, n := range []string{"n1", "n2", "n3"} {
		peers[n] = "127.0.0." + string(rune('1'+i)) + ":" + port
	}
	codec := cluster.NewCodec([]byte("0123456789abcdef0123456789abcdef"), "prod")
	us, logs := map[string]*UDP{}, map[string]*syncBuf{}
	for n, addr := range peers {
		logs[n] = &syncBuf{}
		u, err := Listen(addr, n, 1, peers, codec, slog.New(slog.NewTextHandler(logs[n], nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			u.Close()
			for range u.In() { // drain until the reader exits
			}
		})
		us[n] = u
	}
	return us, codec, logs
}

func recv(t *testing.T, u *UDP) Inbound {
	t.Helper()
	select {
	case in := <-u.In():
		return in
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
		return Inbound{}
	}
}

// TestSendManySplitsAndDelivers: one heartbeat of 300 groups goes to both
// peers in several packets, each delivered as a message of its own, which
// together carry every claim.
func TestSendManySplitsAndDelivers(t *testing.T) {
	us, _, _ := trio(t)
	m := &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: 7}
	for i := range 300 {
		m.Claims = append(m.Claims, cluster.Claim{Group: strings.Repeat("g", 40) + string(rune('a'+i%26)), Epoch: uint64(i + 1)})
	}
	if err := us["n1"].SendMany([]string{"n2", "n3"}, m); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"n2", "n3"} {
		var claims int
		for claims < 300 {
			in := recv(t, us[to])
			if in.From != "n1" || in.Msg.SentAt != 7 {
				t.Fatalf("%s got %+v", to, in)
			}
			claims += len(in.Msg.Claims)
		}
		if claims != 300 {
			t.Fatalf("%s got %d claims, want 300", to, claims)
		}
	}
	if sent := us["n1"].Stats.Sent.Load(); sent < 2*5 {
		t.Fatalf("n1 sent %d packets for two peers: expected the heartbeat split", sent)
	}
}

// TestReplayToAnotherReceiverRejected: a heartbeat captured on its way to n2
// and replayed to n3 (from n1's own address, so nothing but the receiver
// binding can tell) is refused by n3, counted, and logged once however
// often it is replayed.
func TestReplayToAnotherReceiverRejected(t *testing.T) {
	us, codec, logs := trio(t)
	s, err := codec.Seal("n1", 1, func(int) uint64 { return 1000 }, &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: 1})
	if err != nil {
		t.Fatal(err)
	}
	captured, _ := s.For(0, "n2")
	captured = bytes.Clone(captured)
	for range 5 {
		if _, err := us["n1"].conn.WriteToUDPAddrPort(captured, us["n1"].peers["n3"]); err != nil {
			t.Fatal(err)
		}
	}
	// A genuine heartbeat to n3 afterwards still arrives: only the replay
	// is refused.
	if err := us["n1"].Send("n3", &cluster.Message{Kind: cluster.KindHeartbeat, SentAt: 2}); err != nil {
		t.Fatal(err)
	}
	if in := recv(t, us["n3"]); in.Msg.SentAt != 2 {
		t.Fatalf("n3 accepted %+v: the heartbeat addressed to n2", in)
	}
	testkit.WaitFor(t, 5*time.Second, "n3 counting 5 misdirected packets", func() bool {
		return us["n3"].Stats.RejectedMisdirected.Load() == 5
	})
	if got := strings.Count(logs["n3"].String(), "addressed to another node"); got != 1 {
		t.Fatalf("n3 logged the replay %d times, want once (rate-limited):\n%s", got, logs["n3"])
	}
	if !strings.Contains(logs["n3"].String(), "addressed_to=n2") {
		t.Fatalf("the log does not name the intended receiver:\n%s", logs["n3"])
	}
	// The captured packet still works where it was going: n2 accepts it.
	if _, err := us["n1"].conn.WriteToUDPAddrPort(captured, us["n1"].peers["n2"]); err != nil {
		t.Fatal(err)
	}
	if in := recv(t, us["n2"]); in.From != "n1" || in.Msg.SentAt != 1 {
		t.Fatalf("n2 got %+v", in)
	}
}

// TestOtherProtocolVersionRefused: packets of another protocol version (here
// the JSON version 1 and a future 3) are refused, counted, logged once with
// the fix, and the version shows for the peer (status reads it).
func TestOtherProtocolVersionRefused(t *testing.T) {
	us, _, logs := trio(t)
	for _, pkt := range [][]byte{[]byte("BTN1" + strings.Repeat("x", 80)), []byte("BTN\x03" + strings.Repeat("x", 80))} {
		if _, err := us["n1"].conn.WriteToUDPAddrPort(pkt, us["n1"].peers["n2"]); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "n2 refusing 2 packets of other versions", func() bool {
		return us["n2"].Stats.RejectedVersion.Load() == 2
	})
	if v := us["n2"].VersionFrom("n1"); v != 3 {
		t.Fatalf("VersionFrom(n1) = %d, want 3 (the last refused)", v)
	}
	if v := us["n2"].VersionFrom("n3"); v != 0 {
		t.Fatalf("VersionFrom(n3) = %d, want 0", v)
	}
	out := logs["n2"].String()
	if strings.Count(out, "speaks another protocol version") != 1 || !strings.Contains(out, "its_version=1") ||
		!strings.Contains(out, "run the same baton release on every node") {
		t.Fatalf("want one log line with the version and the fix:\n%s", out)
	}
}
