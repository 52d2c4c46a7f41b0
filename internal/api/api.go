// Package api serves an agent's HTTP API: status, history, role endpoints for
// load balancers, health and readiness. Responses are JSON; errors are
// {"error": "..."} with a 4xx/5xx status.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/api/ui"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/quorum"
)

// Backend is what the API needs from the running agent. Calls may block
// briefly (they are answered by the agent's loop) and must honour the
// request's context.
type Backend interface {
	Status(r *http.Request) (core.Status, error)
	Events(r *http.Request) ([]quorum.Event, error)
	Ready() bool
	// TransferLeadership moves quorum leadership to the named voter.
	TransferLeadership(r *http.Request, to string) error
	// Token is the API token mutations must carry ("" refuses all mutations).
	Token() string
	// LeaderAPI returns the quorum leader's API address, and whether that is this node.
	LeaderAPI() (addr string, self bool)
	// Switchover hands group to `to` ("" = best standby) and waits for the new owner.
	Switchover(r *http.Request, group, to string) (agent.SwitchoverResult, error)
	// Failover forces group onto `to` although the sync policy refuses it
	// (the old owner's lease must be gone), and waits for the commit.
	Failover(r *http.Request, group, to string) (agent.SwitchoverResult, error)
	// Maintenance turns maintenance on or off for a group ("" = cluster-wide).
	Maintenance(r *http.Request, group string, on bool) error
	// Endpoints returns where a group is served now (a core.ErrUnknownGroup error for an
	// unknown group).
	Endpoints(r *http.Request, group string) (core.Endpoints, error)
	// AppliedIndex is the index of the last quorum entry this node applied;
	// WaitApplied returns once it reached index (or ctx ends). A mutation
	// forwarded to the leader is answered only once the answering node has
	// applied it, so a read right after it on the same node sees it.
	AppliedIndex() uint64
	WaitApplied(ctx context.Context, index uint64) error
	// ReadIndex, on the quorum leader, returns an applied index that holds
	// every change acknowledged before the call, once the leader confirmed
	// with a quorum that it still leads (core.ErrNotLeader elsewhere). A
	// node that applied it answers reads as the leader would.
	ReadIndex(ctx context.Context) (uint64, error)
	// MetricsHandler serves Prometheus metrics.
	MetricsHandler() http.Handler
	// Crash makes the agent exit at once without handing off, as a crash
	// would (failure drills); its VIP fence still removes the VIPs.
	Crash()
	// Changed receives a value (coalesced, never blocking the agent) when
	// the agent's view may have changed; the event stream then calls Status.
	Changed() <-chan struct{}
	// Stopped is closed when the agent stops: event streams end then.
	Stopped() <-chan struct{}
	// UIEnabled reports whether to serve the dashboard at /ui/ (api.ui).
	UIEnabled() bool
	// Reload re-reads this agent's config file and applies it; a refused
	// file is an *agent.ReloadError and the running config stays.
	Reload(r *http.Request) (agent.ReloadResult, error)
	// RemoveVoter takes a dead node out of the quorum now (leader only).
	RemoveVoter(r *http.Request, node string) (agent.NodeRemoval, error)
}

// Server is the HTTP handler.
type Server struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
	hub *hub
	// scheme and client reach the other agents' APIs (forwarded mutations,
	// read indexes): http, or https with api.tls.
	scheme string
	client *http.Client
}

// Option configures a Server.
type Option func(*Server)

// WithPeerTLS makes the Server reach the other agents over https, checking
// their certificates with cfg (api.tls: the agents serve HTTPS only).
func WithPeerTLS(cfg *tls.Config) Option {
	return func(s *Server) {
		s.scheme = "https"
		s.client = &http.Client{Timeout: forwardClient.Timeout, Transport: &http.Transport{TLSClientConfig: cfg, Proxy: nil}}
	}
}

// New builds the handler.
func New(b Backend, log *slog.Logger, opts ...Option) *Server {
	s := &Server{b: b, log: log, mux: http.NewServeMux(), hub: newHub(b, log), scheme: "http", client: forwardClient}
	for _, o := range opts {
		o(s)
	}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /v1/events/stream", s.stream)
	if b.UIEnabled() {
		s.mux.Handle("GET /ui/", http.StripPrefix("/ui/", ui.Handler()))
		s.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	} else {
		s.mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "the dashboard is turned off on this node (api.ui: false in the cluster config)")
		})
	}
	s.mux.HandleFunc("GET /v1/internal/read-index", s.readIndex)
	s.mux.HandleFunc("GET /v1/groups/{group}", s.group)
	s.mux.HandleFunc("GET /v1/groups/{group}/endpoints", s.endpoints)
	s.mux.HandleFunc("GET /v1/groups/{group}/active", s.role(core.RoleActive))
	s.mux.HandleFunc("HEAD /v1/groups/{group}/active", s.role(core.RoleActive))
	s.mux.HandleFunc("GET /v1/groups/{group}/standby", s.role(core.RoleStandby))
	s.mux.HandleFunc("HEAD /v1/groups/{group}/standby", s.role(core.RoleStandby))
	s.mux.HandleFunc("POST /v1/debug/transfer-leadership", s.mutation(s.transferLeadership))
	s.mux.HandleFunc("POST /v1/debug/crash", s.mutation(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "crashing: exiting without handing off"})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go s.b.Crash()
	}))
	s.mux.HandleFunc("POST /v1/groups/{group}/switchover", s.mutation(s.onLeader(s.switchover)))
	s.mux.HandleFunc("POST /v1/maintenance", s.mutation(s.onLeader(s.maintenance)))
	s.mux.HandleFunc("POST /v1/groups/{group}/failover", s.mutation(s.onLeader(s.failover)))
	s.mux.HandleFunc("POST /v1/reload", s.mutation(s.reload))
	s.mux.HandleFunc("POST /v1/nodes/{node}/remove", s.mutation(s.onLeader(s.removeVoter)))
	s.mux.Handle("GET /metrics", b.MetricsHandler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.b.Ready() {
			writeError(w, http.StatusServiceUnavailable, "not ready: no quorum leader known yet")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see GET /v1/status)")
	})
	return s
}

// Version is the API protocol version this agent speaks, announced in the
// VersionHeader of every answer. Clients (the CLI, agents forwarding to the
// leader) send theirs; a request from a newer protocol than this agent's is
// refused with a message that says which side to upgrade, since it may mean
// something this agent would misread. A request without the header is from
// a client that predates versioning and speaks version 1. Raise it only for a
// change an older peer would misunderstand; new fields and endpoints do not.
const Version = 1

// VersionHeader carries the API protocol version on requests and answers.
const VersionHeader = "X-Baton-API-Version"

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(VersionHeader, strconv.Itoa(Version))
	if v := r.Header.Get(VersionHeader); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 1:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: %q is not an API protocol version (a whole number from 1)", VersionHeader, v))
			return
		case n > Version:
			writeError(w, http.StatusBadRequest, fmt.Sprintf(
				"this agent speaks API protocol version %d and the client %d: upgrade this agent, or use the baton CLI of this agent's version", Version, n))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if !s.consistent(w, r) {
		return
	}
	st, err := s.b.Status(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !s.authorized(r) {
		publicChecks(&st)
	}
	writeJSON(w, http.StatusOK, st)
}

// authorized reports whether r carries the API token. Reads need none, but
// only a reader with it sees the check details that may hold credentials.
func (s *Server) authorized(r *http.Request) bool {
	want := s.b.Token()
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return want != "" && ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// publicChecks replaces the check results in st by what anyone may see: an
// http check's URL without its password and query values, an exec check's
// exit status without its output (health.Result.Public).
func publicChecks(st *core.Status) {
	st.Groups = slices.Clone(st.Groups) // the backend's may be shared
	for i := range st.Groups {
		if cs, ok := st.Groups[i].Checks.([]health.CheckState); ok {
			st.Groups[i].Checks = health.PublicStates(cs)
		}
	}
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !s.consistent(w, r) {
		return
	}
	ev, err := s.b.Events(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if ev == nil {
		ev = []quorum.Event{}
	}
	writeJSON(w, http.StatusOK, ev)
}

func (s *Server) findGroup(w http.ResponseWriter, r *http.Request) (core.GroupStatus, bool) {
	st, err := s.b.Status(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return core.GroupStatus{}, false
	}
	if !s.authorized(r) {
		publicChecks(&st)
	}
	name := r.PathValue("group")
	for _, g := range st.Groups {
		if g.Name == name {
			return g, true
		}
		// A unit of an active-active group (e.g. web[1]) answers as a group
		// of its own, so a load balancer can check one VIP's owner.
		for _, u := range g.Units {
			if u.Name == name {
				return core.GroupStatus{Name: u.Name, Mode: g.Mode, Standby: g.Standby, Owner: u.Owner, Epoch: u.Epoch,
					Role: u.Role, LeaseMs: u.LeaseMs, HandoffTo: u.HandoffTo, Maintenance: g.Maintenance,
					Failback: g.Failback, Healthy: g.Healthy, Members: g.Members}, true
			}
		}
	}
	writeError(w, http.StatusNotFound, "unknown group "+quote(name))
	return core.GroupStatus{}, false
}

func (s *Server) endpoints(w http.ResponseWriter, r *http.Request) {
	e, err := s.b.Endpoints(r, r.PathValue("group"))
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) group(w http.ResponseWriter, r *http.Request) {
	if !s.consistent(w, r) {
		return
	}
	if g, ok := s.findGroup(w, r); ok {
		writeJSON(w, http.StatusOK, g)
	}
}

// role answers 200 when this node has the role for the group and 503
// otherwise, for HAProxy `option httpchk` and cloud load-balancer checks.
func (s *Server) role(want string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g, ok := s.findGroup(w, r)
		if !ok {
			return
		}
		body := map[string]any{"group": g.Name, "role": g.Role, "owner": g.Owner, "epoch": g.Epoch}
		if g.Role == want {
			writeJSON(w, http.StatusOK, body)
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, body)
	}
}

// consistent makes a read answer as the quorum leader would, unless the
// request asks for ?stale=true: on the leader it takes the read index (its
// applied state, leadership confirmed by a quorum); elsewhere it asks the
// leader for that index and waits until this node applied it. So a status
// or history read anywhere right after a mutation returned shows it, like
// Consul's consistent mode; ?stale=true is Consul's stale mode: this node's
// replica as it is, no round trip, and it answers without a quorum too. It
// writes the error and returns false when the read cannot be made consistent.
func (s *Server) consistent(w http.ResponseWriter, r *http.Request) bool {
	stale, err := staleParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return false
	}
	if stale {
		w.Header().Set(consistencyHeader, "stale")
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), readWait)
	defer cancel()
	// No leader known, or one that just lost its place, is often a matter of
	// milliseconds (an election, a leadership transfer, this node thawing
	// from a pause): retry until readWait, as Consul holds an RPC while it has
	// no leader.
	var idx uint64
	for {
		if idx, err = s.leaderReadIndex(ctx); err == nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(readRetry):
			continue
		}
		break
	}
	if err == nil {
		err = s.b.WaitApplied(ctx, idx)
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "consistent read: "+err.Error()+
			"; for this node's own view, which may lag the quorum, ask with ?stale=true (CLI: --stale)")
		return false
	}
	w.Header().Set(consistencyHeader, "consistent")
	w.Header().Set(readIndexHeader, strconv.FormatUint(idx, 10))
	return true
}

// staleParam reads ?stale: absent or false is a consistent read; "",
// "true" or "1" a stale one (Consul accepts a bare ?stale).
func staleParam(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if !q.Has("stale") {
		return false, nil
	}
	switch v := q.Get("stale"); v {
	case "", "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	default:
		return false, fmt.Errorf("stale=%s: want stale=true or stale=false", quote(v))
	}
}

// leaderReadIndex returns the leader's read index: this node's own when it
// leads, else the leader's answer to GET /v1/internal/read-index.
func (s *Server) leaderReadIndex(ctx context.Context) (uint64, error) {
	addr, self := s.b.LeaderAPI()
	if self {
		return s.b.ReadIndex(ctx)
	}
	if addr == "" {
		return 0, errors.New("no quorum leader known")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.leaderURL(addr, "/v1/internal/read-index"), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set(forwardedHeader, "1")
	resp, err := s.peerClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("asking the quorum leader at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	var body struct {
		Index *uint64 `json:"index"`
		Error string  `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body); err != nil {
		return 0, fmt.Errorf("the quorum leader at %s answered %s: %v", addr, resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.Index == nil {
		return 0, fmt.Errorf("the quorum leader at %s answered %s: %s", addr, resp.Status, body.Error)
	}
	return *body.Index, nil
}

// readIndex: GET /v1/internal/read-index, served by the quorum leader to the
// other nodes' consistent reads: {"index": N}.
func (s *Server) readIndex(w http.ResponseWriter, r *http.Request) {
	if _, self := s.b.LeaderAPI(); !self {
		writeError(w, http.StatusServiceUnavailable, "this node does not lead the quorum")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readWait)
	defer cancel()
	idx, err := s.b.ReadIndex(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
}

// leaderURL is the URL of path on the agent API at addr.
func (s *Server) leaderURL(addr, path string) string { return s.scheme + "://" + addr + path }

// peerClient is the client for requests to other agents' APIs.
func (s *Server) peerClient() *http.Client { return s.client }

// mutation wraps a handler that changes something: it needs the API token as
// "Authorization: Bearer TOKEN" (401 without, 403 when wrong).
func (s *Server) mutation(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		want := s.b.Token()
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case want == "":
			writeError(w, http.StatusForbidden, "mutations are disabled: set api.token_file in the cluster config")
		case !ok || got == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="baton"`)
			writeError(w, http.StatusUnauthorized, "missing API token: send \"Authorization: Bearer TOKEN\" (CLI: --token-file or BATON_API_TOKEN)")
		case subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
			writeError(w, http.StatusForbidden, "wrong API token")
		default:
			h(w, r)
		}
	}
}

// onLeader runs h on the quorum leader: other nodes forward the request
// (same body and token) and relay the answer, so any agent's API can be used.
func (s *Server) onLeader(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr, self := s.b.LeaderAPI()
		if self {
			h(&indexWriter{ResponseWriter: w, b: s.b}, r)
			return
		}
		if addr == "" || r.Header.Get(forwardedHeader) != "" {
			writeError(w, http.StatusServiceUnavailable, "no quorum leader reachable right now; retry in a moment")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16))
		if err != nil {
			writeError(w, http.StatusBadRequest, "request body too large")
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, s.leaderURL(addr, r.URL.RequestURI()), bytes.NewReader(body))
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(forwardedHeader, "1")
		req.Header.Set(VersionHeader, strconv.Itoa(Version))
		resp, err := s.peerClient().Do(req)
		if err != nil {
			writeError(w, http.StatusBadGateway, "forwarding to the quorum leader at "+addr+": "+err.Error())
			return
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusBadGateway, "reading the quorum leader's answer from "+addr+": "+err.Error())
			return
		}
		if idx, err := strconv.ParseUint(resp.Header.Get(appliedHeader), 10, 64); err == nil && resp.StatusCode < 300 {
			// Read your writes: answer once this node applied the change too.
			ctx, cancel := context.WithTimeout(r.Context(), applyWait)
			if err := s.b.WaitApplied(ctx, idx); err != nil {
				s.log.Warn("answering a forwarded mutation before this node applied it", "index", idx, "err", err)
			}
			cancel()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	}
}

const (
	forwardedHeader = "X-Baton-Forwarded"
	// appliedHeader carries the leader's applied quorum index with the answer
	// to a mutation, so the node that forwarded it can wait for it.
	appliedHeader = "X-Baton-Applied-Index"
	// applyWait bounds that wait: a follower normally applies a commit within
	// a Raft heartbeat; one that is cut off must not hold the answer forever.
	applyWait = 5 * time.Second
	// readWait bounds a consistent read: the leader's quorum round trip plus
	// this node catching up, normally milliseconds. A node cut off from the
	// leader answers 503 after it rather than a view it cannot vouch for.
	readWait = 3 * time.Second
	// readRetry is the pause between attempts to reach a leader for a
	// consistent read: about a Raft heartbeat of the fast profile.
	readRetry = 20 * time.Millisecond
	// consistencyHeader says how a read was served: "consistent" or "stale";
	// readIndexHeader, for a consistent one, the index it reflects.
	consistencyHeader = "X-Baton-Consistency"
	readIndexHeader   = "X-Baton-Read-Index"
)

// indexWriter adds the applied index to the leader's answer to a mutation
// (taken when the answer is written, i.e. after the change was applied).
type indexWriter struct {
	http.ResponseWriter
	b           Backend
	wroteHeader bool
}

func (w *indexWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		w.Header().Set(appliedHeader, strconv.FormatUint(w.b.AppliedIndex(), 10))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *indexWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

var forwardClient = &http.Client{Timeout: 30 * time.Second}

// decodeBody decodes an optional JSON body strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16))
	if err != nil {
		writeError(w, http.StatusBadRequest, "request body too large")
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if required {
			writeError(w, http.StatusBadRequest, "missing JSON body")
			return false
		}
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	// One object and nothing after it: {"on":false}{"on":true} is not a
	// request whose meaning anyone can be sure of.
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "malformed JSON body: send exactly one JSON object")
		return false
	}
	return true
}

// requestStatus maps the core's kinds of refused requests to HTTP statuses.
var requestStatus = []struct {
	kind   error
	status int
}{
	{core.ErrUnknownGroup, http.StatusNotFound},
	{core.ErrUnknownNode, http.StatusNotFound},
	{core.ErrInvalid, http.StatusBadRequest},
	{core.ErrConflict, http.StatusConflict},
	{core.ErrNotLeader, http.StatusServiceUnavailable},
	{core.ErrUnavailable, http.StatusServiceUnavailable},
	{core.ErrTimeout, http.StatusGatewayTimeout},
}

func writeRequestError(w http.ResponseWriter, err error) {
	for _, k := range requestStatus {
		if errors.Is(err, k.kind) {
			writeError(w, k.status, err.Error())
			return
		}
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// reload: POST /v1/reload (this node only: every node reloads its own file).
// 200 with what changed; 422 with every problem when the file is refused.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	res, err := s.b.Reload(r)
	var re *agent.ReloadError
	switch {
	case errors.As(err, &re):
		problems := make([]string, 0, len(re.Problems))
		for _, p := range re.Problems {
			problems = append(problems, p.Error())
		}
		if re.Err != nil {
			problems = append(problems, re.Err.Error())
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "config": re.Config, "problems": problems})
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// removeVoter: POST /v1/nodes/{node}/remove (on the leader).
func (s *Server) removeVoter(w http.ResponseWriter, r *http.Request) {
	res, err := s.b.RemoveVoter(r, r.PathValue("node"))
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// switchover: POST /v1/groups/{g}/switchover [{"to": "n2"}]
// failover: POST /v1/groups/{g}/failover {"to": "n2", "allow_data_loss": true}
func (s *Server) failover(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To            string `json:"to"`
		AllowDataLoss bool   `json:"allow_data_loss"`
	}
	if !decodeBody(w, r, &req, true) {
		return
	}
	if req.To == "" || !req.AllowDataLoss {
		writeError(w, http.StatusBadRequest, `a forced failover needs {"to": NODE, "allow_data_loss": true}; without data loss use switchover`)
		return
	}
	res, err := s.b.Failover(r, r.PathValue("group"), req.To)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) switchover(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To string `json:"to"`
	}
	if !decodeBody(w, r, &req, false) {
		return
	}
	res, err := s.b.Switchover(r, r.PathValue("group"), req.To)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// maintenance: POST /v1/maintenance {"on": true, "group": "web"}
func (s *Server) maintenance(w http.ResponseWriter, r *http.Request) {
	var req struct {
		On    *bool  `json:"on"`
		Group string `json:"group"`
	}
	if !decodeBody(w, r, &req, true) {
		return
	}
	if req.On == nil {
		writeError(w, http.StatusBadRequest, `missing "on": want {"on": true|false, "group": "NAME"} (no group = whole cluster)`)
		return
	}
	if err := s.b.Maintenance(r, req.Group, *req.On); err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"maintenance": *req.On, "group": req.Group})
}

// transferLeadership moves quorum leadership (benchmarks use it to measure
// the case where the killed owner was the leader).
func (s *Server) transferLeadership(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To string `json:"to"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.To == "" {
		writeError(w, http.StatusBadRequest, `want a JSON body {"to": "NODE"}`)
		return
	}
	if err := s.b.TransferLeadership(r, req.To); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": req.To})
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
