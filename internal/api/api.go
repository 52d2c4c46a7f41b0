// Package api serves an agent's HTTP API: status, history, role endpoints for
// load balancers, health and readiness. Responses are JSON; errors are
// {"error": "..."} with a 4xx/5xx status.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/quorum"
)

// Backend is what the API needs from the running agent. Calls may block
// briefly (they are answered by the agent's loop) and must honour the
// request's context.
type Backend interface {
	Status(r *http.Request) (agent.Status, error)
	Events(r *http.Request) ([]quorum.Event, error)
	Ready() bool
	// TransferLeadership moves quorum leadership to the named voter.
	TransferLeadership(r *http.Request, to string) error
	// Token is the API token mutations must carry ("" refuses all mutations).
	Token() string
}

// Server is the HTTP handler.
type Server struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the handler.
func New(b Backend, log *slog.Logger) *Server {
	s := &Server{b: b, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /v1/groups/{group}", s.group)
	s.mux.HandleFunc("GET /v1/groups/{group}/active", s.role(agent.RoleActive))
	s.mux.HandleFunc("HEAD /v1/groups/{group}/active", s.role(agent.RoleActive))
	s.mux.HandleFunc("GET /v1/groups/{group}/standby", s.role(agent.RoleStandby))
	s.mux.HandleFunc("HEAD /v1/groups/{group}/standby", s.role(agent.RoleStandby))
	s.mux.HandleFunc("POST /v1/debug/transfer-leadership", s.mutation(s.transferLeadership))
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

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) findGroup(w http.ResponseWriter, r *http.Request) (agent.GroupStatus, bool) {
	st, err := s.b.Status(r)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return agent.GroupStatus{}, false
	}
	name := r.PathValue("group")
	for _, g := range st.Groups {
		if g.Name == name {
			return g, true
		}
	}
	writeError(w, http.StatusNotFound, "unknown group "+quote(name))
	return agent.GroupStatus{}, false
}

func (s *Server) group(w http.ResponseWriter, r *http.Request) {
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
