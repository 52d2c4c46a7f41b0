// Package cluster is Baton's node-to-node heartbeat protocol: the messages the
// core sends and receives, and their wire format (authenticated with
// HMAC-SHA256 keyed from the cluster secret and bound to the receiver, with
// replay protection; a compact, versioned binary encoding, split across
// packets when a message does not fit in one). It does
// no I/O: the UDP transport is package cluster/udp, and the in-process
// harness (package sim) delivers messages on a simulated network.
//
// Heartbeats are the lease clock of the cluster (see docs/design.md): every
// node sends one to every other node each heartbeat_interval; owners claim
// their groups in them, voters ack claims and report the leases they released.
package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// Packet layout (protocol version 2; integers big-endian):
//
//	magic   3  "BTN"
//	version 1  ProtocolVersion: a packet of another version is refused
//	           with ErrVersion before anything else is read
//	inc     8  sender incarnation: grows across restarts (stored in data_dir)
//	seq     8  sender sequence number within the incarnation (one per part)
//	fromLen 1
//	from    fromLen bytes, the sender's node name
//	body    the message, binary (encode.go)
//	to      toLen bytes, the receiver's node name
//	toLen   1
//	tag    32  HMAC-SHA256(key, SHA-256(magic … body) ‖ to ‖ toLen)
//
// The tag binds the receiver: a packet captured on its way to one node and
// replayed to another is refused (ErrMisdirected). Everything before the
// receiver's name is hashed once, however many receivers there are, and the
// per-receiver work is one HMAC over 32 bytes and a name (Sealed.For).
//
// A message too large for one packet is split (EncodeParts) into parts that
// are each a complete message with their own sequence number; receivers need
// no reassembly.
const (
	magic = "BTN"
	// ProtocolVersion is the heartbeat protocol this agent speaks. Version 1
	// was JSON bodies under the magic "BTN1" (its version byte reads '1').
	ProtocolVersion = 2
	tagLen          = sha256.Size
	headerLen       = 3 + 1 + 8 + 8 + 1
	// MaxPacket bounds a packet, sent or received: an Ethernet MTU (1500)
	// less the IPv6 and UDP headers (48) and some room for tunnels, so a
	// heartbeat is never IP-fragmented — a fragmented datagram is lost when
	// any one fragment is, which multiplies packet loss by the fragment
	// count exactly when loss hurts most.
	MaxPacket = 1400
	// MaxParts bounds the packets one message may be split into. The burst
	// a heartbeat causes must fit in the peers' receive buffers (the agent
	// asks for ReadBuffer; 6 peers × 64 × 1400 bytes ≈ 540 KB), and the
	// config check refuses a cluster whose worst-case heartbeat needs more.
	MaxParts = 64
	// ReadBuffer is the socket receive buffer the UDP transport asks for
	// (the kernel caps it at net.core.rmem_max).
	ReadBuffer = 4 << 20
	// maxName is the longest node name a packet carries (the config allows
	// 63-byte names).
	maxName = 63
)

// Decode errors. They are counted by reason and never crash the agent.
var (
	ErrShort       = errors.New("packet too short")
	ErrTooLarge    = errors.New("packet too large")
	ErrMagic       = errors.New("bad magic (not a baton packet)")
	ErrVersion     = errors.New("heartbeat protocol version not spoken here")
	ErrAuth        = errors.New("authentication failed (wrong cluster secret?)")
	ErrMisdirected = errors.New("packet addressed to another node (captured and replayed?)")
	ErrReplay      = errors.New("replayed or stale packet")
	ErrBody        = errors.New("malformed body")
)

// VersionError is the ErrVersion a packet of another protocol version
// yields; Version is the version it carries.
type VersionError struct{ Version int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("%v: the packet speaks version %d, this agent %d", ErrVersion, e.Version, ProtocolVersion)
}

func (e *VersionError) Unwrap() error { return ErrVersion }

// PacketVersion returns the protocol version of a packet that starts with the
// magic (ok false otherwise). Version 1 packets carry the ASCII digit '1'.
func PacketVersion(pkt []byte) (version int, ok bool) {
	if len(pkt) < 4 || string(pkt[:3]) != magic {
		return 0, false
	}
	if pkt[3] == '1' {
		return 1, true
	}
	return int(pkt[3]), true
}

// Claim names one group lease at one epoch.
type Claim struct {
	Group string `json:"g"`
	Epoch uint64 `json:"e"`
	// LapsedMs, in a relinquishment an owner made because it had lost its
	// lease (it was not acting, and gave up so another member may take
	// over), is how long it had not been acting when it gave up: the
	// detection part of the history's outage. 0 otherwise.
	LapsedMs uint64 `json:"lms,omitempty"`
}

// Owner is one committed ownership record.
type Owner struct {
	Group string `json:"g"`
	Node  string `json:"n"`
	Epoch uint64 `json:"e"`
	Prev  string `json:"p,omitempty"`
	// HandoffTo/HandoffReason: a committed request that the owner hand the
	// group to that node (switchover, failback).
	HandoffTo     string `json:"h,omitempty"`
	HandoffReason string `json:"hr,omitempty"`
	// Reason is the history's reason for this epoch's change of owner, when
	// the sender's replica has the entry (so a new owner that learns of its
	// election by gossip can tell its hooks why).
	Reason string `json:"rs,omitempty"`
}

// GroupStatus is what a member says about itself for one group.
type GroupStatus struct {
	Group    string `json:"g"`
	Healthy  bool   `json:"h"` // local checks pass
	Eligible bool   `json:"el"`
	Role     string `json:"r,omitempty"` // standby | active
	// Epoch and TakeoverMs: as owner of Epoch, the sender took TakeoverMs
	// from learning of its election to acting (for the history).
	Epoch      uint64 `json:"e,omitempty"`
	TakeoverMs int64  `json:"tk,omitempty"`
	// Data-aware groups (a driver): the local database's role and write
	// position (e.g. a PostgreSQL LSN; higher is more up to date), and, from
	// the owner, the synchronous standby set it asks the leader to record
	// (SyncSet says the field is set; see agent/data.go for the protocol).
	DB      string   `json:"db,omitempty"`
	Pos     uint64   `json:"pos,omitempty"`
	Sync    []string `json:"sy,omitempty"`
	SyncSet bool     `json:"sys,omitempty"`
	// SyncSeq numbers the owner's requests for Sync within its epoch: it
	// grows with every change, and the leader records a request only if its
	// number is higher than the recorded one (so a late, superseded request
	// never overrides a newer one).
	SyncSeq uint64 `json:"sq,omitempty"`
	// Div: when this old primary rejoined after losing the group at
	// DivEpoch, it held Div bytes the new primary lacked (discarded by the
	// rewind): what the failover actually lost.
	Div      uint64 `json:"dv,omitempty"`
	DivEpoch uint64 `json:"dve,omitempty"`
	// Unrelated: the local data is not on the group's replication history
	// (e.g. a Redis whose replication ids the group never had): the leader
	// does not promote this member while another one owns the group.
	Unrelated bool `json:"un,omitempty"`
}

// Message kinds.
const (
	KindHeartbeat = "hb"
	KindAck       = "ack"
)

// Message is the body of every packet.
type Message struct {
	Kind string `json:"k"`
	// SentAt is the sender's monotonic clock (ns) when it sent a heartbeat; acks
	// echo it so the owner can date its lease from its own send time.
	SentAt int64 `json:"t,omitempty"`
	Echo   int64 `json:"echo,omitempty"`
	// Claims: groups the sender owns in its view of the replicated state.
	Claims []Claim `json:"c,omitempty"`
	// Acked: claims of the heartbeat being answered that the voter granted.
	Acked []Claim `json:"a,omitempty"`
	// Released: group leases this voter has released (it will never ack them again).
	Released []Claim `json:"rel,omitempty"`
	// Relinquished: group leases the sender (their owner) gave up on purpose.
	Relinquished []Claim `json:"rq,omitempty"`
	// RelinquishReason says why (shutdown, switchover, check, ...).
	RelinquishReason string        `json:"rqr,omitempty"`
	Groups           []GroupStatus `json:"gs,omitempty"`
	// Owners gossips the sender's committed view of group ownership, so a new
	// owner learns of its election from whichever node applied it first
	// instead of waiting for its own replica to apply the entry.
	Owners  []Owner `json:"o,omitempty"`
	Leaving bool    `json:"lv,omitempty"`
	// Fresh: the sender started moments ago and knows nothing of what
	// heartbeats send only on change: receivers send it everything for a
	// while.
	Fresh    bool   `json:"fr,omitempty"`
	RaftRole string `json:"rr,omitempty"`
	Applied  uint64 `json:"ai,omitempty"`
	// ConfigHash identifies the sender's effective config (config.Config.Hash),
	// so a node still running another file after a reload shows in status.
	ConfigHash uint64 `json:"ch,omitempty"`
}

// Envelope is a decoded, authenticated packet.
type Envelope struct {
	From        string
	To          string
	Incarnation uint64
	Seq         uint64
	Msg         Message
}

// Codec seals and opens packets for one cluster. It is safe for concurrent use.
type Codec struct {
	key []byte
}

// NewCodec derives the packet key from the cluster secret and name, so two
// clusters sharing a secret by accident still cannot talk to each other.
func NewCodec(secret []byte, cluster string) *Codec {
	key := make([]byte, 32)
	r := hkdf.New(sha256.New, secret, []byte("baton heartbeat v1"), []byte(cluster))
	if _, err := io.ReadFull(r, key); err != nil {
		panic(err) // hkdf cannot fail for 32 bytes
	}
	return &Codec{key: key}
}

// partBudget is the room for a body in a packet from a sender with this
// name to a receiver of the longest name.
func partBudget(from string) int { return MaxPacket - headerLen - len(from) - maxName - 1 - tagLen }

// Sealed is a message encoded for sending: its parts, each hashed, waiting
// for a receiver's name and tag (For). Not safe for concurrent use.
type Sealed struct {
	c       *Codec
	parts   [][]byte // header and body of each part
	digests [][sha256.Size]byte
	buf     []byte
}

// Seal encodes m from node from, split into as many parts as it needs, and
// numbers them: reserve(n) returns the first of n sequence numbers the parts
// take, in order.
func (c *Codec) Seal(from string, inc uint64, reserve func(parts int) uint64, m *Message) (*Sealed, error) {
	if len(from) == 0 || len(from) > maxName {
		return nil, fmt.Errorf("node name %q: must be 1..%d bytes", from, maxName)
	}
	bodies, err := EncodeParts(m, partBudget(from))
	if err != nil {
		return nil, err
	}
	if len(bodies) > MaxParts {
		return nil, fmt.Errorf("message needs %d packets, over the %d one heartbeat may use: too many groups", len(bodies), MaxParts)
	}
	s := &Sealed{c: c, parts: make([][]byte, len(bodies)), digests: make([][sha256.Size]byte, len(bodies))}
	seq := reserve(len(bodies))
	for i, body := range bodies {
		b := make([]byte, 0, headerLen+len(from)+len(body))
		b = append(b, magic...)
		b = append(b, ProtocolVersion)
		b = binary.BigEndian.AppendUint64(b, inc)
		b = binary.BigEndian.AppendUint64(b, seq+uint64(i))
		b = append(b, byte(len(from)))
		b = append(b, from...)
		b = append(b, body...)
		s.parts[i] = b
		s.digests[i] = sha256.Sum256(b)
	}
	return s, nil
}

// Parts is the number of packets the message takes.
func (s *Sealed) Parts() int { return len(s.parts) }

// For returns part i addressed to receiver to. The result is valid until the
// next call.
func (s *Sealed) For(i int, to string) ([]byte, error) {
	if len(to) == 0 || len(to) > maxName {
		return nil, fmt.Errorf("node name %q: must be 1..%d bytes", to, maxName)
	}
	s.buf = append(append(append(s.buf[:0], s.parts[i]...), to...), byte(len(to)))
	s.buf = s.c.tag(s.buf, s.digests[i][:], to)
	return s.buf, nil
}

// tag appends the tag over digest and receiver to to b.
func (c *Codec) tag(b, digest []byte, to string) []byte {
	mac := hmac.New(sha256.New, c.key)
	mac.Write(digest)
	mac.Write([]byte(to))
	mac.Write([]byte{byte(len(to))})
	return mac.Sum(b)
}

// SealOne seals m as a single packet to receiver to (tests, tools): an error
// if it does not fit in one.
func (c *Codec) SealOne(from, to string, inc, seq uint64, m *Message) ([]byte, error) {
	s, err := c.Seal(from, inc, func(int) uint64 { return seq }, m)
	if err != nil {
		return nil, err
	}
	if s.Parts() != 1 {
		return nil, fmt.Errorf("message needs %d packets", s.Parts())
	}
	return s.For(0, to)
}

// Open verifies and decodes a packet received by node self. It does not
// check for replays: pass the envelope to a ReplayGuard.
func (c *Codec) Open(pkt []byte, self string) (Envelope, error) {
	var e Envelope
	if len(pkt) > MaxPacket {
		return e, ErrTooLarge
	}
	if v, ok := PacketVersion(pkt); !ok {
		if len(pkt) < 4 {
			return e, ErrShort
		}
		return e, ErrMagic
	} else if v != ProtocolVersion {
		return e, &VersionError{Version: v}
	}
	if len(pkt) < headerLen+1+1+1+tagLen {
		return e, ErrShort
	}
	data, tag := pkt[:len(pkt)-tagLen], pkt[len(pkt)-tagLen:]
	tl := int(data[len(data)-1])
	if tl == 0 || headerLen+1+tl+1 > len(data) {
		return e, ErrAuth // the receiver's name is covered by the tag: a wrong length is a forgery
	}
	to := data[len(data)-1-tl : len(data)-1]
	signed := data[:len(data)-1-tl]
	digest := sha256.Sum256(signed)
	want := c.tag(nil, digest[:], string(to))
	if !hmac.Equal(want, tag) {
		return e, ErrAuth
	}
	e.To = string(to)
	if e.To != self {
		return e, ErrMisdirected
	}
	e.Incarnation = binary.BigEndian.Uint64(signed[4:12])
	e.Seq = binary.BigEndian.Uint64(signed[12:20])
	fl := int(signed[20])
	if fl == 0 || headerLen+fl > len(signed) {
		return e, ErrBody
	}
	e.From = string(signed[headerLen : headerLen+fl])
	m, err := Decode(signed[headerLen+fl:])
	if err != nil {
		return e, err
	}
	e.Msg = m
	return e, nil
}

// replayWindow is how far behind the newest sequence number a packet may
// arrive (reordered) and still be accepted once.
const replayWindow = 64

type senderWindow struct {
	inc    uint64
	maxSeq uint64
	seen   uint64 // bit i set: maxSeq-i was accepted
}

// ReplayGuard rejects packets already accepted, or older than the window, per
// sender. An incarnation lower than the newest seen from that sender is stale
// (a restarted sender has a higher one). Not safe for concurrent use.
type ReplayGuard struct {
	senders map[string]*senderWindow
}

// NewReplayGuard returns an empty guard.
func NewReplayGuard() *ReplayGuard { return &ReplayGuard{senders: map[string]*senderWindow{}} }

// Verdict is what a ReplayGuard says of a packet.
type Verdict int

// Verdicts of ReplayGuard.Admit.
const (
	Fresh    Verdict = iota // new: accept it
	Replayed                // seen before, or too old within the sender's incarnation
	Stale                   // from an incarnation older than the newest seen from that sender
)

// Accept reports whether the (from, inc, seq) triple is new, and records it.
func (g *ReplayGuard) Accept(from string, inc, seq uint64) bool {
	return g.Admit(from, inc, seq) == Fresh
}

// Admit judges the (from, inc, seq) triple and records it if it is fresh. A
// Stale verdict means the sender restarted with a lower incarnation than
// before (its clock stepped back and it kept no record of the last one):
// every packet it sends is refused until it restarts with a higher one.
func (g *ReplayGuard) Admit(from string, inc, seq uint64) Verdict {
	w := g.senders[from]
	if w == nil || inc > w.inc {
		g.senders[from] = &senderWindow{inc: inc, maxSeq: seq, seen: 1}
		return Fresh
	}
	if inc < w.inc {
		return Stale
	}
	switch {
	case seq > w.maxSeq:
		shift := seq - w.maxSeq
		if shift >= 64 {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.seen |= 1
		w.maxSeq = seq
		return Fresh
	case w.maxSeq-seq >= replayWindow:
		return Replayed
	default:
		bit := uint64(1) << (w.maxSeq - seq)
		if w.seen&bit != 0 {
			return Replayed
		}
		w.seen |= bit
		return Fresh
	}
}

// PacketSize is the size m sealed by from takes on the wire to a receiver
// of the longest name, and the number of packets: what Seal would produce.
func PacketSize(from string, m *Message) (bytes, packets int, err error) {
	bodies, err := EncodeParts(m, partBudget(from))
	if err != nil {
		return 0, 0, err
	}
	for _, b := range bodies {
		bytes += headerLen + len(from) + len(b) + maxName + 1 + tagLen
	}
	return bytes, len(bodies), nil
}
