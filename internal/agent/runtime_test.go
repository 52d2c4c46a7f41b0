package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/baton-ha/baton/internal/clusterkey"
	"github.com/baton-ha/baton/internal/config"
)

// TestRuntimeStartsAndStopsCleanly runs three real agents in this process
// (UDP heartbeats, Raft over TLS, boltdb) on 127.0.0.x, waits for an owner,
// then cancels them all and checks that no goroutine is left behind.
func TestRuntimeStartsAndStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	port := 40000 + r.Intn(20000)
	third := 1 + r.Intn(250)
	text := fmt.Sprintf(`version: 1
cluster: {name: rt, secret: "0123456789abcdef0123456789abcdef", port: %d, profile: fast}
nodes:
  - {name: n1, address: 127.1.%d.1, data_dir: %s}
  - {name: n2, address: 127.1.%d.2, data_dir: %s}
  - {name: w1, address: 127.1.%d.3, data_dir: %s, witness: true}
groups:
  - name: web
    members: [{node: n1, priority: 150}, {node: n2}]
`, port, third, filepath.Join(dir, "n1"), third, filepath.Join(dir, "n2"), third, filepath.Join(dir, "w1"))
	cfg, err := config.Parse([]byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	agents := map[string]*Agent{}
	var mu sync.Mutex
	for _, n := range []string{"n1", "n2", "w1"} {
		a, err := open(Options{Config: cfg, Node: n})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		agents[n] = a
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.loop(ctx); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}()
	}
	checkServedRaftKey(t, cfg, "n1", "w1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := agents["w1"].raft.View()
		if v.Group("web").Owner != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no owner within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
}

// checkServedRaftKey fetches the certificate node serves on its quorum port (as anyone who can connect can) and
// checks that its key is derived from the argon2id-stretched secret, not from the secret itself: the certificate
// must not be a cheap test of a guessed secret.
func checkServedRaftKey(t *testing.T, cfg *config.Config, node, from string) {
	t.Helper()
	var served []byte
	self, err := cfg.NodeByName(node)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := cfg.NodeByName(from)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(peer.Address)}}
	conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(self.Address, strconv.Itoa(cfg.Cluster.Port)), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{"baton-raft/1"}, MinVersion: tls.VersionTLS13,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				served = raw[0]
			}
			return nil
		},
	})
	if err == nil {
		conn.Close()
	}
	if served == nil {
		t.Fatalf("no certificate from %s's quorum port: %v", node, err)
	}
	cert, err := x509.ParseCertificate(served)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := cert.PublicKey.(ed25519.PublicKey)
	keyFrom := func(secret []byte) ed25519.PublicKey {
		seed, err := hkdf.Key(sha256.New, secret, nil, "baton raft tls v1"+cfg.Cluster.Name, ed25519.SeedSize)
		if err != nil {
			t.Fatal(err)
		}
		return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	}
	if pub.Equal(keyFrom(cfg.Secret)) {
		t.Fatal("the served raft certificate's key is derived from the raw secret (no KDF)")
	}
	if !pub.Equal(keyFrom(clusterkey.Derive(cfg.Secret, cfg.Cluster.Name))) {
		t.Fatal("the served raft certificate's key is not derived from the argon2id cluster key")
	}
}
