package raftstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var (
	testSecret  = []byte("correct horse battery staple, 32+ bytes")
	wrongSecret = []byte("incorrect horse battery staple, 32+ b")
)

func newTestLayer(t *testing.T, secret []byte, o tlsOptions) *TLSStreamLayer {
	t.Helper()
	l, err := newTLSStreamLayer("127.0.0.1:0", secret, "test", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// echoOnce accepts one connection from l and echoes what it reads.
func echoOnce(l *TLSStreamLayer) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- err
			return
		}
		_, err = c.Write(buf)
		done <- err
	}()
	return done
}

func roundTrip(t *testing.T, from, to *TLSStreamLayer) {
	t.Helper()
	done := echoOnce(to)
	c, err := from.Dial(raft.ServerAddress(to.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server side: %v", err)
	}
}

func TestClusterCertificateDeterministic(t *testing.T) {
	c1, p1, err := clusterCertificate(testSecret, "prod")
	if err != nil {
		t.Fatal(err)
	}
	c2, p2, _ := clusterCertificate(testSecret, "prod")
	_, p3, _ := clusterCertificate(testSecret, "staging")
	_, p4, _ := clusterCertificate(wrongSecret, "prod")
	if !bytes.Equal(c1.Certificate[0], c2.Certificate[0]) || !p1.Equal(p2) {
		t.Fatal("same secret and cluster gave different certificates")
	}
	if p1.Equal(p3) || p1.Equal(p4) {
		t.Fatal("different cluster or secret gave the same key")
	}
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "baton-prod" || leaf.NotBefore.Year() != 2000 || leaf.NotAfter.Year() != 2100 {
		t.Fatalf("certificate: CN %q valid %v..%v", leaf.Subject.CommonName, leaf.NotBefore, leaf.NotAfter)
	}
	if !leaf.PublicKey.(ed25519.PublicKey).Equal(p1) {
		t.Fatal("certificate does not carry the derived key")
	}
	if _, _, err := clusterCertificate(nil, "prod"); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func TestTLSLayerPinsClusterKey(t *testing.T) {
	a := newTestLayer(t, testSecret, tlsOptions{})
	b := newTestLayer(t, testSecret, tlsOptions{})
	roundTrip(t, a, b)
	roundTrip(t, b, a)

	evil := newTestLayer(t, wrongSecret, tlsOptions{})
	// Without the secret one can neither connect to a node...
	if c, err := evil.Dial(raft.ServerAddress(a.Addr().String()), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("dial with the wrong secret succeeded")
	}
	waitFor(t, 5*time.Second, "the rejection to be counted", func() bool { return a.Rejected() == 1 })
	// ...nor pose as one.
	if c, err := a.Dial(raft.ServerAddress(evil.Addr().String()), 2*time.Second); err == nil {
		c.Close()
		t.Fatal("dial to a node with the wrong secret succeeded")
	}
	// The listener still serves good peers.
	roundTrip(t, b, a)
	if a.Rejected() != 1 {
		t.Fatalf("rejected %d, want 1", a.Rejected())
	}
}

func TestTLSLayerSurvivesJunkAndStalls(t *testing.T) {
	a := newTestLayer(t, testSecret, tlsOptions{handshakeTimeout: 200 * time.Millisecond})
	b := newTestLayer(t, testSecret, tlsOptions{})

	junk, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	fmt.Fprintf(junk, "GET / HTTP/1.0\r\n\r\n")

	stall, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()

	// A stalled handshake does not hold up the next peer.
	roundTrip(t, b, a)
	waitFor(t, 5*time.Second, "junk and stalled connections to be rejected", func() bool { return a.Rejected() == 2 })
	roundTrip(t, b, a)
}

func TestTLSLayerClose(t *testing.T) {
	a := newTestLayer(t, testSecret, tlsOptions{})
	b := newTestLayer(t, testSecret, tlsOptions{})
	// A connection in use is cut by Close; its reader sees EOF.
	accepted := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		c, err := a.Accept()
		close(accepted)
		if err != nil {
			done <- err
			return
		}
		_, err = c.Read(make([]byte, 1)) // the client never writes
		done <- err
	}()
	c, err := b.Dial(raft.ServerAddress(a.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != io.EOF {
		t.Fatalf("read on a closed layer: %v, want EOF", err)
	}
	if _, err := a.Accept(); err != net.ErrClosed {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.Dial(raft.ServerAddress(b.Addr().String()), time.Second); err == nil {
		t.Fatal("Dial after Close succeeded")
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// freeAddrs reserves n loopback ports (released again before use).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

type tlsCluster struct {
	t     *testing.T
	peers []Peer
	dirs  []string
	nodes []*testNode
}

func newTLSCluster(t *testing.T, n int) *tlsCluster {
	c := &tlsCluster{t: t, nodes: make([]*testNode, n)}
	for i, addr := range freeAddrs(t, n) {
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: addr})
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), "data"))
	}
	for i := range n {
		c.open(i)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			if node != nil {
				node.close(t)
			}
		}
	})
	return c
}

func (c *tlsCluster) open(i int) {
	c.t.Helper()
	node := &testNode{}
	r, err := OpenRaft(RaftConfig{
		NodeID:             c.peers[i].ID,
		Bind:               c.peers[i].Addr,
		DataDir:            c.dirs[i],
		Peers:              c.peers,
		Secret:             testSecret,
		Cluster:            "test",
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		Logger:             testLogger(c.t),
		OnChange:           func() { node.changes.Add(1) },
	})
	if err != nil {
		c.t.Fatalf("open %s: %v", c.peers[i].ID, err)
	}
	node.Raft = r
	c.nodes[i] = node
}

func (c *tlsCluster) close(i int) {
	c.nodes[i].close(c.t)
	c.nodes[i] = nil
}

func TestRaftOverTLS(t *testing.T) {
	c := newTLSCluster(t, 3)
	l := waitLeader(t, c.nodes)
	if err := l.Propose(assign("web", "", 0, "n1")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, c.nodes, "web", "n1", 1)

	// An intruder without the secret cannot reach any node, and the nodes
	// keep accepting each other afterwards.
	evil, err := NewTLSStreamLayer("127.0.0.1:0", wrongSecret, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	for _, p := range c.peers {
		if conn, err := evil.Dial(raft.ServerAddress(p.Addr), 2*time.Second); err == nil {
			conn.Close()
			t.Fatalf("intruder connected to %s", p.ID)
		}
	}
	for _, n := range c.nodes {
		waitFor(t, 5*time.Second, n.id+" to count the intruder", func() bool { return n.RejectedConns() >= 1 })
		if n.Stats()["tls_rejected_conns"] == "0" {
			t.Fatalf("%s: stats do not show the rejection", n.id)
		}
	}
	good, err := NewTLSStreamLayer("127.0.0.1:0", testSecret, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.peers {
		conn, err := good.Dial(raft.ServerAddress(p.Addr), 2*time.Second)
		if err != nil {
			t.Fatalf("good dial to %s after the intruder: %v", p.ID, err)
		}
		conn.Close()
	}
	good.Close()

	// Raft still commits.
	if err := l.Propose(assign("web", "n1", 1, "n2")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, c.nodes, "web", "n2", 2)
}

func TestRaftOverTLSRestart(t *testing.T) {
	c := newTLSCluster(t, 3)
	l := waitLeader(t, c.nodes)
	if err := l.Propose(assign("web", "", 0, "n1")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, c.nodes, "web", "n1", 1)

	// n1 snapshots, so it gets its state back from disk alone.
	if err := c.nodes[0].raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.close(i)
	}
	c.open(0)
	if g := c.nodes[0].View().Group("web"); g.Owner != "n1" || g.Epoch != 1 {
		t.Fatalf("n1 restored %+v from its snapshot, want owner n1 epoch 1", g)
	}

	// The whole cluster comes back from its data dirs and moves on.
	c.open(1)
	c.open(2)
	l = waitLeader(t, c.nodes)
	waitGroup(t, c.nodes, "web", "n1", 1)
	if err := l.Propose(assign("web", "n1", 1, "n3")); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, c.nodes, "web", "n3", 2)
	for _, n := range c.nodes {
		if ev := n.View().Events; len(ev) != 2 {
			t.Fatalf("%s: events %+v", n.id, ev)
		}
	}
}

var floodConns = 70

// TestQuorumSurvivesConnectionFlood: anyone who can open TCP connections to
// the quorum port used to be able to stall elections with idle connections
// that never start TLS. Connections from addresses that are not the
// cluster's are now closed before any handshake, so a flood of them during
// a leader's death does not delay the next leader.
func TestQuorumSurvivesConnectionFlood(t *testing.T) {
	c := newTLSCluster(t, 3)
	l := waitLeader(t, c.nodes)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	// Like the attack seen in the field: 70 idle connections per node that
	// never start TLS, each reopened as soon as the node drops it.
	for _, p := range c.peers {
		for range floodConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// 127.0.0.2 is local but not a cluster node's address.
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					conn, err := d.Dial("tcp", p.Addr)
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					opened.Add(1)
					go func() { <-stop; conn.Close() }()
					_, _ = conn.Read(make([]byte, 1)) // until the node drops it
					conn.Close()
					time.Sleep(5 * time.Millisecond) // then reopen it (a busy loop would only measure CPU starvation)
				}
			}()
		}
	}
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 5*time.Second, "the flood to start", func() bool { return opened.Load() >= int64(3*floodConns) })
	var idx int
	for i, n := range c.nodes {
		if n == l {
			idx = i
		}
	}
	// Kill the leader and one follower, then bring the leader back: the
	// quorum now needs the restarted node, which has no connections yet, so
	// it must complete new handshakes while the flood goes on.
	other := (idx + 1) % len(c.nodes)
	c.close(idx)
	c.close(other)
	killed := time.Now()
	c.open(idx)
	var rest []*testNode
	for _, n := range c.nodes {
		if n != nil {
			rest = append(rest, n)
		}
	}
	nl := waitLeader(t, rest)
	if took := time.Since(killed); took > 2*time.Second {
		t.Fatalf("new leader %s took %v during the flood, want within 2s", nl.id, took)
	}
	for _, n := range rest {
		if n.RejectedConns() == 0 {
			t.Fatalf("%s counted none of %d flood connections as rejected", n.id, opened.Load())
		}
	}
	t.Logf("new leader %s %v after the kill; %d flood connections opened", nl.id, time.Since(killed).Round(time.Millisecond), opened.Load())
}

// TestPerSourceHandshakeCap: one address cannot hold more than a few
// handshakes at once, so it cannot take every slot.
func TestPerSourceHandshakeCap(t *testing.T) {
	l := newTestLayer(t, testSecret, tlsOptions{handshakeTimeout: 10 * time.Second})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxPendingPerSource + 5 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, 5*time.Second, "the connections beyond the per-source cap to be refused", func() bool { return l.Rejected() >= 5 })
	if got := l.Rejected(); got != 5 {
		t.Fatalf("rejected %d, want exactly the 5 beyond the cap of %d", got, maxPendingPerSource)
	}
}
