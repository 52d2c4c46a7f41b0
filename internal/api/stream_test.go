package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/quorum"
)

// streamBackend is a fakeBackend whose status and history tests change
// while streams are open; change() plays the agent loop's signal.
type streamBackend struct {
	fakeBackend
	mu          sync.Mutex
	ev          []quorum.Event
	changed     chan struct{}
	stopped     chan struct{}
	statusCalls atomic.Int64
}

func newStreamBackend(t *testing.T) *streamBackend {
	b := &streamBackend{changed: make(chan struct{}, 1), stopped: make(chan struct{})}
	b.st = core.Status{Node: "n1", Leader: "w1", LeaseMs: 400,
		Nodes:  []core.NodeStatus{{Name: "n1", Self: true, Alive: true}, {Name: "n2", Alive: true}, {Name: "w1", Alive: true, Witness: true}},
		Groups: []core.GroupStatus{{Name: "web", Owner: "n1", Epoch: 1, Role: "active"}}}
	t.Cleanup(func() { close(b.stopped) })
	return b
}

func (b *streamBackend) Status(*http.Request) (core.Status, error) {
	b.statusCalls.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.st
	st.Groups = append([]core.GroupStatus(nil), st.Groups...)
	return st, nil
}
func (b *streamBackend) Events(*http.Request) ([]quorum.Event, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]quorum.Event(nil), b.ev...), nil
}
func (b *streamBackend) Changed() <-chan struct{} { return b.changed }
func (b *streamBackend) Stopped() <-chan struct{} { return b.stopped }

// change edits the state under the lock and signals, as the agent loop does.
func (b *streamBackend) change(f func(b *streamBackend)) {
	b.mu.Lock()
	f(b)
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

type sseFrame struct{ id, event, data string }

// sseReader parses a text/event-stream the way a browser does (comments
// and retry: lines skipped).
type sseReader struct {
	t    *testing.T
	r    *bufio.Reader
	body io.Closer
}

func (s *sseReader) next() (sseFrame, error) {
	var f sseFrame
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return f, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f.event != "" || f.data != "" {
				return f, nil
			}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry: "):
		case strings.HasPrefix(line, "id: "):
			f.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			f.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			f.data += strings.TrimPrefix(line, "data: ")
		default:
			s.t.Errorf("unexpected stream line %q", line)
		}
	}
}

// until reads frames until match accepts one, or fails the test after d.
func (s *sseReader) until(d time.Duration, what string, match func(sseFrame) bool) sseFrame {
	s.t.Helper()
	got := make(chan sseFrame, 1)
	go func() {
		for {
			f, err := s.next()
			if err != nil {
				close(got)
				return
			}
			if match(f) {
				got <- f
				return
			}
		}
	}()
	select {
	case f, ok := <-got:
		if !ok {
			s.t.Fatalf("stream ended before %s", what)
		}
		return f
	case <-time.After(d):
		s.body.Close() // ends the reader goroutine
		s.t.Fatalf("no %s within %v", what, d)
	}
	return sseFrame{}
}

func openStream(t *testing.T, url, lastID string) *sseReader {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/events/stream", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return &sseReader{t: t, r: bufio.NewReader(resp.Body), body: resp.Body}
}

func events(n int) []quorum.Event {
	var ev []quorum.Event
	for i := 1; i <= n; i++ {
		ev = append(ev, quorum.Event{Seq: uint64(i), Group: "web", Epoch: uint64(i), To: "n1", Reason: quorum.ReasonFailure})
	}
	return ev
}

func server(t *testing.T, b Backend) (*Server, *httptest.Server) {
	s := New(b, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestStreamResumesAfterLastEventID(t *testing.T) {
	b := newStreamBackend(t)
	b.ev = events(5)
	_, srv := server(t, b)

	all := openStream(t, srv.URL, "")
	for want := 1; want <= 5; want++ {
		f := all.until(2*time.Second, fmt.Sprintf("history entry %d", want), func(f sseFrame) bool { return true })
		if f.event != "history" || f.id != fmt.Sprint(want) {
			t.Fatalf("frame %d without Last-Event-ID: %+v, want history id %d", want, f, want)
		}
	}
	all.until(2*time.Second, "the first status", func(f sseFrame) bool { return f.event == "status" })

	// A browser that reconnects after entry 3 gets 4 and 5, then the status.
	resumed := openStream(t, srv.URL, "3")
	for _, want := range []string{"4", "5"} {
		if f := resumed.until(2*time.Second, "history "+want, func(sseFrame) bool { return true }); f.id != want || f.event != "history" {
			t.Fatalf("resumed after 3: got %+v, want history id %s", f, want)
		}
	}
	f := resumed.until(2*time.Second, "status after the backlog", func(sseFrame) bool { return true })
	var st core.Status
	if f.event != "status" || f.id != "" || json.Unmarshal([]byte(f.data), &st) != nil || st.Groups[0].Owner != "n1" {
		t.Fatalf("after the backlog: %+v, want a status frame without an id (so Last-Event-ID stays the history's)", f)
	}

	// A new entry, and a later annotation of it (the takeover time), reach
	// both streams with the entry's seq as id.
	b.change(func(b *streamBackend) {
		b.ev = append(b.ev, quorum.Event{Seq: 6, Group: "web", Epoch: 6, From: "n1", To: "n2", Reason: quorum.ReasonFailure, DetectMs: 410})
		b.st.Groups[0].Owner, b.st.Groups[0].Epoch = "n2", 6
	})
	for _, s := range []*sseReader{all, resumed} {
		s.until(2*time.Second, "history 6", func(f sseFrame) bool { return f.event == "history" && f.id == "6" })
		s.until(2*time.Second, "status with owner n2", func(f sseFrame) bool {
			return f.event == "status" && strings.Contains(f.data, `"owner":"n2"`)
		})
	}
	b.change(func(b *streamBackend) { b.ev[5].TakeoverMs, b.ev[5].TakeoverRecorded = 37, true })
	f = resumed.until(2*time.Second, "the annotated history 6", func(f sseFrame) bool { return f.event == "history" })
	if f.id != "6" || !strings.Contains(f.data, `"takeover_ms":37`) {
		t.Fatalf("annotation: %+v, want history 6 again with takeover_ms 37", f)
	}
}

func TestStreamRejectsBadLastEventID(t *testing.T) {
	_, srv := server(t, newStreamBackend(t))
	req, _ := http.NewRequest("GET", srv.URL+"/v1/events/stream", nil)
	req.Header.Set("Last-Event-ID", "yesterday")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `Last-Event-ID \"yesterday\" is not a history sequence number`) {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
}

// The loop signals on every event it handles (heartbeats: dozens a second);
// the hub must still ask for at most one snapshot per interval.
func TestStreamSnapshotsAtMostEveryInterval(t *testing.T) {
	b := newStreamBackend(t)
	_, srv := server(t, b)
	s := openStream(t, srv.URL, "")
	s.until(2*time.Second, "the first status", func(f sseFrame) bool { return f.event == "status" })
	before := b.statusCalls.Load()
	const run = time.Second
	for end := time.Now().Add(run); time.Now().Before(end); time.Sleep(time.Millisecond) {
		b.change(func(*streamBackend) {})
	}
	calls := b.statusCalls.Load() - before
	if max := int64(run/streamInterval) + 3; calls > max {
		t.Fatalf("%d Status calls in %v of constant signals, want at most %d (one per %v)", calls, run, max, streamInterval)
	}
	t.Logf("%d snapshots in %v of ~1000 signals", calls, run)
}

// A client that never reads fills its socket, then its frame buffer; the
// hub drops it without ever waiting, and everyone else keeps getting frames.
func TestStreamDropsClientThatNeverReads(t *testing.T) {
	// A small buffer and a write timeout longer than it takes to fill it,
	// so that it is the hub that drops the client, not its own write.
	oldTimeout, oldBuffer := streamWriteTimeout, streamBuffer
	streamWriteTimeout, streamBuffer = 3*time.Second, 4
	t.Cleanup(func() { streamWriteTimeout, streamBuffer = oldTimeout, oldBuffer })
	b := newStreamBackend(t)
	s, srv := server(t, b)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	reader := openStream(t, srv.URL, "")
	waitFor(t, 2*time.Second, "both clients subscribed", func() bool { return s.hub.count() == 2 })

	// Each change is a 256 KiB status frame: the stalled socket is full
	// after a few, then its buffer of streamBuffer frames.
	pad := strings.Repeat("x", 256<<10)
	stop := make(chan struct{})
	done := make(chan struct{})
	var slowest atomic.Int64 // longest change() call: the agent loop's cost
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(streamInterval):
			}
			t0 := time.Now()
			b.change(func(b *streamBackend) { b.st.Groups[0].Note = fmt.Sprint(i, pad) })
			if d := time.Since(t0); int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
		}
	}()
	defer func() { close(stop); <-done }()
	seen := 0
	deadline := time.Now().Add(20 * time.Second)
	for s.hub.dropped.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the client that never reads was not dropped within 20s (%d clients)", s.hub.count())
		}
		reader.until(3*time.Second, "a status while the other client stalls", func(f sseFrame) bool { return f.event == "status" })
		seen++
	}
	waitFor(t, 2*time.Second, "only the reading client left", func() bool { return s.hub.count() == 1 })
	// The reader still gets changes after the drop.
	reader.until(3*time.Second, "a status after the drop", func(f sseFrame) bool { return f.event == "status" })
	if d := time.Duration(slowest.Load()); d > 50*time.Millisecond {
		t.Errorf("signalling a change took up to %v: the loop must never wait for the stream", d)
	}
	t.Logf("stalled client dropped after the reader got %d statuses; longest signal %v", seen, time.Duration(slowest.Load()))
}

func TestStreamEndsWhenTheAgentStops(t *testing.T) {
	b := &streamBackend{changed: make(chan struct{}, 1), stopped: make(chan struct{})}
	b.st = core.Status{Node: "n1"}
	_, srv := server(t, b)
	s := openStream(t, srv.URL, "")
	s.until(2*time.Second, "the first status", func(f sseFrame) bool { return f.event == "status" })
	close(b.stopped)
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := s.next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Fatal("the stream did not end within 3s of the agent stopping")
	}
}

func TestUIServedAndSwitchable(t *testing.T) {
	b := newStreamBackend(t)
	_, srv := server(t, b)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	if resp, body := get("/ui/"); resp.StatusCode != 200 || !strings.Contains(body, `<script src="app.js"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("/ui/: %d %v\n%.200s", resp.StatusCode, resp.Header, body)
	}
	for _, f := range []string{"app.js", "style.css"} {
		if resp, body := get("/ui/" + f); resp.StatusCode != 200 || len(body) < 1000 {
			t.Errorf("/ui/%s: %d, %d bytes", f, resp.StatusCode, len(body))
		}
	}
	if resp, _ := get("/ui"); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d → %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}

	off := &noUI{newStreamBackend(t)}
	_, srv2 := server(t, off)
	resp, err := http.Get(srv2.URL + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(body), "api.ui: false") {
		t.Fatalf("with api.ui false: %d %s", resp.StatusCode, body)
	}
}

type noUI struct{ *streamBackend }

func (noUI) UIEnabled() bool { return false }

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not %s within %v", what, d)
		}
	}
}

// Which changes are worth a status frame at once, and which the page
// follows by itself (clocks) or gets with the once-a-second refresh.
func TestStreamSendsStatusOnViewChangesOnly(t *testing.T) {
	b := newStreamBackend(t)
	b.st.Groups[0].LeaseMs = 400
	b.st.Groups[0].Checks = []health.CheckState{{Name: "tcp[0]", Healthy: true, Last: health.Result{OK: true, Detail: "ok", Took: time.Millisecond}}}
	b.st.Nodes[1].LastSeenMs = 10
	s := &snapshotter{events: map[uint64]quorum.Event{}}
	ctx := t.Context()
	take := func() bool {
		t.Helper()
		frames, err := s.take(ctx, b, false)
		if err != nil {
			t.Fatal(err)
		}
		return len(frames) > 0
	}
	if !take() {
		t.Fatal("the first snapshot sent no status")
	}
	for _, tc := range []struct {
		name string
		edit func(st *core.Status)
		send bool
	}{
		{"nothing changed", func(*core.Status) {}, false},
		{"last heard, generated, applied index", func(st *core.Status) {
			st.Nodes[1].LastSeenMs, st.Generated, st.Applied = 40, time.Now(), st.Applied+5
		}, false},
		{"a probe ran again (took, at, consecutive)", func(st *core.Status) {
			st.Groups[0].Checks = []health.CheckState{{Name: "tcp[0]", Healthy: true, Consecutive: 9,
				Last: health.Result{OK: true, Detail: "ok", Took: 3 * time.Millisecond, At: time.Now()}}}
		}, false},
		{"a member row appeared", func(st *core.Status) { st.Groups[0].Members = []core.MemberStatus{{Node: "n1", Pos: 99, LagB: 3}} }, true},
		{"only the position moved again", func(st *core.Status) { st.Groups[0].Members[0].Pos, st.Groups[0].Members[0].LagB = 200, 7 }, false},
		{"a check failed", func(st *core.Status) {
			st.Groups[0].Checks = []health.CheckState{{Name: "tcp[0]", Healthy: false, Last: health.Result{Detail: "refused"}}}
		}, true},
		{"a peer died", func(st *core.Status) { st.Nodes[1].Alive = false }, true},
		{"the owner changed", func(st *core.Status) { st.Groups[0].Owner, st.Groups[0].Epoch = "n2", 2 }, true},
		{"the lease was renewed", func(st *core.Status) { st.Groups[0].LeaseMs = 400 + 2*leaseSlack.Milliseconds() }, true},
		{"maintenance", func(st *core.Status) { st.Groups[0].Maintenance = true }, true},
		{"no leader", func(st *core.Status) { st.Leader = "" }, true},
	} {
		b.change(func(b *streamBackend) { tc.edit(&b.st) })
		if got := take(); got != tc.send {
			t.Errorf("%s: status sent %v, want %v", tc.name, got, tc.send)
		}
	}
	// A lease that counts down as the last frame said sends nothing; one
	// that stops short of that (renewed, or lost early) does.
	b.change(func(b *streamBackend) { b.st.Groups[0].LeaseMs = 400 })
	take()
	time.Sleep(50 * time.Millisecond)
	b.change(func(b *streamBackend) { b.st.Groups[0].LeaseMs = 350 })
	if take() {
		t.Error("a lease counting down as expected sent a status")
	}
	b.change(func(b *streamBackend) { b.st.Groups[0].LeaseMs = 0 })
	if !take() {
		t.Error("a lease lost early sent no status")
	}
}

// The agent's server bounds every request's read and write time; a stream
// must outlive both.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	oldRefresh := streamRefresh
	streamRefresh = 100 * time.Millisecond
	t.Cleanup(func() { streamRefresh = oldRefresh })
	b := newStreamBackend(t)
	srv := httptest.NewUnstartedServer(New(b, slog.New(slog.DiscardHandler)))
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	s := openStream(t, srv.URL, "")
	end := time.Now().Add(1500 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		s.until(time.Second, fmt.Sprintf("status %d, %v after connecting", n+1, time.Until(end)), func(f sseFrame) bool { return f.event == "status" })
		n++
	}
	t.Logf("%d statuses over 1.5s through 300ms server timeouts", n)
}

// TestStreamStatusHidesCheckCredentials: the event stream (no token: an
// EventSource cannot send one) carries only the public check details.
func TestStreamStatusHidesCheckCredentials(t *testing.T) {
	b := newStreamBackend(t)
	b.token = "tok"
	res := health.Result{Detail: "http 503 from http://u:hunter2@127.0.0.1/", Redacted: "http 503 from http://u:xxxxx@127.0.0.1/"}
	b.st.Groups[0].Checks = []health.CheckState{{Name: "http[0]", Type: "http", Last: res}}
	_, srv := server(t, b)
	s := openStream(t, srv.URL, "")
	f := s.until(5*time.Second, "a status frame", func(f sseFrame) bool { return f.event == "status" })
	if strings.Contains(f.data, "hunter2") || !strings.Contains(f.data, "u:xxxxx@") {
		t.Fatalf("status frame: %s", f.data)
	}
}
