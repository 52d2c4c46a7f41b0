// Package pgload is the client side of the data-loss tests and benchmarks:
// a writer that inserts sequential integers into PostgreSQL through a front
// door (the VIP), one transaction per integer, and records which ones were
// acknowledged; and a check of which acknowledged integers survive on the
// final primary. A write whose commit returned an error (or never returned)
// is not acknowledged and may or may not survive: only acknowledged writes
// count as lost when missing.
package pgload

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Table is where the writer inserts.
const Table = "baton_load"

// Dialer opens the TCP connection (e.g. from inside a client namespace).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Ack is one acknowledged write.
type Ack struct {
	At time.Time
	I  int64
}

// Writer inserts 1, 2, 3, … until stopped.
type Writer struct {
	cfg    *pgx.ConnConfig
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	acks   []Ack
	errors int
	last   error
}

// Connect parses a connection string (keyword/value or URL) for Start and
// Check, dialling through dial when it is not nil.
func Connect(conn string, dial Dialer) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, err
	}
	if dial != nil {
		cfg.DialFunc = pgconnDial(dial)
	}
	cfg.ConnectTimeout = time.Second
	// On a context deadline, only set a deadline on the socket: no cancel
	// request (see Start).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	return cfg, nil
}

// Prepare creates the table (dropping an old one).
func Prepare(ctx context.Context, cfg *pgx.ConnConfig) error {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "DROP TABLE IF EXISTS "+Table+"; CREATE TABLE "+Table+" (i bigint PRIMARY KEY, at timestamptz DEFAULT now())")
	return err
}

// Start begins writing first, first+1, … Each insert is its own
// transaction, given up (connection closed) after 3 s; on an error the
// writer reconnects after 20 ms.
//
// There is deliberately no statement_timeout and no cancel request: when
// PostgreSQL cancels a commit that waits for a synchronous standby, it
// reports success with a warning although the write is not replicated. Here
// a commit that does not answer in time is abandoned by closing the
// connection, so it counts as not acknowledged, which is what it is.
func Start(cfg *pgx.ConnConfig, first int64) *Writer {
	w := &Writer{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
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
	var c *pgx.Conn
	defer func() {
		if c != nil {
			c.Close(context.Background())
		}
	}()
	next := first
	for ctx.Err() == nil {
		if c == nil {
			var err error
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			c, err = pgx.ConnectConfig(cctx, w.cfg)
			ccancel()
			if err != nil {
				w.fail(err)
				c = nil
				sleep(ctx, 20*time.Millisecond)
				continue
			}
		}
		i := next
		next++
		ictx, icancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := c.Exec(ictx, "INSERT INTO "+Table+" (i) VALUES ($1)", i)
		icancel()
		if err != nil {
			w.fail(err)
			c.Close(context.Background())
			c = nil
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, Ack{At: time.Now(), I: i})
		w.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	w.errors++
	w.last = err
	w.mu.Unlock()
}

// Acks returns the acknowledged writes so far.
func (w *Writer) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// AckedAfter reports whether a write was acknowledged after t.
func (w *Writer) AckedAfter(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks) > 0 && w.acks[len(w.acks)-1].At.After(t)
}

// Stop ends the writer and returns every acknowledged write, the number of
// failed attempts and the last error.
func (w *Writer) Stop() (acks []Ack, errors int, last error) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks), w.errors, w.last
}

// Gap is the longest time between two consecutive acknowledgements, the
// second of them after t: the write outage a fault at t caused.
func Gap(acks []Ack, t time.Time) time.Duration {
	var gap time.Duration
	for i := 1; i < len(acks); i++ {
		if acks[i].At.After(t) {
			gap = max(gap, acks[i].At.Sub(acks[i-1].At))
		}
	}
	return gap
}

// Check reads the table on a primary and returns the acknowledged writes
// that are missing there.
func Check(ctx context.Context, cfg *pgx.ConnConfig, acks []Ack) (lost []int64, rows int64, err error) {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close(context.Background())
	have := map[int64]bool{}
	r, err := c.Query(ctx, "SELECT i FROM "+Table)
	if err != nil {
		return nil, 0, err
	}
	for r.Next() {
		var i int64
		if err := r.Scan(&i); err != nil {
			return nil, 0, err
		}
		have[i] = true
	}
	if err := r.Err(); err != nil {
		return nil, 0, err
	}
	for _, a := range acks {
		if !have[a.I] {
			lost = append(lost, a.I)
		}
	}
	return lost, int64(len(have)), nil
}

// Digest returns the row count and sum of i on a server, to compare replicas.
func Digest(ctx context.Context, cfg *pgx.ConnConfig) (string, error) {
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close(context.Background())
	var n int64
	var sum, md5 string
	if err := c.QueryRow(ctx, "SELECT count(*), coalesce(sum(i), 0)::text, coalesce(md5(string_agg(i::text, ',' ORDER BY i)), '') FROM "+Table).Scan(&n, &sum, &md5); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d rows, sum %s, md5 %s", n, sum, md5), nil
}
