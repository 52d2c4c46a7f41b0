package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func sample() *Message {
	return &Message{Kind: KindHeartbeat, SentAt: 12345, Claims: []Claim{{Group: "web", Epoch: 7}},
		Released: []Claim{{Group: "db", Epoch: 3}}, Groups: []GroupStatus{{Group: "web", Healthy: true, Eligible: true, Role: "active"}},
		RaftRole: "leader", Applied: 42}
}

// full sets every field of every message type, so a field the encoder or
// decoder forgets fails the round trip.
func full() []*Message {
	hb := &Message{Kind: KindHeartbeat, SentAt: 1<<62 + 5, Echo: -3,
		Claims: []Claim{{Group: "web", Epoch: 7, LapsedMs: 3}, {Group: "db", Epoch: 1 << 40}}, Acked: []Claim{{Group: "x", Epoch: 1}},
		Released: []Claim{{Group: "db", Epoch: 3}}, Relinquished: []Claim{{Group: "web", Epoch: 6, LapsedMs: 412}}, RelinquishReason: "switchover",
		Groups: []GroupStatus{{Group: "web", Healthy: true, Eligible: true, Role: "active", Epoch: 9, TakeoverMs: -1,
			DB: "primary", Pos: 1 << 50, Sync: []string{"n2", "", "n3"}, SyncSet: true, SyncSeq: 4, Div: 77, DivEpoch: 8, Unrelated: true}},
		Owners:  []Owner{{Group: "web", Node: "n1", Epoch: 9, Prev: "n2", HandoffTo: "n3", HandoffReason: "failback", Reason: "failure"}},
		Leaving: true, RaftRole: "candidate", Applied: 99, Fresh: true, ConfigHash: 0xfeedface12345678}
	ack := &Message{Kind: KindAck, Echo: 1 << 61, Acked: []Claim{{Group: "web", Epoch: 7}}}
	return []*Message{hb, ack, sample(), {Kind: KindHeartbeat}}
}

func TestEncodeRoundTripEveryField(t *testing.T) {
	for i, m := range full() {
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !reflect.DeepEqual(&got, m) {
			t.Fatalf("message %d round trip:\n got %+v\nwant %+v", i, got, *m)
		}
	}
	// Every field of every struct is set in full()[0]: a new field must be
	// added there too (and to the encoder and decoder).
	for _, v := range []any{full()[0], &full()[0].Groups[0], &full()[0].Owners[0], &full()[0].Claims[0]} {
		rv := reflect.ValueOf(v).Elem()
		for i := range rv.NumField() {
			if rv.Field(i).IsZero() {
				t.Errorf("%s.%s is not set in full(): set it so the round trip covers it", rv.Type().Name(), rv.Type().Field(i).Name)
			}
		}
	}
}

func TestEncodingIsCompact(t *testing.T) {
	m := full()[0]
	b, _ := Encode(m)
	j, _ := json.Marshal(m)
	if len(b)*2 > len(j) {
		t.Fatalf("binary body %d bytes, JSON %d: want at most half", len(b), len(j))
	}
}

func TestDecodeSkipsUnknownFields(t *testing.T) {
	b, _ := Encode(sample())
	b = binary.AppendUvarint(b, 99<<3|wtVarint)
	b = binary.AppendUvarint(b, 12345)
	b = binary.AppendUvarint(b, 100<<3|wtBytes)
	b = binary.AppendUvarint(b, 3)
	b = append(b, "abc"...)
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(&got, sample()) {
		t.Fatalf("Decode with unknown fields = %+v, %v", got, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(sample())
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"no kind", []byte{byte(fApplied<<3 | wtVarint), 1}},
		{"unknown kind", []byte{byte(fKind<<3 | wtVarint), 9}},
		{"truncated", good[:len(good)-1]},
		{"wrong wire type", []byte{byte(fKind<<3 | wtBytes), 1, 1}},
		{"bad wire type", append(bytes.Clone(good), byte(15<<3|5), 0)},
		{"field zero", append(bytes.Clone(good), 0, 1)},
		{"overlong length", append(bytes.Clone(good), byte(fRaftRole<<3|wtBytes), 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.body); !errors.Is(err, ErrBody) {
				t.Fatalf("Decode = %v, want ErrBody", err)
			}
		})
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	for _, m := range full() {
		pkt, err := c.SealOne("n1", "n2", 9, 10, m)
		if err != nil {
			t.Fatal(err)
		}
		env, err := c.Open(pkt, "n2")
		if err != nil {
			t.Fatal(err)
		}
		if env.From != "n1" || env.To != "n2" || env.Incarnation != 9 || env.Seq != 10 || !reflect.DeepEqual(&env.Msg, m) {
			t.Fatalf("round trip = %+v", env)
		}
	}
}

// bigHeartbeat is a heartbeat about n groups, with every list full.
func bigHeartbeat(n int) *Message {
	m := &Message{Kind: KindHeartbeat, SentAt: 5, RaftRole: "follower", Applied: 1000, RelinquishReason: "shutdown", Leaving: true}
	for i := range n {
		g := fmt.Sprintf("group-with-a-longish-name-%04d", i)
		m.Claims = append(m.Claims, Claim{Group: g, Epoch: uint64(i)})
		m.Released = append(m.Released, Claim{Group: g, Epoch: 3})
		m.Relinquished = append(m.Relinquished, Claim{Group: g, Epoch: 2})
		m.Groups = append(m.Groups, GroupStatus{Group: g, Healthy: true, Eligible: i%2 == 0, Role: "standby"})
		m.Owners = append(m.Owners, Owner{Group: g, Node: "node-1", Epoch: uint64(i), Prev: "node-2"})
	}
	return m
}

// TestSplitCarriesEverything: a heartbeat far beyond one packet goes out in
// parts within MaxPacket, each a complete heartbeat with the sender's
// scalars and consecutive sequence numbers, which together hold every entry
// in order.
func TestSplitCarriesEverything(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	m := bigHeartbeat(300)
	next := uint64(100)
	s, err := c.Seal("node-1", 7, func(n int) uint64 { first := next; next += uint64(n); return first }, m)
	if err != nil {
		t.Fatal(err)
	}
	if s.Parts() < 10 {
		t.Fatalf("300 groups in %d parts: expected a split", s.Parts())
	}
	if next != 100+uint64(s.Parts()) {
		t.Fatalf("reserved %d sequence numbers for %d parts", next-100, s.Parts())
	}
	var merged Message
	for i := range s.Parts() {
		pkt, err := s.For(i, "n2")
		if err != nil {
			t.Fatal(err)
		}
		if len(pkt) > MaxPacket {
			t.Fatalf("part %d is %d bytes, over %d", i, len(pkt), MaxPacket)
		}
		env, err := c.Open(pkt, "n2")
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		p := env.Msg
		if env.Seq != 100+uint64(i) || p.Kind != m.Kind || p.SentAt != m.SentAt || p.RaftRole != m.RaftRole ||
			p.Applied != m.Applied || p.RelinquishReason != m.RelinquishReason || p.Leaving != m.Leaving {
			t.Fatalf("part %d lacks the sender's scalars: %+v seq %d", i, p, env.Seq)
		}
		if len(p.Claims)+len(p.Released)+len(p.Relinquished)+len(p.Groups)+len(p.Owners) == 0 {
			t.Fatalf("part %d carries no entry", i)
		}
		merged.Claims = append(merged.Claims, p.Claims...)
		merged.Released = append(merged.Released, p.Released...)
		merged.Relinquished = append(merged.Relinquished, p.Relinquished...)
		merged.Groups = append(merged.Groups, p.Groups...)
		merged.Owners = append(merged.Owners, p.Owners...)
	}
	if !reflect.DeepEqual(merged.Claims, m.Claims) || !reflect.DeepEqual(merged.Released, m.Released) ||
		!reflect.DeepEqual(merged.Relinquished, m.Relinquished) || !reflect.DeepEqual(merged.Groups, m.Groups) ||
		!reflect.DeepEqual(merged.Owners, m.Owners) {
		t.Fatal("the parts together do not hold every entry of the message in order")
	}
	bytes, packets, err := PacketSize("node-1", m)
	if err != nil || packets != s.Parts() || bytes < packets*headerLen {
		t.Fatalf("PacketSize = %d, %d, %v; Seal made %d parts", bytes, packets, err, s.Parts())
	}
}

func TestSealRefusesBeyondMaxParts(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	_, err := c.Seal("n1", 1, func(int) uint64 { return 1 }, bigHeartbeat(2000))
	if err == nil {
		t.Fatal("a heartbeat of 2000 groups with every list full was sealed")
	}
}

func TestOpenRejects(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	good, _ := c.SealOne("n1", "n2", 1, 1, sample())
	flipped := bytes.Clone(good)
	flipped[30] ^= 1
	otherSecret, _ := NewCodec([]byte("another-secret-xyz"), "prod").SealOne("n1", "n2", 1, 1, sample())
	otherCluster, _ := NewCodec([]byte("0123456789abcdef"), "staging").SealOne("n1", "n2", 1, 1, sample())
	v1 := append([]byte("BTN1"), good[4:]...)
	v3 := bytes.Clone(good)
	v3[3] = 3
	badToLen := bytes.Clone(good)
	badToLen[len(badToLen)-tagLen-1] = 200
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"short", good[:20], ErrShort},
		{"too large", make([]byte, MaxPacket+1), ErrTooLarge},
		{"bad magic", append([]byte("XXXX"), good[4:]...), ErrMagic},
		{"version 1 (JSON)", v1, ErrVersion},
		{"version 3", v3, ErrVersion},
		{"bit flip", flipped, ErrAuth},
		{"truncated tag", good[:len(good)-1], ErrAuth},
		{"receiver length", badToLen, ErrAuth},
		{"wrong secret", otherSecret, ErrAuth},
		{"other cluster", otherCluster, ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Open(tc.pkt, "n2"); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
	var verr *VersionError
	if _, err := c.Open(v1, "n2"); !errors.As(err, &verr) || verr.Version != 1 {
		t.Fatalf("version 1 packet: %v, want a VersionError for version 1", err)
	}
}

// TestReceiverBound: a heartbeat captured on its way to n2 and replayed to
// n3 is refused by n3 as misdirected, although its tag is genuine; a packet
// whose receiver name was rewritten to n3 fails authentication.
func TestReceiverBound(t *testing.T) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	s, err := c.Seal("n1", 1, func(int) uint64 { return 1 }, sample())
	if err != nil {
		t.Fatal(err)
	}
	to2, _ := s.For(0, "n2")
	to2 = bytes.Clone(to2)
	if _, err := c.Open(to2, "n2"); err != nil {
		t.Fatalf("n2 refuses its own heartbeat: %v", err)
	}
	env, err := c.Open(to2, "n3")
	if !errors.Is(err, ErrMisdirected) || env.To != "n2" {
		t.Fatalf("n3 opening n2's heartbeat: %v (to %q), want ErrMisdirected", err, env.To)
	}
	rewritten := bytes.Clone(to2)
	rewritten[len(rewritten)-tagLen-2] = '3' // "n2" → "n3" in the receiver field
	if _, err := c.Open(rewritten, "n3"); !errors.Is(err, ErrAuth) {
		t.Fatalf("receiver rewritten to n3: %v, want ErrAuth", err)
	}
	to3, _ := s.For(0, "n3")
	if _, err := c.Open(to3, "n3"); err != nil {
		t.Fatalf("the same sealed message for n3: %v", err)
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
	for _, m := range full() {
		good, _ := c.SealOne("n1", "n2", 1, 2, m)
		f.Add(good)
	}
	f.Add([]byte("BTN1"))
	f.Add([]byte("BTN\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		env, err := c.Open(pkt, "n2")
		if err != nil {
			return
		}
		again, err := c.SealOne(env.From, env.To, env.Incarnation, env.Seq, &env.Msg)
		if err != nil {
			t.Fatalf("an accepted packet does not seal again: %v", err)
		}
		env2, err := c.Open(again, "n2")
		if err != nil || !reflect.DeepEqual(env, env2) {
			t.Fatalf("re-encoded packet differs: %v\n%+v\n%+v", err, env, env2)
		}
	})
}

// FuzzDecode fuzzes the body of every message kind, which is what a node
// holding the secret (or a bug) could send behind a valid tag: decoding never
// panics, and what decodes round-trips (parse → encode → parse), also when
// split into parts.
func FuzzDecode(f *testing.F) {
	for _, m := range full() {
		b, _ := Encode(m)
		f.Add(b)
	}
	f.Add([]byte{byte(fKind<<3 | wtVarint), 2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			return
		}
		b, err := Encode(&m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		m2, err := Decode(b)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded body differs: %v\n%+v\n%+v", err, m, m2)
		}
		parts, err := EncodeParts(&m, 200)
		if err != nil {
			return // an entry larger than the small budget
		}
		var n int
		for _, p := range parts {
			pm, err := Decode(p)
			if err != nil || pm.Kind != m.Kind || pm.SentAt != m.SentAt || pm.Applied != m.Applied {
				t.Fatalf("part does not decode to a message of the same head: %v %+v", err, pm)
			}
			n += len(pm.Claims) + len(pm.Acked) + len(pm.Released) + len(pm.Relinquished) + len(pm.Groups) + len(pm.Owners)
		}
		if want := len(m.Claims) + len(m.Acked) + len(m.Released) + len(m.Relinquished) + len(m.Groups) + len(m.Owners); n != want {
			t.Fatalf("parts hold %d entries, the message %d", n, want)
		}
	})
}

// FuzzOpenAuthenticated fuzzes the body behind a valid tag, with the
// packet framing around it.
func FuzzOpenAuthenticated(f *testing.F) {
	c := NewCodec([]byte("0123456789abcdef"), "prod")
	for _, m := range full() {
		b, _ := Encode(m)
		f.Add("n1", b)
	}
	f.Add("x", []byte(`[`))
	f.Fuzz(func(t *testing.T, from string, body []byte) {
		if len(from) == 0 || len(from) > maxName {
			return
		}
		raw := []byte(magic)
		raw = append(raw, ProtocolVersion)
		raw = append(raw, make([]byte, 16)...)
		raw = append(raw, byte(len(from)))
		raw = append(raw, from...)
		raw = append(raw, body...)
		s := &Sealed{c: c, parts: [][]byte{raw}}
		s.digests = append(s.digests, sha256.Sum256(raw))
		pkt, _ := s.For(0, "n2")
		_, _ = c.Open(pkt, "n2") // must not panic
	})
}
