package agent

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

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
cluster: {name: rt, secret: "0123456789abcdef0123", port: %d, profile: fast}
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
