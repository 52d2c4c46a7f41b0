// Package udp is the production heartbeat transport: one UDP socket per node
// on its address and the cluster port, sealing and opening packets with the
// cluster codec and dropping replays, unknown senders and forgeries (counted
// in Stats, never fatal).
package udp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/cluster"
	"golang.org/x/time/rate"
)

// Inbound is an authenticated, replay-checked message from a known node.
type Inbound struct {
	From string
	Msg  cluster.Message
}

// Stats counts packets by outcome; all fields are read atomically.
type Stats struct {
	Sent, Received, SendErrors             atomic.Uint64
	RejectedAuth, RejectedReplay           atomic.Uint64
	RejectedMalformed, RejectedUnknownPeer atomic.Uint64
	// RejectedMisdirected: authentic packets addressed to another node
	// (captured and replayed here); RejectedVersion: packets of another
	// protocol version.
	RejectedMisdirected, RejectedVersion atomic.Uint64
}

// Rejected returns the total of rejected packets.
func (s *Stats) Rejected() uint64 {
	return s.RejectedAuth.Load() + s.RejectedReplay.Load() + s.RejectedMalformed.Load() + s.RejectedUnknownPeer.Load() +
		s.RejectedMisdirected.Load() + s.RejectedVersion.Load()
}

// UDP is the production heartbeat transport: one socket on the node's address
// and cluster port. Reads run on one goroutine that delivers to In(); Send is
// safe for concurrent use.
type UDP struct {
	conn  *net.UDPConn
	codec *cluster.Codec
	self  string
	inc   uint64
	seq   atomic.Uint64
	peers map[string]netip.AddrPort // name → address
	byIP  map[netip.Addr]string
	log   *slog.Logger
	in    chan Inbound
	Stats Stats
	// stale counts, per peer, packets refused because they came from an
	// incarnation older than one seen before; staleLog rate-limits saying so.
	stale    map[string]*atomic.Uint64
	staleLog map[string]*rate.Limiter
	// version is, per peer, the protocol version of the last packet refused
	// for its version (0: none); versionLog rate-limits saying so.
	version    map[string]*atomic.Int64
	versionLog map[string]*rate.Limiter
	// rejectLog rate-limits the warnings a hostile network can trigger
	// (misdirected packets).
	rejectLog *rate.Limiter
	sendMu    sync.Mutex // one Sealed buffer in use at a time
	// mu guards peers, byIP and the per-peer maps, which SetPeers replaces
	// (a reload that added or removed a node).
	mu   sync.RWMutex
	done chan struct{}
	once sync.Once
}

// Listen binds bind ("ip:port") and starts reading. peers maps every node
// name (self included) to its "ip:port". inc must grow across restarts of this
// node (e.g. the start time in unix nanoseconds).
func Listen(bind, self string, inc uint64, peers map[string]string, codec *cluster.Codec, log *slog.Logger) (*UDP, error) {
	ap, err := netip.ParseAddrPort(bind)
	if err != nil {
		return nil, fmt.Errorf("heartbeat address %q: %w", bind, err)
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("heartbeat socket on %s: %w (is another agent running, or is the address not on this host?)", bind, err)
	}
	u := &UDP{conn: conn, codec: codec, self: self, inc: inc, peers: map[string]netip.AddrPort{},
		byIP: map[netip.Addr]string{}, log: log, in: make(chan Inbound, 1024), done: make(chan struct{}),
		stale: map[string]*atomic.Uint64{}, staleLog: map[string]*rate.Limiter{},
		version: map[string]*atomic.Int64{}, versionLog: map[string]*rate.Limiter{}, rejectLog: rate.NewLimiter(rate.Every(10*time.Second), 1)}
	// Best effort: a split heartbeat from every peer arrives as one burst.
	_ = conn.SetReadBuffer(cluster.ReadBuffer)
	if err := u.SetPeers(peers); err != nil {
		conn.Close()
		return nil, err
	}
	go u.readLoop()
	return u, nil
}

// SetPeers replaces the nodes this transport talks to (a reload that added or
// removed a node); a peer that stays keeps its counters. Packets from a node
// that is no longer listed are refused as from an unknown peer.
func (u *UDP) SetPeers(peers map[string]string) error {
	next := make(map[string]netip.AddrPort, len(peers))
	byIP := make(map[netip.Addr]string, len(peers))
	for name, a := range peers {
		pa, err := netip.ParseAddrPort(a)
		if err != nil {
			return fmt.Errorf("peer %s address %q: %w", name, a, err)
		}
		next[name] = pa
		byIP[pa.Addr().Unmap()] = name
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.peers, u.byIP = next, byIP
	for name := range next {
		if u.stale[name] == nil {
			u.stale[name] = &atomic.Uint64{}
			u.staleLog[name] = rate.NewLimiter(rate.Every(10*time.Second), 1)
			u.version[name] = &atomic.Int64{}
			u.versionLog[name] = rate.NewLimiter(rate.Every(10*time.Second), 1)
		}
	}
	return nil
}

func (u *UDP) peer(name string) (netip.AddrPort, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	a, ok := u.peers[name]
	return a, ok
}

// counters returns peer's stale and version counters and their log limiters
// (nil for a node that is not a peer).
func (u *UDP) counters(name string) (stale *atomic.Uint64, staleLog *rate.Limiter, version *atomic.Int64, versionLog *rate.Limiter) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return u.stale[name], u.staleLog[name], u.version[name], u.versionLog[name]
}

// In delivers inbound messages. It is closed when the transport is closed.
func (u *UDP) In() <-chan Inbound { return u.in }

// Send seals m and sends it to the named peer.
func (u *UDP) Send(to string, m *cluster.Message) error { return u.SendMany([]string{to}, m) }

// SendMany seals m once and sends it to every named peer: the message is
// encoded, split and hashed once; each receiver costs one short HMAC and
// the packets' writes. It returns the first error (and counts every one).
func (u *UDP) SendMany(to []string, m *cluster.Message) error {
	var first error
	fail := func(err error) {
		u.Stats.SendErrors.Add(1)
		if first == nil {
			first = err
		}
	}
	u.sendMu.Lock()
	defer u.sendMu.Unlock()
	sealed, err := u.codec.Seal(u.self, u.inc, func(n int) uint64 { return u.seq.Add(uint64(n)) - uint64(n) + 1 }, m)
	if err != nil {
		fail(err)
		return first
	}
	for _, name := range to {
		addr, ok := u.peer(name)
		if !ok {
			fail(fmt.Errorf("unknown peer %q", name))
			continue
		}
		for i := range sealed.Parts() {
			pkt, err := sealed.For(i, name)
			if err == nil {
				_, err = u.conn.WriteToUDPAddrPort(pkt, addr)
			}
			if err != nil {
				fail(err)
				continue
			}
			u.Stats.Sent.Add(1)
		}
	}
	return first
}

func (u *UDP) readLoop() {
	defer close(u.in)
	guard := cluster.NewReplayGuard()
	buf := make([]byte, cluster.MaxPacket+1)
	for {
		n, src, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		env, err := u.codec.Open(buf[:n], u.self)
		var verr *cluster.VersionError
		switch {
		case errors.As(err, &verr):
			u.Stats.RejectedVersion.Add(1)
			// Unauthenticated (a future version may authenticate
			// otherwise): attribute it by source address only.
			u.mu.RLock()
			name, ok := u.byIP[src.Addr().Unmap()]
			u.mu.RUnlock()
			if ok {
				_, _, version, versionLog := u.counters(name)
				version.Store(int64(verr.Version))
				if versionLog.Allow() {
					u.log.Error("refusing heartbeats from a peer that speaks another protocol version",
						"peer", name, "its_version", verr.Version, "our_version", cluster.ProtocolVersion,
						"fix", "run the same baton release on every node (upgrade one node at a time only between releases whose protocol versions match)")
				}
			}
			continue
		case errors.Is(err, cluster.ErrMisdirected):
			u.Stats.RejectedMisdirected.Add(1)
			if u.rejectLog.Allow() {
				u.log.Warn("refusing an authentic heartbeat addressed to another node: captured and replayed, or a peer with a wrong address in its config",
					"from", src, "addressed_to", env.To, "refused_so_far", u.Stats.RejectedMisdirected.Load())
			}
			continue
		case errors.Is(err, cluster.ErrAuth):
			u.Stats.RejectedAuth.Add(1)
			u.log.Debug("rejected heartbeat", "from", src, "reason", err)
			continue
		case err != nil:
			u.Stats.RejectedMalformed.Add(1)
			u.log.Debug("rejected heartbeat", "from", src, "reason", err)
			continue
		}
		want, known := u.peer(env.From)
		if !known || want.Addr().Unmap() != src.Addr().Unmap() {
			u.Stats.RejectedUnknownPeer.Add(1)
			u.log.Debug("rejected heartbeat: sender name does not match its address", "from", src, "claims", env.From)
			continue
		}
		switch guard.Admit(env.From, env.Incarnation, env.Seq) {
		case cluster.Replayed:
			u.Stats.RejectedReplay.Add(1)
			continue
		case cluster.Stale:
			u.Stats.RejectedReplay.Add(1)
			stale, staleLog, _, _ := u.counters(env.From)
			stale.Add(1)
			if staleLog.Allow() {
				u.log.Warn("refusing heartbeats from a peer as stale: it restarted with a lower incarnation than before",
					"peer", env.From, "refused", stale.Load(),
					"fix", "its clock stepped back and its data_dir lost the incarnation file; restart that agent with its data_dir intact, or restart this one")
			}
			continue
		}
		u.Stats.Received.Add(1)
		select {
		case u.in <- Inbound{From: env.From, Msg: env.Msg}:
		case <-u.done:
			return
		}
	}
}

// Close stops the reader and closes the socket.
func (u *UDP) Close() error {
	var err error
	u.once.Do(func() {
		close(u.done)
		err = u.conn.Close()
	})
	return err
}

// VersionFrom is the protocol version of the packets last refused from peer
// because this agent does not speak it (0: none refused).
func (u *UDP) VersionFrom(peer string) int {
	if _, _, v, _ := u.counters(peer); v != nil {
		return int(v.Load())
	}
	return 0
}

// StaleFrom counts the packets from peer refused as stale (an incarnation
// lower than one seen before).
func (u *UDP) StaleFrom(peer string) uint64 {
	if c, _, _, _ := u.counters(peer); c != nil {
		return c.Load()
	}
	return 0
}
