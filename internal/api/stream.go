package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/quorum"
)

// Stream timings. They are variables so that tests can shorten them.
var (
	// streamInterval bounds how often the hub takes a snapshot: a change
	// reaches the browser within about this long, and the agent loop answers
	// at most one snapshot request per interval however many clients listen.
	streamInterval = 100 * time.Millisecond
	// streamRefresh re-sends the status although nothing the page keys on
	// changed, so "last heard", positions and lag stay current.
	streamRefresh = time.Second
	// streamKeepAlive is the comment that keeps idle proxies and the
	// browser from closing a quiet stream.
	streamKeepAlive = 15 * time.Second
	// streamWriteTimeout ends a write to a client that stopped reading, so
	// its handler returns once the hub has dropped it.
	streamWriteTimeout = 10 * time.Second
	// streamBuffer is how many frames may wait for one client: at ~10 status
	// frames a second a stalled client is dropped within a few seconds.
	streamBuffer = 32
	// leaseSlack is how far a lease may be from where the last status sent
	// says it would be by now before the change is worth a frame: a renewed
	// lease is, a lease that just counts down (the page animates it) is not.
	leaseSlack = 100 * time.Millisecond
)

// retryMs is the reconnection delay the stream asks browsers for.
const retryMs = 1000

// hub takes one snapshot of the agent's view at a time and fans it out to
// every stream client. The agent loop only ever signals it (Backend.Changed)
// and answers one Status call per interval, so the number of clients never
// costs the loop anything; slow clients are dropped, never waited for.
type hub struct {
	b   Backend
	log *slog.Logger

	start   sync.Once
	snap    *snapshotter
	mu      sync.Mutex
	clients map[*streamClient]struct{}
	join    chan struct{} // a client arrived: send it a status soon
	dropped atomic.Int64  // clients dropped because they did not keep up
}

type streamClient struct {
	remote string // for the log line that says who was dropped
	frames chan []byte
	gone   chan struct{} // closed when the hub dropped the client or stopped
}

func newHub(b Backend, log *slog.Logger) *hub {
	return &hub{b: b, log: log, clients: map[*streamClient]struct{}{}, join: make(chan struct{}, 1)}
}

// subscribe registers a client and starts the hub on first use.
func (h *hub) subscribe(remote string) *streamClient {
	h.start.Do(func() {
		// What the history holds now is what the first clients read as
		// their backlog after subscribing; anything added later is new.
		h.snap = &snapshotter{events: map[uint64]quorum.Event{}}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "/v1/events/stream", nil)
		if ev, err := h.b.Events(req); err == nil {
			for _, e := range ev {
				h.snap.events[e.Seq] = e
			}
		}
		go h.run()
	})
	c := &streamClient{remote: remote, frames: make(chan []byte, streamBuffer), gone: make(chan struct{})}
	h.mu.Lock()
	select {
	case <-h.b.Stopped():
		close(c.gone)
	default:
		h.clients[c] = struct{}{}
	}
	h.mu.Unlock()
	select {
	case h.join <- struct{}{}:
	default:
	}
	return c
}

func (h *hub) unsubscribe(c *streamClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.gone)
	}
}

// broadcast hands a frame to every client without waiting: a client whose
// buffer is full has stopped reading and is dropped.
func (h *hub) broadcast(frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c.frames <- frame:
		default:
			delete(h.clients, c)
			close(c.gone)
			h.dropped.Add(1)
			h.log.Warn("event stream client dropped: it did not read its last frames", "remote", c.remote, "buffer", streamBuffer)
		}
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients)
}

// run is the hub's goroutine: it ends, closing every stream, when the agent stops.
func (h *hub) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-h.b.Stopped()
		cancel()
	}()
	defer func() {
		h.mu.Lock()
		for c := range h.clients {
			delete(h.clients, c)
			close(c.gone)
		}
		h.mu.Unlock()
	}()
	snap := h.snap
	timer := time.NewTimer(0)
	<-timer.C
	pending, force := false, false
	last := time.Time{}
	arm := func() {
		if !pending {
			pending = true
			timer.Reset(max(0, streamInterval-time.Since(last)))
		}
	}
	refresh := time.NewTicker(streamRefresh)
	defer refresh.Stop()
	keep := time.NewTicker(streamKeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.b.Changed():
			arm()
		case <-h.join:
			force = true
			arm()
		case <-refresh.C:
			if time.Since(last) >= streamRefresh/2 {
				force = true
				arm()
			}
		case <-keep.C:
			h.broadcast([]byte(": keep-alive\n\n"))
		case <-timer.C:
			pending = false
			last = time.Now()
			if h.count() == 0 {
				force = false
				continue
			}
			frames, err := snap.take(ctx, h.b, force)
			if err != nil {
				if ctx.Err() == nil {
					h.log.Debug("event stream snapshot failed", "err", err)
				}
				continue
			}
			force = false
			for _, f := range frames {
				h.broadcast(f)
			}
		}
	}
}

// snapshotter turns successive snapshots into the frames that changed.
type snapshotter struct {
	sig    []byte
	leases map[string]sentLease
	events map[uint64]quorum.Event
	req    *http.Request
}

type sentLease struct {
	at time.Time
	ms int64
}

func (s *snapshotter) take(ctx context.Context, b Backend, force bool) ([][]byte, error) {
	if s.req == nil || s.req.Context() != ctx {
		// The Backend answers requests; the hub's own has the hub's lifetime.
		s.req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "/v1/events/stream", nil)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := s.req.WithContext(ctx)
	st, err := b.Status(req)
	if err != nil {
		return nil, err
	}
	// A browser's EventSource cannot send the API token, and the stream is
	// shared by every viewer: check details are always the public ones.
	publicChecks(&st)
	ev, err := b.Events(req)
	if err != nil {
		return nil, err
	}
	var frames [][]byte
	for _, e := range ev {
		// Entries change after they were added (the new owner reports its
		// takeover time later), so changed ones are sent again, same id.
		if old, ok := s.events[e.Seq]; !ok || !sameEvent(old, e) {
			s.events[e.Seq] = e
			f, err := historyFrame(e)
			if err != nil {
				return nil, err
			}
			frames = append(frames, f)
		}
	}
	if len(s.events) > 2*quorum.MaxEvents {
		keep := map[uint64]quorum.Event{}
		for _, e := range ev {
			keep[e.Seq] = e
		}
		s.events = keep
	}
	now := time.Now()
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	sig, leases := signature(st, now)
	if force || !bytes.Equal(sig, s.sig) || s.leaseMoved(leases, now) {
		s.sig, s.leases = sig, leases
		frames = append(frames, statusFrame(body))
	}
	return frames, nil
}

// leaseMoved reports whether a lease is more than leaseSlack away from where
// the status last sent says it would be by now (renewed, or lost early).
func (s *snapshotter) leaseMoved(leases map[string]sentLease, now time.Time) bool {
	if len(leases) != len(s.leases) {
		return true
	}
	for name, l := range leases {
		old, ok := s.leases[name]
		if !ok {
			return true
		}
		expect := old.ms - now.Sub(old.at).Milliseconds()
		if d := time.Duration(l.ms-max(expect, 0)) * time.Millisecond; d > leaseSlack || d < -leaseSlack {
			return true
		}
	}
	return false
}

// signature is the part of a status whose change is worth a frame at once:
// owners, epochs, roles, health, liveness, maintenance, notes. Clocks that
// move on their own (last heard, lease remaining, positions) are left out;
// leases are returned apart, see leaseMoved.
func signature(st core.Status, now time.Time) ([]byte, map[string]sentLease) {
	leases := map[string]sentLease{}
	st.Generated, st.Applied, st.RejectedPackets, st.RejectedQuorumConns = time.Time{}, 0, 0, 0
	st.Nodes = slices.Clone(st.Nodes)
	for i := range st.Nodes {
		st.Nodes[i].LastSeenMs = 0
	}
	st.Groups = slices.Clone(st.Groups)
	for i := range st.Groups {
		g := &st.Groups[i]
		if g.LeaseMs > 0 {
			leases[g.Name] = sentLease{at: now, ms: g.LeaseMs}
		}
		g.LeaseMs = 0
		g.Members = slices.Clone(g.Members)
		for j := range g.Members {
			g.Members[j].Pos, g.Members[j].LagB = 0, 0
		}
		g.Units = slices.Clone(g.Units)
		for j := range g.Units {
			if g.Units[j].LeaseMs > 0 {
				leases[g.Units[j].Name] = sentLease{at: now, ms: g.Units[j].LeaseMs}
			}
			g.Units[j].LeaseMs = 0
		}
		if cs, ok := g.Checks.([]health.CheckState); ok {
			type checkSig struct {
				Name    string
				Healthy bool
				OK      bool
				Detail  string
			}
			sigs := make([]checkSig, len(cs))
			for j, c := range cs {
				sigs[j] = checkSig{c.Name, c.Healthy, c.Last.OK, c.Last.Detail}
			}
			g.Checks = sigs
		}
	}
	b, _ := json.Marshal(st)
	return b, leases
}

// sameEvent compares two versions of a history entry (entries are small;
// the hub compares at most MaxEvents of them per snapshot).
func sameEvent(a, b quorum.Event) bool { return reflect.DeepEqual(a, b) }

func historyFrame(e quorum.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "id: %d\nevent: history\ndata: %s\n\n", e.Seq, b), nil
}

// statusFrame carries no id: the browser's Last-Event-ID stays the newest
// history entry, which is what a reconnect must resume from.
func statusFrame(body []byte) []byte {
	return fmt.Appendf(nil, "event: status\ndata: %s\n\n", body)
}

// stream serves GET /v1/events/stream: on connect the history after
// Last-Event-ID (all of it without one), then the current status, then
// status and history frames as they change.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	after := uint64(0)
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Last-Event-ID "+quote(v)+" is not a history sequence number; reconnect without it to get the whole history")
			return
		}
		after = n
	}
	rc := http.NewResponseController(w)
	// A stream lives for hours: the server's write timeout is replaced by
	// one per write (below), which only a client that stopped reading runs
	// into. (Its read timeout ends once the handler runs.)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	// Subscribe before reading the backlog so that nothing falls between
	// the two; an entry in both is sent twice with the same id, harmlessly.
	c := s.hub.subscribe(r.RemoteAddr)
	defer s.hub.unsubscribe(c)
	ev, err := s.b.Events(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", retryMs)
	for _, e := range ev {
		if e.Seq > after {
			f, err := historyFrame(e)
			if err != nil {
				return
			}
			buf.Write(f)
		}
	}
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(buf.Bytes()) {
		return
	}
	for {
		select {
		case f := <-c.frames:
			if !write(f) {
				return
			}
		case <-c.gone:
			return
		case <-r.Context().Done():
			return
		}
	}
}
