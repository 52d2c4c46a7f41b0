// Package cluster is Baton's node-to-node heartbeat protocol: the messages the
// core sends and receives, and their wire format (authenticated with
// HMAC-SHA256 keyed from the cluster secret, with replay protection). It does
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
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/hkdf"
)

// Packet layout (all integers big-endian):
//
//	magic   4  "BTN1"
//	inc     8  sender incarnation: grows across restarts (stored in data_dir, see NextIncarnation)
//	seq     8  sender sequence number within the incarnation
//	fromLen 1
//	from    fromLen bytes, the sender's node name
//	body    JSON-encoded Message
//	tag    32  HMAC-SHA256 over everything before it
const (
	magic     = "BTN1"
	tagLen    = sha256.Size
	headerLen = 4 + 8 + 8 + 1
	// MaxPacket bounds a packet; larger datagrams are rejected before any work.
	MaxPacket = 8192
)

// Decode errors. They are counted by reason and never crash the agent.
var (
	ErrShort    = errors.New("packet too short")
	ErrTooLarge = errors.New("packet too large")
	ErrMagic    = errors.New("bad magic (not a baton packet or other version)")
	ErrAuth     = errors.New("authentication failed (wrong cluster secret?)")
	ErrReplay   = errors.New("replayed or stale packet")
	ErrBody     = errors.New("malformed body")
)

// Claim names one group lease at one epoch.
type Claim struct {
	Group string `json:"g"`
	Epoch uint64 `json:"e"`
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
	Owners   []Owner `json:"o,omitempty"`
	Leaving  bool    `json:"lv,omitempty"`
	RaftRole string  `json:"rr,omitempty"`
	Applied  uint64  `json:"ai,omitempty"`
	// ConfigHash identifies the sender's effective config (config.Config.Hash),
	// so a node still running another file after a reload shows in status.
	ConfigHash uint64 `json:"ch,omitempty"`
}

// Envelope is a decoded, authenticated packet.
type Envelope struct {
	From        string
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

// Seal encodes and authenticates a message.
func (c *Codec) Seal(from string, inc, seq uint64, m *Message) ([]byte, error) {
	if len(from) == 0 || len(from) > 255 {
		return nil, fmt.Errorf("node name %q: must be 1..255 bytes", from)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	n := headerLen + len(from) + len(body) + tagLen
	if n > MaxPacket {
		return nil, fmt.Errorf("heartbeat of %d bytes exceeds %d: too many groups for one packet", n, MaxPacket)
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint64(b, inc)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, byte(len(from)))
	b = append(b, from...)
	b = append(b, body...)
	mac := newMAC(c)
	mac.Write(b)
	return mac.Sum(b), nil
}

// Open verifies and decodes a packet. It does not check for replays: pass the
// envelope to a ReplayGuard.
func (c *Codec) Open(pkt []byte) (Envelope, error) {
	var e Envelope
	if len(pkt) > MaxPacket {
		return e, ErrTooLarge
	}
	if len(pkt) < headerLen+1+tagLen {
		return e, ErrShort
	}
	if string(pkt[:4]) != magic {
		return e, ErrMagic
	}
	data, tag := pkt[:len(pkt)-tagLen], pkt[len(pkt)-tagLen:]
	mac := newMAC(c)
	mac.Write(data)
	if !hmac.Equal(mac.Sum(nil), tag) {
		return e, ErrAuth
	}
	e.Incarnation = binary.BigEndian.Uint64(data[4:12])
	e.Seq = binary.BigEndian.Uint64(data[12:20])
	fl := int(data[20])
	if fl == 0 || headerLen+fl > len(data) {
		return e, ErrBody
	}
	e.From = string(data[headerLen : headerLen+fl])
	if err := json.Unmarshal(data[headerLen+fl:], &e.Msg); err != nil {
		return e, fmt.Errorf("%w: %v", ErrBody, err)
	}
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

func newMAC(c *Codec) hash.Hash { return hmac.New(sha256.New, c.key) }

// PacketSize is the size of m sealed by from: what Seal would produce.
func PacketSize(from string, m *Message) (int, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	return headerLen + len(from) + len(body) + tagLen, nil
}
