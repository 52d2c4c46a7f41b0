package redislab

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/baton-ha/baton/internal/pgload"
)

// Dialer opens the TCP connection (from inside the client namespace).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// ClientTimeout is the writer's read and dial timeout: a write that gets no answer within it (a primary whose link
// went down) counts as failed and the client reconnects. The same for Baton and Sentinel.
const ClientTimeout = 500 * time.Millisecond

// Writer sets k<i> = i for i = first, first+1, … one command at a time and records the acknowledged ones. With
// Wait it follows each SET with WAIT 1 <WaitTimeout> and counts the write acknowledged only if a replica confirmed
// it: what a client must do for zero loss with Baton's sync: on (see the driver README).
type Writer struct {
	c    redis.UniversalClient
	wait bool
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	acks   []pgload.Ack
	errors int
	last   error
}

// WaitTimeout bounds WAIT 1 in the writer with Wait.
const WaitTimeout = time.Second

// Options returns the client options every trial uses (one connection, no retries: a retried write would blur
// which attempt was acknowledged).
func Options(addr string, dial Dialer) *redis.Options {
	return &redis.Options{Addr: addr, Password: Password, Protocol: 2, MaxRetries: -1, PoolSize: 1, DialerRetries: 1,
		DialTimeout: ClientTimeout, ReadTimeout: ClientTimeout, WriteTimeout: ClientTimeout, ContextTimeoutEnabled: true,
		DisableIdentity: true, Dialer: dial, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}}
}

// StartWriter begins writing through c (closed by Stop).
func StartWriter(c redis.UniversalClient, wait bool, first int64) *Writer {
	w := &Writer{c: c, wait: wait, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(first)
	return w
}

func (w *Writer) run(first int64) {
	defer close(w.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-w.stop
		cancel()
	}()
	for i := first; ctx.Err() == nil; i++ {
		err := w.c.Set(ctx, "k"+strconv.FormatInt(i, 10), i, 0).Err()
		if err == nil && w.wait {
			var n int64
			wctx, wcancel := context.WithTimeout(ctx, WaitTimeout+ClientTimeout)
			n, err = w.c.Do(wctx, "WAIT", 1, WaitTimeout.Milliseconds()).Int64()
			wcancel()
			if err == nil && n < 1 {
				err = fmt.Errorf("WAIT 1: no replica confirmed k%d", i)
			}
		}
		if err != nil {
			w.mu.Lock()
			w.errors++
			w.last = err
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, pgload.Ack{At: time.Now(), I: i})
		w.mu.Unlock()
	}
}

// AckedAfter reports whether a write was acknowledged after t.
func (w *Writer) AckedAfter(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks) > 0 && w.acks[len(w.acks)-1].At.After(t)
}

// Stop ends the writer and returns every acknowledged write, the number of failed attempts and the last error.
func (w *Writer) Stop() (acks []pgload.Ack, errors int, last error) {
	close(w.stop)
	<-w.done
	w.c.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks), w.errors, w.last
}

// SetBytes is what the writer's SET k<i> i adds to the replication stream.
func SetBytes(i int64) uint64 {
	k, v := "k"+strconv.FormatInt(i, 10), strconv.FormatInt(i, 10)
	return uint64(len(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)))
}

// Check returns the acknowledged writes missing on the server c talks to.
func Check(ctx context.Context, c *redis.Client, acks []pgload.Ack) ([]int64, error) {
	var lost []int64
	for start := 0; start < len(acks); start += 1000 {
		batch := acks[start:min(len(acks), start+1000)]
		keys := make([]string, len(batch))
		for i, a := range batch {
			keys[i] = "k" + strconv.FormatInt(a.I, 10)
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			if v == nil {
				lost = append(lost, batch[i].I)
			}
		}
	}
	return lost, nil
}
