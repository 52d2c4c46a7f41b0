package cluster

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sample() *Message {
	return &Message{Kind: KindHeartbeat, SentAt: 12345, Claims: []Claim{{Group: "web", Epoch: 7}},
		Released: []Claim{{Group: "db", Epoch: 3}}, Groups: []GroupStatus{{Group: "web", Healthy: true, Eligible: true, Role: "active"}},
		RaftRole: "leader", Applied: 42}
}

func TestSealOpenRoundTrip(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	pkt, err := c.Seal("n1", 9, 10, sample())
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Open(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if env.From != "n1" || env.Incarnation != 9 || env.Seq != 10 || !reflect.DeepEqual(&env.Msg, sample()) {
		t.Fatalf("round trip = %+v", env)
	}
}

func TestOpenRejects(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	good, _ := c.Seal("n1", 1, 1, sample())
	flipped := bytes.Clone(good)
	flipped[30] ^= 1
	otherSecret, _ := NewCodec([]byte("another-secret-xyz"), "prod").Seal("n1", 1, 1, sample())
	otherCluster, _ := NewCodec([]byte("0123456789abcdef"), "staging").Seal("n1", 1, 1, sample())
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:20], ErrShort},
		{"too large", make([]byte, MaxPacket+1), ErrTooLarge},
		{"bad magic", append([]byte("XXXX"), good[4:]...), ErrMagic},
		{"bit flip", flipped, ErrAuth},
		{"truncated tag", good[:len(good)-1], ErrAuth},
		{"wrong secret", otherSecret, ErrAuth},
		{"other cluster", otherCluster, ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Open(tc.pkt); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReplayGuard(t *testing.T) {
	g := NewReplayGuard()
	steps := []struct {
		from     string
		inc, seq uint64
		want     bool
	}{
		{"n1", 5, 10, true},
		{"n1", 5, 10, false}, // replay
		{"n1", 5, 11, true},
		{"n1", 5, 9, true},  // reordered, inside the window
		{"n1", 5, 9, false}, // and not twice
		{"n2", 1, 10, true}, // senders are independent
		{"n1", 5, 200, true},
		{"n1", 5, 100, false}, // older than the window
		{"n1", 4, 500, false}, // previous incarnation
		{"n1", 6, 1, true},    // restarted sender
		{"n1", 5, 201, false},
	}
	for i, s := range steps {
		if got := g.Accept(s.from, s.inc, s.seq); got != s.want {
			t.Fatalf("step %d Accept(%s, %d, %d) = %v, want %v", i, s.from, s.inc, s.seq, got, s.want)
		}
	}
}

// FuzzOpen: arbitrary datagrams never crash the decoder, and whatever it
// accepts re-encodes to an equal message (parse → encode → parse).
func FuzzOpen(f *testing.F) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	good, _ := c.Seal("n1", 1, 2, sample())
	f.Add(good)
	f.Add([]byte("BTN1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		env, err := c.Open(pkt)
		if err != nil {
			return
		}
		again, err := c.Seal(env.From, env.Incarnation, env.Seq, &env.Msg)
		if err != nil {
			return // e.g. a name longer than a packet allows
		}
		env2, err := c.Open(again)
		if err != nil || !reflect.DeepEqual(env, env2) {
			t.Fatalf("re-encoded packet differs: %v\n%+v\n%+v", err, env, env2)
		}
	})
}

// FuzzOpenAuthenticated fuzzes the body behind a valid tag, which is what a
// node holding the secret (or a bug) could send.
func FuzzOpenAuthenticated(f *testing.F) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	f.Add("n1", []byte(`{"k":"hb","c":[{"g":"web","e":1}]}`))
	f.Add("n2", []byte(`{"k":"ack","a":null}`))
	f.Add("x", []byte(`[`))
	f.Fuzz(func(t *testing.T, from string, body []byte) {
		if len(from) == 0 || len(from) > 255 {
			return
		}
		raw := []byte(magic)
		raw = append(raw, make([]byte, 16)...)
		raw = append(raw, byte(len(from)))
		raw = append(raw, from...)
		raw = append(raw, body...)
		mac := newMAC(c)
		mac.Write(raw)
		pkt := mac.Sum(raw)
		_, _ = c.Open(pkt) // must not panic
	})
}
