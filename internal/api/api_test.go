package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/quorum"
)

type fakeBackend struct {
	st       core.Status
	token    string
	transfer string
	leader   string // LeaderAPI: "" = this node
	applied  uint64
	waited   uint64 // the index WaitApplied was last asked for
	noLeader bool   // LeaderAPI: no leader known
	readIdx  uint64 // ReadIndex's answer on the leader
	reads    int    // ReadIndex calls
}

func (f *fakeBackend) ReadIndex(context.Context) (uint64, error) {
	f.reads++
	return f.readIdx, nil
}

func (f *fakeBackend) AppliedIndex() uint64 { return f.applied }
func (f *fakeBackend) WaitApplied(_ context.Context, index uint64) error {
	f.waited = index
	return nil
}

func (f *fakeBackend) Status(*http.Request) (core.Status, error)    { return f.st, nil }
func (f *fakeBackend) Events(*http.Request) ([]quorum.Event, error) { return nil, nil }
func (f *fakeBackend) Ready() bool                                  { return f.st.Leader != "" }
func (f *fakeBackend) Token() string                                { return f.token }
func (f *fakeBackend) LeaderAPI() (string, bool)                    { return f.leader, f.leader == "" && !f.noLeader }
func (f *fakeBackend) Crash()                                       {}
func (f *fakeBackend) Changed() <-chan struct{}                     { return nil }
func (f *fakeBackend) Stopped() <-chan struct{}                     { return nil }
func (f *fakeBackend) UIEnabled() bool                              { return true }
func (f *fakeBackend) Endpoints(r *http.Request, group string) (core.Endpoints, error) {
	for _, g := range f.st.Groups {
		if g.Name == group {
			e := core.Endpoints{Group: g.Name, Mode: g.Mode, Generation: g.Epoch, Endpoints: []core.Endpoint{}}
			if g.Owner != "" {
				e.Endpoints = append(e.Endpoints, core.Endpoint{Node: g.Owner, Address: "10.0.0.1", Port: 8080, Epoch: g.Epoch})
			}
			return e, nil
		}
	}
	return core.Endpoints{}, core.Refuse(core.ErrUnknownGroup, "unknown group %s", group)
}
func (f *fakeBackend) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("baton_up 1\n")) })
}
func (f *fakeBackend) Switchover(_ *http.Request, group, to string) (agent.SwitchoverResult, error) {
	switch {
	case group != "web":
		return agent.SwitchoverResult{}, core.Refuse(core.ErrUnknownGroup, "unknown group %s", quote(group))
	case to == "sick":
		return agent.SwitchoverResult{}, core.Refuse(core.ErrConflict, `node "sick" is unhealthy for group "web"`)
	}
	return agent.SwitchoverResult{Group: group, From: "n1", To: "n2", Epoch: 5}, nil
}
func (f *fakeBackend) Failover(_ *http.Request, group, to string) (agent.SwitchoverResult, error) {
	if group != "web" {
		return agent.SwitchoverResult{}, core.Refuse(core.ErrUnknownGroup, "unknown group %s", quote(group))
	}
	return agent.SwitchoverResult{Group: group, From: "n1", To: to, Epoch: 6}, nil
}
func (f *fakeBackend) Maintenance(_ *http.Request, group string, on bool) error {
	if group != "" && group != "web" {
		return core.Refuse(core.ErrUnknownGroup, "unknown group %s", quote(group))
	}
	return nil
}
func (f *fakeBackend) TransferLeadership(_ *http.Request, to string) error {
	if to == "nobody" {
		return errors.New("unknown voter")
	}
	f.transfer = to
	return nil
}

func do(t *testing.T, h http.Handler, method, path, auth, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if method != http.MethodHead {
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
	}
	return rec.Code, m
}

func TestEndpoints(t *testing.T) {
	b := &fakeBackend{token: "sekrit", st: core.Status{Node: "n1", Leader: "w1",
		Groups: []core.GroupStatus{{Name: "web", Owner: "n1", Epoch: 4, Role: "active"}, {Name: "db", Owner: "n2", Epoch: 1, Role: "standby"},
			{Name: "edge", Mode: "active-active", Epoch: 3, Role: "active", Units: []core.UnitStatus{
				{Name: "edge[0]", Owner: "n1", Epoch: 2, Role: "active"}, {Name: "edge[1]", Owner: "n2", Epoch: 1, Role: "standby"}}}}}}
	h := New(b, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		method, path, auth, body string
		code                     int
		errContains              string
	}{
		{"GET", "/v1/status", "", "", 200, ""},
		{"GET", "/v1/groups/web", "", "", 200, ""},
		{"GET", "/v1/groups/nope", "", "", 404, `unknown group "nope"`},
		{"GET", "/v1/groups/web/active", "", "", 200, ""},
		{"HEAD", "/v1/groups/web/active", "", "", 200, ""},
		{"GET", "/v1/groups/db/active", "", "", 503, ""},
		{"HEAD", "/v1/groups/db/active", "", "", 503, ""},
		{"GET", "/v1/groups/db/standby", "", "", 200, ""},
		{"GET", "/v1/groups/web/standby", "", "", 503, ""},
		{"GET", "/v1/groups/edge[0]/active", "", "", 200, ""},
		{"GET", "/v1/groups/edge[1]/active", "", "", 503, ""},
		{"GET", "/v1/groups/edge[1]/standby", "", "", 200, ""},
		{"GET", "/v1/groups/edge[2]/standby", "", "", 404, `unknown group "edge[2]"`},
		{"GET", "/v1/groups/web/endpoints", "", "", 200, ""},
		{"GET", "/v1/groups/nope/endpoints", "", "", 404, `unknown group nope`},
		{"GET", "/healthz", "", "", 200, ""},
		{"GET", "/readyz", "", "", 200, ""},
		{"GET", "/v1/nothing", "", "", 404, "no such endpoint"},
		{"POST", "/v1/debug/transfer-leadership", "", `{"to":"n2"}`, 401, "missing API token"},
		{"POST", "/v1/debug/transfer-leadership", "Bearer wrong", `{"to":"n2"}`, 403, "wrong API token"},
		{"POST", "/v1/debug/transfer-leadership", "Bearer sekrit", `{"to":`, 400, "want a JSON body"},
		{"POST", "/v1/debug/transfer-leadership", "Bearer sekrit", `{"to":"n2","x":1}`, 400, "want a JSON body"},
		{"POST", "/v1/debug/transfer-leadership", "Bearer sekrit", `{"to":"nobody"}`, 409, "unknown voter"},
		{"POST", "/v1/debug/transfer-leadership", "Bearer sekrit", `{"to":"n2"}`, 200, ""},
		{"POST", "/v1/groups/web/switchover", "", ``, 401, "missing API token"},
		{"POST", "/v1/groups/web/switchover", "Bearer nope", ``, 403, "wrong API token"},
		{"POST", "/v1/groups/web/switchover", "Bearer sekrit", ``, 200, ""},
		{"POST", "/v1/groups/web/switchover", "Bearer sekrit", `{"to":"n2"}`, 200, ""},
		{"POST", "/v1/groups/web/switchover", "Bearer sekrit", `{"to":`, 400, "malformed JSON body"},
		{"POST", "/v1/groups/web/switchover", "Bearer sekrit", `{"target":"n2"}`, 400, "malformed JSON body"},
		{"POST", "/v1/groups/nope/switchover", "Bearer sekrit", `{"to":"n2"}`, 404, `unknown group "nope"`},
		{"POST", "/v1/groups/web/switchover", "Bearer sekrit", `{"to":"sick"}`, 409, "unhealthy"},
		{"GET", "/v1/groups/web/switchover", "Bearer sekrit", ``, 404, "no such endpoint: GET"},
		{"POST", "/v1/maintenance", "Bearer sekrit", `{"on":true}`, 200, ""},
		{"POST", "/v1/maintenance", "Bearer sekrit", `{"on":false,"group":"web"}`, 200, ""},
		{"POST", "/v1/maintenance", "Bearer sekrit", `{"group":"web"}`, 400, `missing "on"`},
		{"POST", "/v1/maintenance", "Bearer sekrit", ``, 400, "missing JSON body"},
		{"POST", "/v1/maintenance", "Bearer sekrit", `{"on":true,"group":"nope"}`, 404, "unknown group"},
		{"POST", "/v1/maintenance", "", `{"on":true}`, 401, "missing API token"},
		{"POST", "/v1/groups/web/failover", "", `{"to":"n2","allow_data_loss":true}`, 401, "missing API token"},
		{"POST", "/v1/groups/web/failover", "Bearer sekrit", `{"to":"n2"}`, 400, "allow_data_loss"},
		{"POST", "/v1/groups/web/failover", "Bearer sekrit", `{"to":"n2","allow_data_loss":true}`, 200, ""},
		{"POST", "/v1/groups/nope/failover", "Bearer sekrit", `{"to":"n2","allow_data_loss":true}`, 404, "unknown group"},
	} {
		code, body := do(t, h, tc.method, tc.path, tc.auth, tc.body)
		if code != tc.code {
			t.Errorf("%s %s: status %d, want %d (%v)", tc.method, tc.path, code, tc.code, body)
			continue
		}
		if tc.errContains != "" {
			if msg, _ := body["error"].(string); !strings.Contains(msg, tc.errContains) {
				t.Errorf("%s %s: error %q, want it to contain %q", tc.method, tc.path, msg, tc.errContains)
			}
		}
	}
	if b.transfer != "n2" {
		t.Fatalf("transfer = %q", b.transfer)
	}
}

func TestMutationsRefusedWithoutConfiguredToken(t *testing.T) {
	h := New(&fakeBackend{}, slog.New(slog.DiscardHandler))
	code, body := do(t, h, "POST", "/v1/debug/transfer-leadership", "Bearer anything", `{"to":"n2"}`)
	if code != 403 || !strings.Contains(body["error"].(string), "api.token_file") {
		t.Fatalf("got %d %v", code, body)
	}
}

func TestReadyzWithoutLeader(t *testing.T) {
	h := New(&fakeBackend{}, slog.New(slog.DiscardHandler))
	if code, _ := do(t, h, "GET", "/readyz", "", ""); code != 503 {
		t.Fatalf("readyz without leader = %d, want 503", code)
	}
}

// TestForwardedMutationWaitsForApply: a switchover sent to a follower is
// answered only after the follower applied the leader's index.
func TestForwardedMutationWaitsForApply(t *testing.T) {
	leader := &fakeBackend{token: "tok", applied: 42}
	ls := httptest.NewServer(New(leader, slog.New(slog.DiscardHandler)))
	defer ls.Close()
	follower := &fakeBackend{token: "tok", leader: strings.TrimPrefix(ls.URL, "http://")}
	code, body := do(t, New(follower, slog.New(slog.DiscardHandler)), "POST", "/v1/groups/web/switchover", "Bearer tok", `{"to":"n2"}`)
	if code != http.StatusOK || body["to"] != "n2" {
		t.Fatalf("forwarded switchover: %d %v", code, body)
	}
	if follower.waited != 42 {
		t.Fatalf("the follower answered after waiting for index %d, want the leader's 42", follower.waited)
	}
}

// TestBodyMustBeOneObject: a second object after the first is refused, not
// silently ignored.
func TestBodyMustBeOneObject(t *testing.T) {
	s := New(&fakeBackend{token: "tok"}, slog.New(slog.DiscardHandler))
	code, body := do(t, s, "POST", "/v1/maintenance", "Bearer tok", `{"on":false}{"on":true}`)
	if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["error"]), "exactly one JSON object") {
		t.Fatalf("two objects: %d %v", code, body)
	}
	if code, _ := do(t, s, "POST", "/v1/maintenance", "Bearer tok", `{"on":false} `); code != http.StatusOK {
		t.Fatalf("one object and a space: %d", code)
	}
}

// TestConsistentReads: status, history and a group read on a follower are
// answered once it applied the leader's read index; ?stale=true answers from
// the follower's replica at once; without a leader a consistent read is
// refused with the way to a stale one.
func TestConsistentReads(t *testing.T) {
	leader := &fakeBackend{readIdx: 77, st: core.Status{Node: "w1", Leader: "w1"}}
	ls := httptest.NewServer(New(leader, slog.New(slog.DiscardHandler)))
	defer ls.Close()
	follower := &fakeBackend{leader: strings.TrimPrefix(ls.URL, "http://"),
		st: core.Status{Node: "n2", Leader: "w1", Groups: []core.GroupStatus{{Name: "web", Owner: "n1"}}}}
	h := New(follower, slog.New(slog.DiscardHandler))
	for _, path := range []string{"/v1/events", "/v1/status", "/v1/groups/web", "/v1/events?stale=false"} {
		follower.waited = 0
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || follower.waited != 77 {
			t.Errorf("GET %s on a follower: %d, waited for index %d; want 200 after waiting for the leader's 77", path, rec.Code, follower.waited)
		}
		if got := rec.Header().Get("X-Baton-Consistency") + " " + rec.Header().Get("X-Baton-Read-Index"); got != "consistent 77" {
			t.Errorf("GET %s: consistency headers %q", path, got)
		}
	}
	if leader.reads != 4 {
		t.Errorf("the leader was asked for its read index %d times, want 4", leader.reads)
	}
	for _, path := range []string{"/v1/events?stale=true", "/v1/status?stale", "/v1/groups/web?stale=1"} {
		follower.waited = 0
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || follower.waited != 0 || rec.Header().Get("X-Baton-Consistency") != "stale" {
			t.Errorf("GET %s: %d, waited for %d, consistency %q; want a local answer", path, rec.Code, follower.waited, rec.Header().Get("X-Baton-Consistency"))
		}
	}
	if leader.reads != 4 {
		t.Errorf("stale reads asked the leader (%d read-index calls)", leader.reads)
	}
	// The leader answers its own consistent reads from its read index.
	leader.waited = 0
	if code, _ := do(t, New(leader, slog.New(slog.DiscardHandler)), "GET", "/v1/status", "", ""); code != 200 || leader.waited != 77 || leader.reads != 5 {
		t.Errorf("consistent read on the leader: %d, waited %d, reads %d", code, leader.waited, leader.reads)
	}
	// Role checks (load balancers poll them) stay local.
	if code, _ := do(t, h, "GET", "/v1/groups/web/active", "", ""); code != 503 || leader.reads != 5 {
		t.Errorf("role check: %d, read-index calls %d; want a local answer", code, leader.reads)
	}

	cut := &fakeBackend{noLeader: true, st: core.Status{Node: "n3"}}
	hc := New(cut, slog.New(slog.DiscardHandler))
	code, body := do(t, hc, "GET", "/v1/events", "", "")
	if msg := fmt.Sprint(body["error"]); code != http.StatusServiceUnavailable || !strings.Contains(msg, "no quorum leader known") || !strings.Contains(msg, "?stale=true (CLI: --stale)") {
		t.Errorf("consistent read without a leader: %d %v", code, body)
	}
	if code, _ := do(t, hc, "GET", "/v1/status?stale=true", "", ""); code != 200 {
		t.Errorf("stale read without a leader: %d", code)
	}
	if code, body := do(t, hc, "GET", "/v1/status?stale=maybe", "", ""); code != 400 || !strings.Contains(fmt.Sprint(body["error"]), `stale="maybe": want stale=true or stale=false`) {
		t.Errorf("stale=maybe: %d %v", code, body)
	}
	// A node that is no longer the leader refuses to hand out a read index.
	if code, _ := do(t, h, "GET", "/v1/internal/read-index", "", ""); code != http.StatusServiceUnavailable {
		t.Errorf("read-index on a follower: %d", code)
	}
}

// TestStatusHidesCheckCredentialsWithoutToken: check details that may hold
// credentials are shown only to a request with the API token.
func TestStatusHidesCheckCredentialsWithoutToken(t *testing.T) {
	res := health.Result{Detail: "exit status 1: password=hunter2", Redacted: "exit status 1 (output hidden: send the API token to see it)"}
	b := &fakeBackend{token: "tok", st: core.Status{Node: "n1", Leader: "n1", Groups: []core.GroupStatus{{Name: "web",
		Checks: []health.CheckState{{Name: "exec[0]", Type: "exec", Last: res, LastFailure: res}}}}}}
	h := New(b, slog.New(slog.DiscardHandler))
	get := func(path, auth string) string {
		req := httptest.NewRequest("GET", path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	for _, path := range []string{"/v1/status", "/v1/groups/web"} {
		for _, auth := range []string{"", "Bearer wrong", "Basic dG9rOg=="} {
			if body := get(path, auth); strings.Contains(body, "hunter2") || !strings.Contains(body, "output hidden") {
				t.Errorf("GET %s with %q: %s", path, auth, body)
			}
		}
		if body := get(path, "Bearer tok"); !strings.Contains(body, "password=hunter2") {
			t.Errorf("GET %s with the token: %s", path, body)
		}
	}
	// The backend's own status is left as it was.
	if cs := b.st.Groups[0].Checks.([]health.CheckState); cs[0].Last.Detail != res.Detail {
		t.Errorf("redaction changed the backend's status: %+v", cs[0])
	}
}
