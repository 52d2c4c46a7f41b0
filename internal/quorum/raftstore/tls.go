package raftstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/time/rate"
)

// Raft traffic is mutual TLS 1.3 in which every node presents the same
// self-signed certificate, whose Ed25519 key is derived from the cluster
// secret. A peer is accepted only if it proves possession of that key, so a
// host without the secret can neither join, nor read, nor inject raft RPCs.
// There is no CA: the pinned public key is the whole trust decision.

const (
	tlsKeyInfo = "baton raft tls v1" // HKDF info prefix; the cluster name follows
	tlsALPN    = "baton-raft/1"

	// defaultHandshakeTimeout bounds an inbound handshake; a peer that
	// connects and stalls is dropped after it. A real peer on a LAN finishes
	// in milliseconds; a second is plenty, and it frees the slot fast when
	// someone opens idle connections to stall the quorum.
	defaultHandshakeTimeout = time.Second
	// maxPendingHandshakes bounds the goroutines spent on inbound handshakes;
	// connections beyond it are refused (and counted as rejected).
	maxPendingHandshakes = 64
	// maxPendingPerSource bounds the handshakes one address may have in
	// flight, so one source cannot take all the slots: a real peer needs
	// at most a few (raft pools maxPool connections per peer).
	maxPendingPerSource = 8
)

// TLSStreamLayer is a raft.StreamLayer over mutually authenticated TLS 1.3.
//
// Accept returns only connections whose handshake succeeded; handshakes run
// concurrently in the background, so a slow or hostile client never holds up
// the accept loop and a failed handshake never closes the listener.
type TLSStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	logger    *slog.Logger
	timeout   time.Duration // inbound handshake deadline

	accepted chan net.Conn
	pending  chan struct{} // semaphore of in-flight inbound handshakes
	done     chan struct{}
	wg       sync.WaitGroup // accept loop and handshakes
	rejected atomic.Uint64

	// allowed lists the addresses inbound connections may come from (the
	// cluster's nodes); nil accepts any. A connection from anywhere else is
	// closed before any handshake work.
	allowed atomic.Pointer[map[netip.Addr]bool] // see setAllowed
	local   *net.TCPAddr                        // the source address of dialed connections (this node's)
	// perSource counts in-flight handshakes by remote address (under mu).
	perSource map[netip.Addr]int
	// logLimit keeps a flood of rejections from flooding the log; the
	// rejections themselves are all counted (Rejected).
	logLimit   *rate.Limiter
	suppressed atomic.Uint64

	mu     sync.Mutex
	closed bool
	conns  map[*tlsConn]struct{} // every live conn, closed with the layer
	once   sync.Once
}

type tlsOptions struct {
	advertise        string // "" = the listener's address
	logger           *slog.Logger
	handshakeTimeout time.Duration
	// allowed: the only remote addresses accepted (nil: any); local: the
	// address dialed connections come from, so that peers that allow only
	// node addresses accept them (zero: the kernel picks).
	allowed []netip.Addr
	local   netip.Addr
}

// NewTLSStreamLayer listens on bind ("ip:port"; port 0 picks a free port)
// and returns a stream layer authenticated by secret for the named cluster.
// The concrete type is *TLSStreamLayer (for Rejected).
func NewTLSStreamLayer(bind string, secret []byte, cluster string) (raft.StreamLayer, error) {
	return newTLSStreamLayer(bind, secret, cluster, tlsOptions{})
}

// setAllowed replaces the addresses inbound connections may come from (the
// cluster's nodes, after a reload added or removed one).
func (l *TLSStreamLayer) setAllowed(addrs []netip.Addr) {
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		m[a.Unmap()] = true
	}
	l.allowed.Store(&m)
}

func newTLSStreamLayer(bind string, secret []byte, cluster string, o tlsOptions) (*TLSStreamLayer, error) {
	cert, pub, err := clusterCertificate(secret, cluster)
	if err != nil {
		return nil, err
	}
	var adv net.Addr
	if o.advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", o.advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", o.advertise, err)
		}
		adv = a
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.handshakeTimeout <= 0 {
		o.handshakeTimeout = defaultHandshakeTimeout
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen: %w", err)
	}
	if adv == nil {
		adv = ln.Addr()
	}
	verify := pinnedKeyVerifier(pub)
	base := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		NextProtos:            []string{tlsALPN},
		InsecureSkipVerify:    true, // no CA: VerifyPeerCertificate pins the key
		VerifyPeerCertificate: verify,
	}
	server := base.Clone()
	server.ClientAuth = tls.RequireAnyClientCert // chain checks off, VerifyPeerCertificate on
	client := base.Clone()
	client.ServerName = "baton-" + cluster

	l := &TLSStreamLayer{
		ln:        ln,
		advertise: adv,
		server:    server,
		client:    client,
		logger:    o.logger,
		timeout:   o.handshakeTimeout,
		accepted:  make(chan net.Conn),
		pending:   make(chan struct{}, maxPendingHandshakes),
		done:      make(chan struct{}),
		conns:     map[*tlsConn]struct{}{},
		perSource: map[netip.Addr]int{},
		logLimit:  rate.NewLimiter(rate.Every(time.Second), 5),
	}
	if o.allowed != nil {
		l.setAllowed(o.allowed)
	}
	if o.local.IsValid() && !o.local.IsUnspecified() {
		l.local = net.TCPAddrFromAddrPort(netip.AddrPortFrom(o.local, 0))
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// clusterCertificate derives the cluster's Ed25519 key from the secret and
// wraps it in a fixed self-signed certificate: every node computes the same
// bytes, and nothing expires in practice (trust rests on the key alone).
func clusterCertificate(secret []byte, cluster string) (tls.Certificate, ed25519.PublicKey, error) {
	if len(secret) == 0 {
		return tls.Certificate{}, nil, errors.New("raft tls: empty cluster secret")
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, tlsKeyInfo+cluster, ed25519.SeedSize)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("raft tls: derive key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "baton-" + cluster},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("raft tls: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, pub, nil
}

// pinnedKeyVerifier accepts a peer only if its leaf certificate carries the
// derived public key. TLS 1.3's CertificateVerify proves the peer holds the
// matching private key.
func pinnedKeyVerifier(want ed25519.PublicKey) func([][]byte, [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("raft tls: peer sent no certificate")
		}
		leaf, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return fmt.Errorf("raft tls: peer certificate: %w", err)
		}
		got, ok := leaf.PublicKey.(ed25519.PublicKey)
		if !ok || !bytes.Equal(got, want) {
			return errors.New("raft tls: peer does not hold the cluster key (wrong secret or cluster name?)")
		}
		return nil
	}
}

func (l *TLSStreamLayer) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			// Transient (e.g. EMFILE): back off like net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.logger.Warn("raft accept failed", "error", err, "retry_in", delay)
			select {
			case <-l.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		src := remoteAddr(raw)
		if allowed := l.allowed.Load(); allowed != nil && !(*allowed)[src] {
			l.reject(raw, "not a cluster node's address")
			continue
		}
		l.mu.Lock()
		busy := l.perSource[src] >= maxPendingPerSource
		if !busy {
			l.perSource[src]++
		}
		l.mu.Unlock()
		if busy {
			l.reject(raw, "too many pending handshakes from this address")
			continue
		}
		select {
		case l.pending <- struct{}{}:
		default:
			l.release(src)
			l.reject(raw, "too many pending handshakes")
			continue
		}
		l.wg.Add(1)
		go l.handshake(raw, src)
	}
}

// reject closes an inbound connection before any handshake, counts it and
// logs it (rate-limited: a flood is counted in full, logged in part).
func (l *TLSStreamLayer) reject(raw net.Conn, why string) {
	l.rejected.Add(1)
	l.logRejected(raw.RemoteAddr().String(), why, nil)
	raw.Close()
}

func (l *TLSStreamLayer) logRejected(remote, why string, err error) {
	if !l.logLimit.Allow() {
		l.suppressed.Add(1)
		return
	}
	args := []any{"remote", remote, "why", why}
	if err != nil {
		args = append(args, "error", err)
	}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "not_logged_since_last", n)
	}
	l.logger.Warn("raft connection rejected", args...)
}

func (l *TLSStreamLayer) release(src netip.Addr) {
	l.mu.Lock()
	if l.perSource[src]--; l.perSource[src] <= 0 {
		delete(l.perSource, src)
	}
	l.mu.Unlock()
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (l *TLSStreamLayer) handshake(raw net.Conn, src netip.Addr) {
	defer l.wg.Done()
	defer func() { <-l.pending }()
	defer l.release(src)
	c := l.track(tls.Server(raw, l.server), raw)
	if c == nil {
		return
	}
	// Close cuts raw, which also ends a handshake in progress.
	_ = raw.SetDeadline(time.Now().Add(l.timeout))
	if err := c.Handshake(); err != nil {
		c.abort()
		select {
		case <-l.done: // cut by Close, not the peer's fault
			return
		default:
		}
		l.rejected.Add(1)
		l.logRejected(raw.RemoteAddr().String(), "handshake failed", err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	select {
	case l.accepted <- c:
	case <-l.done:
		c.abort()
	}
}

// Accept waits for the next authenticated connection.
func (l *TLSStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Dial connects to a peer and completes the handshake within timeout.
func (l *TLSStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = l.timeout
	}
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	if l.local != nil {
		d.LocalAddr = l.local
	}
	raw, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, &unreachable{err}
	}
	c := l.track(tls.Client(raw, l.client), raw)
	if c == nil {
		raw.Close()
		return nil, net.ErrClosed
	}
	_ = raw.SetDeadline(deadline)
	if err := c.Handshake(); err != nil {
		c.abort()
		return nil, &unreachable{fmt.Errorf("raft tls handshake with %s: %w", address, err)}
	}
	_ = raw.SetDeadline(time.Time{})
	return c, nil
}

// Addr is the advertised address (the listener's unless overridden).
func (l *TLSStreamLayer) Addr() net.Addr { return l.advertise }

// Rejected counts inbound connections dropped before reaching raft: from an
// address that is not a cluster node's, failed or timed-out handshakes
// (wrong key, not TLS), and connections refused because too many handshakes
// were pending (in all, or from one address).
func (l *TLSStreamLayer) Rejected() uint64 { return l.rejected.Load() }

// Close stops listening, closes every connection the layer made or accepted
// and waits for its goroutines. It is idempotent.
func (l *TLSStreamLayer) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		for c := range conns {
			c.raw.Close()
		}
		l.wg.Wait()
	})
	return err
}

func (l *TLSStreamLayer) track(tc *tls.Conn, raw net.Conn) *tlsConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		raw.Close()
		return nil
	}
	c := &tlsConn{Conn: tc, raw: raw, l: l}
	l.conns[c] = struct{}{}
	return c
}

func (l *TLSStreamLayer) untrack(c *tlsConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// tlsConn remembers its TCP conn so the layer can cut it without TLS's
// close_notify (which may block on a stuck peer), and forgets itself on Close.
type tlsConn struct {
	*tls.Conn
	raw net.Conn
	l   *TLSStreamLayer
}

// Read reports io.EOF once the layer is closed, so raft's connection
// handlers end quietly at shutdown instead of logging read errors.
func (c *tlsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		select {
		case <-c.l.done:
			return n, io.EOF
		default:
		}
	}
	return n, err
}

func (c *tlsConn) Close() error {
	err := c.Conn.Close()
	c.l.untrack(c)
	return err
}

func (c *tlsConn) abort() {
	c.raw.Close()
	c.l.untrack(c)
}

var _ raft.StreamLayer = (*TLSStreamLayer)(nil)
