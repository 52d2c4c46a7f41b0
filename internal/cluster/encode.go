package cluster

import (
	"encoding/binary"
	"fmt"
)

// Body encoding (protocol version 2). A message is a sequence of fields,
// each a key — uvarint(field number << 3 | wire type) — and a value:
//
//	wire type 0: a uvarint (integers; signed ones zig-zag encoded; bools 1)
//	wire type 2: a uvarint length and that many bytes (a string, or a nested
//	             Claim, Owner or GroupStatus, which is itself such a sequence)
//
// Fields at their zero value are left out; a list is its field repeated,
// once per entry, in order. A decoder skips fields it does not know (by their
// wire type), so a field added later is ignored by an older agent of the same
// protocol version. To add one: give it the next free number below, one line
// in the encoder (put) and one case in the decoder (get) of its struct, and,
// if it is a scalar of Message, it is repeated in every part of a split
// heartbeat (head) like the others.
//
// The field numbers are the protocol: never reuse or renumber one.
const (
	// Message
	fKind             = 1 // varint: 1 heartbeat, 2 ack
	fSentAt           = 2 // zig-zag
	fEcho             = 3 // zig-zag
	fClaims           = 4 // Claim, repeated
	fAcked            = 5 // Claim, repeated
	fReleased         = 6 // Claim, repeated
	fRelinquished     = 7 // Claim, repeated
	fRelinquishReason = 8
	fGroups           = 9  // GroupStatus, repeated
	fOwners           = 10 // Owner, repeated
	fLeaving          = 11
	fRaftRole         = 12
	fApplied          = 13
	fFresh            = 14
	fConfigHash       = 15

	// Claim
	fClaimGroup  = 1
	fClaimEpoch  = 2
	fClaimLapsed = 3

	// Owner
	fOwnerGroup         = 1
	fOwnerNode          = 2
	fOwnerEpoch         = 3
	fOwnerPrev          = 4
	fOwnerHandoffTo     = 5
	fOwnerHandoffReason = 6
	fOwnerReason        = 7

	// GroupStatus
	fGSGroup      = 1
	fGSHealthy    = 2
	fGSEligible   = 3
	fGSRole       = 4
	fGSEpoch      = 5
	fGSTakeoverMs = 6 // zig-zag
	fGSDB         = 7
	fGSPos        = 8
	fGSSync       = 9 // string, repeated
	fGSSyncSet    = 10
	fGSSyncSeq    = 11
	fGSDiv        = 12
	fGSDivEpoch   = 13
	fGSUnrelated  = 14
)

const (
	wtVarint = 0
	wtBytes  = 2
)

var kindCodes = map[string]uint64{KindHeartbeat: 1, KindAck: 2}

// enc appends fields to b.
type enc struct{ b []byte }

func (e *enc) key(f, wt int) { e.b = binary.AppendUvarint(e.b, uint64(f)<<3|uint64(wt)) }

func (e *enc) uint(f int, v uint64) {
	if v != 0 {
		e.key(f, wtVarint)
		e.b = binary.AppendUvarint(e.b, v)
	}
}

func (e *enc) int(f int, v int64) { e.uint(f, uint64(v<<1)^uint64(v>>63)) }

func (e *enc) bool(f int, v bool) {
	if v {
		e.uint(f, 1)
	}
}

func (e *enc) str(f int, s string) {
	if s != "" {
		e.key(f, wtBytes)
		e.b = binary.AppendUvarint(e.b, uint64(len(s)))
		e.b = append(e.b, s...)
	}
}

// nested appends field f holding what put encodes. The length goes before
// the value, so the value is encoded first and moved up behind it.
func (e *enc) nested(f int, put func(*enc)) {
	e.key(f, wtBytes)
	start := len(e.b)
	put(e)
	n := len(e.b) - start
	var l [binary.MaxVarintLen64]byte
	ll := binary.PutUvarint(l[:], uint64(n))
	e.b = append(e.b, l[:ll]...)
	copy(e.b[start+ll:], e.b[start:start+n])
	copy(e.b[start:], l[:ll])
}

func (c *Claim) put(e *enc) {
	e.str(fClaimGroup, c.Group)
	e.uint(fClaimEpoch, c.Epoch)
	e.uint(fClaimLapsed, c.LapsedMs)
}

func (o *Owner) put(e *enc) {
	e.str(fOwnerGroup, o.Group)
	e.str(fOwnerNode, o.Node)
	e.uint(fOwnerEpoch, o.Epoch)
	e.str(fOwnerPrev, o.Prev)
	e.str(fOwnerHandoffTo, o.HandoffTo)
	e.str(fOwnerHandoffReason, o.HandoffReason)
	e.str(fOwnerReason, o.Reason)
}

func (g *GroupStatus) put(e *enc) {
	e.str(fGSGroup, g.Group)
	e.bool(fGSHealthy, g.Healthy)
	e.bool(fGSEligible, g.Eligible)
	e.str(fGSRole, g.Role)
	e.uint(fGSEpoch, g.Epoch)
	e.int(fGSTakeoverMs, g.TakeoverMs)
	e.str(fGSDB, g.DB)
	e.uint(fGSPos, g.Pos)
	for _, s := range g.Sync {
		// An empty name would vanish (zero values are left out); names
		// are never empty, but keep the entry so the list keeps its length.
		e.key(fGSSync, wtBytes)
		e.b = binary.AppendUvarint(e.b, uint64(len(s)))
		e.b = append(e.b, s...)
	}
	e.bool(fGSSyncSet, g.SyncSet)
	e.uint(fGSSyncSeq, g.SyncSeq)
	e.uint(fGSDiv, g.Div)
	e.uint(fGSDivEpoch, g.DivEpoch)
	e.bool(fGSUnrelated, g.Unrelated)
}

// putHead encodes the scalars of m: what every part of a split message
// repeats.
func (m *Message) putHead(e *enc) error {
	code, ok := kindCodes[m.Kind]
	if !ok {
		return fmt.Errorf("message kind %q: not %q or %q", m.Kind, KindHeartbeat, KindAck)
	}
	e.uint(fKind, code)
	e.int(fSentAt, m.SentAt)
	e.int(fEcho, m.Echo)
	e.str(fRelinquishReason, m.RelinquishReason)
	e.bool(fLeaving, m.Leaving)
	e.str(fRaftRole, m.RaftRole)
	e.uint(fApplied, m.Applied)
	e.bool(fFresh, m.Fresh)
	e.uint(fConfigHash, m.ConfigHash)
	return nil
}

// entries calls each for the encoding of every list entry of m, in the order
// a split keeps: lease traffic (claims, acks, relinquishments, releases)
// first, so it lands in the first parts, then status and gossip.
func (m *Message) entries(e *enc, each func(start int)) {
	claims := func(f int, cs []Claim) {
		for i := range cs {
			start := len(e.b)
			e.nested(f, cs[i].put)
			each(start)
		}
	}
	claims(fClaims, m.Claims)
	claims(fAcked, m.Acked)
	claims(fRelinquished, m.Relinquished)
	claims(fReleased, m.Released)
	for i := range m.Groups {
		start := len(e.b)
		e.nested(fGroups, m.Groups[i].put)
		each(start)
	}
	for i := range m.Owners {
		start := len(e.b)
		e.nested(fOwners, m.Owners[i].put)
		each(start)
	}
}

// Encode is the body encoding of m in one piece (however large).
func Encode(m *Message) ([]byte, error) {
	e := &enc{}
	if err := m.putHead(e); err != nil {
		return nil, err
	}
	m.entries(e, func(int) {})
	return e.b, nil
}

// EncodeParts encodes m as bodies of at most budget bytes each. Every body is
// a complete message on its own: the scalars of m and a run of its list
// entries, so a receiver handles each part as it arrives, and a lost part
// loses only its entries (as a lost heartbeat would). A message that fits is
// one part. An entry that does not fit in a part on its own is an error.
func EncodeParts(m *Message, budget int) ([][]byte, error) {
	e := &enc{}
	if err := m.putHead(e); err != nil {
		return nil, err
	}
	head := len(e.b)
	if head >= budget {
		return nil, fmt.Errorf("message header of %d bytes does not fit in %d", head, budget)
	}
	var parts [][]byte
	partStart := 0 // where the current part's entries start in e.b (after its head)
	var tooBig error
	m.entries(e, func(start int) {
		if tooBig != nil {
			return
		}
		size := len(e.b) - start
		if head+size > budget {
			tooBig = fmt.Errorf("one entry of %d bytes does not fit in a %d-byte part", size, budget)
			return
		}
		if partStart == 0 {
			partStart = start
		}
		if head+(len(e.b)-partStart) > budget {
			// Close the part before this entry.
			parts = append(parts, joinHead(e.b[:head], e.b[partStart:start]))
			partStart = start
		}
	})
	if tooBig != nil {
		return nil, tooBig
	}
	if partStart == 0 {
		return [][]byte{e.b}, nil // no entries
	}
	return append(parts, joinHead(e.b[:head], e.b[partStart:])), nil
}

func joinHead(head, entries []byte) []byte {
	b := make([]byte, 0, len(head)+len(entries))
	return append(append(b, head...), entries...)
}

// dec reads fields from b.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBody}, args...)...)
	}
	d.b = nil
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	l := d.uvarint()
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)) {
		d.fail("field of %d bytes overruns the message", l)
		return nil
	}
	v := d.b[:l]
	d.b = d.b[l:]
	return v
}

// next returns the next field's number and wire type; ok is false at the end
// or on an error.
func (d *dec) next() (f int, wt int, ok bool) {
	if len(d.b) == 0 || d.err != nil {
		return 0, 0, false
	}
	k := d.uvarint()
	if d.err != nil {
		return 0, 0, false
	}
	if k>>3 == 0 || k>>3 > 1<<20 {
		d.fail("bad field number %d", k>>3)
		return 0, 0, false
	}
	return int(k >> 3), int(k & 7), true
}

// want checks that known field f came with wire type wt.
func (d *dec) want(f, got, wt int) bool {
	if got != wt {
		d.fail("field %d has wire type %d, want %d", f, got, wt)
		return false
	}
	return true
}

func (d *dec) uint(f, wt int) uint64 {
	if !d.want(f, wt, wtVarint) {
		return 0
	}
	return d.uvarint()
}

func (d *dec) int(f, wt int) int64 {
	u := d.uint(f, wt)
	return int64(u>>1) ^ -int64(u&1)
}

func (d *dec) bool(f, wt int) bool { return d.uint(f, wt) != 0 }

func (d *dec) str(f, wt int) string {
	if !d.want(f, wt, wtBytes) {
		return ""
	}
	return string(d.bytes())
}

// skip passes over a field this version does not know.
func (d *dec) skip(wt int) {
	switch wt {
	case wtVarint:
		d.uvarint()
	case wtBytes:
		d.bytes()
	default:
		d.fail("unknown wire type %d", wt)
	}
}

// sub decodes a nested value of field f with get.
func (d *dec) sub(f, wt int, get func(*dec, int, int)) {
	if !d.want(f, wt, wtBytes) {
		return
	}
	inner := &dec{b: d.bytes()}
	if d.err != nil {
		return
	}
	for {
		f, wt, ok := inner.next()
		if !ok {
			break
		}
		get(inner, f, wt)
	}
	if inner.err != nil {
		d.fail("%v", inner.err)
	}
}

func (c *Claim) get(d *dec, f, wt int) {
	switch f {
	case fClaimGroup:
		c.Group = d.str(f, wt)
	case fClaimEpoch:
		c.Epoch = d.uint(f, wt)
	case fClaimLapsed:
		c.LapsedMs = d.uint(f, wt)
	default:
		d.skip(wt)
	}
}

func (o *Owner) get(d *dec, f, wt int) {
	switch f {
	case fOwnerGroup:
		o.Group = d.str(f, wt)
	case fOwnerNode:
		o.Node = d.str(f, wt)
	case fOwnerEpoch:
		o.Epoch = d.uint(f, wt)
	case fOwnerPrev:
		o.Prev = d.str(f, wt)
	case fOwnerHandoffTo:
		o.HandoffTo = d.str(f, wt)
	case fOwnerHandoffReason:
		o.HandoffReason = d.str(f, wt)
	case fOwnerReason:
		o.Reason = d.str(f, wt)
	default:
		d.skip(wt)
	}
}

func (g *GroupStatus) get(d *dec, f, wt int) {
	switch f {
	case fGSGroup:
		g.Group = d.str(f, wt)
	case fGSHealthy:
		g.Healthy = d.bool(f, wt)
	case fGSEligible:
		g.Eligible = d.bool(f, wt)
	case fGSRole:
		g.Role = d.str(f, wt)
	case fGSEpoch:
		g.Epoch = d.uint(f, wt)
	case fGSTakeoverMs:
		g.TakeoverMs = d.int(f, wt)
	case fGSDB:
		g.DB = d.str(f, wt)
	case fGSPos:
		g.Pos = d.uint(f, wt)
	case fGSSync:
		g.Sync = append(g.Sync, d.str(f, wt))
	case fGSSyncSet:
		g.SyncSet = d.bool(f, wt)
	case fGSSyncSeq:
		g.SyncSeq = d.uint(f, wt)
	case fGSDiv:
		g.Div = d.uint(f, wt)
	case fGSDivEpoch:
		g.DivEpoch = d.uint(f, wt)
	case fGSUnrelated:
		g.Unrelated = d.bool(f, wt)
	default:
		d.skip(wt)
	}
}

// Decode parses a body encoded by Encode or EncodeParts.
func Decode(b []byte) (Message, error) {
	var m Message
	d := &dec{b: b}
	claim := func(f, wt int) Claim {
		var c Claim
		d.sub(f, wt, func(d *dec, f, wt int) { c.get(d, f, wt) })
		return c
	}
	for {
		f, wt, ok := d.next()
		if !ok {
			break
		}
		switch f {
		case fKind:
			switch code := d.uint(f, wt); code {
			case 1:
				m.Kind = KindHeartbeat
			case 2:
				m.Kind = KindAck
			default:
				d.fail("unknown message kind %d", code)
			}
		case fSentAt:
			m.SentAt = d.int(f, wt)
		case fEcho:
			m.Echo = d.int(f, wt)
		case fClaims:
			m.Claims = append(m.Claims, claim(f, wt))
		case fAcked:
			m.Acked = append(m.Acked, claim(f, wt))
		case fReleased:
			m.Released = append(m.Released, claim(f, wt))
		case fRelinquished:
			m.Relinquished = append(m.Relinquished, claim(f, wt))
		case fRelinquishReason:
			m.RelinquishReason = d.str(f, wt)
		case fGroups:
			var g GroupStatus
			d.sub(f, wt, func(d *dec, f, wt int) { g.get(d, f, wt) })
			m.Groups = append(m.Groups, g)
		case fOwners:
			var o Owner
			d.sub(f, wt, func(d *dec, f, wt int) { o.get(d, f, wt) })
			m.Owners = append(m.Owners, o)
		case fLeaving:
			m.Leaving = d.bool(f, wt)
		case fRaftRole:
			m.RaftRole = d.str(f, wt)
		case fApplied:
			m.Applied = d.uint(f, wt)
		case fFresh:
			m.Fresh = d.bool(f, wt)
		case fConfigHash:
			m.ConfigHash = d.uint(f, wt)
		default:
			d.skip(wt)
		}
	}
	if d.err != nil {
		return Message{}, d.err
	}
	if m.Kind == "" {
		return Message{}, fmt.Errorf("%w: no message kind", ErrBody)
	}
	return m, nil
}
