package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/testkit"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dur(d time.Duration) config.Duration { return config.Duration(d) }

// events records onChange calls.
type events struct {
	mu  sync.Mutex
	got []bool
	at  []time.Time
}

func (e *events) onChange(group string, healthy bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, healthy)
	e.at = append(e.at, time.Now())
}

func (e *events) list() []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

func (e *events) when(i int) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.at[i]
}

func (e *events) is(want ...bool) func() bool {
	return func() bool { return slices.Equal(e.list(), want) }
}

// syncBuffer is a log sink that check goroutines may write to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestNewRejectsBadChecks(t *testing.T) {
	okHTTP := config.Check{Type: "http", URL: "http://127.0.0.1:8080/healthz"}
	with := func(c config.Check, f func(*config.Check)) config.Check { f(&c); return c }
	for _, tc := range []struct {
		name  string
		check config.Check
		want  string
	}{
		{"no type", config.Check{}, "type: missing; use tcp, http or exec"},
		{"unknown type", config.Check{Type: "icmp"}, `type: "icmp" is not a check type; use tcp, http or exec`},
		{"tcp without address", config.Check{Type: "tcp"}, "address: missing (a tcp check needs e.g. address: 127.0.0.1:5432)"},
		{"tcp without port", config.Check{Type: "tcp", Address: "localhost"}, `address: "localhost" is not host:port`},
		{"tcp port out of range", config.Check{Type: "tcp", Address: "127.0.0.1:70000"}, `address: "127.0.0.1:70000" is not host:port`},
		{"http without url", config.Check{Type: "http"}, "url: missing (an http check needs e.g. url: http://127.0.0.1:8080/healthz)"},
		{"http ftp url", config.Check{Type: "http", URL: "ftp://host/x"}, `url: "ftp://host/x" is not an http or https URL`},
		{"http url without host", config.Check{Type: "http", URL: "http:///x"}, `url: "http:///x" is not an http or https URL`},
		{"bad expect_status", with(okHTTP, func(c *config.Check) { c.ExpectStatus = "2xx" }), `expect_status: "2xx" is not a status or range (e.g. 200 or 200-399)`},
		{"backwards expect_status", with(okHTTP, func(c *config.Check) { c.ExpectStatus = "399-200" }), `expect_status: "399-200" is not a status or range`},
		{"exec without command", config.Check{Type: "exec"}, "command: missing (an exec check needs an argv list"},
		{"exec empty program", config.Check{Type: "exec", Command: []string{" ", "-x"}}, "command[0]: empty program name; the first element is the program to run (there is no shell)"},
		{"tcp with url", config.Check{Type: "tcp", Address: "127.0.0.1:5432", URL: "http://x/"}, "url: a tcp check does not use url (only http checks do)"},
		{"exec with body_contains", config.Check{Type: "exec", Command: []string{"/bin/true"}, BodyContains: "ok"}, "body_contains: an exec check does not use body_contains (only http checks do)"},
		{"http with command", with(okHTTP, func(c *config.Check) { c.Command = []string{"/bin/true"} }), "command: an http check does not use command (only exec checks do)"},
		{"interval too short", with(okHTTP, func(c *config.Check) { c.Interval = dur(5 * time.Millisecond) }), "interval: 5ms is too short; use at least 10ms"},
		{"negative interval", with(okHTTP, func(c *config.Check) { c.Interval = dur(-time.Second) }), "interval: -1s is too short; use at least 10ms"},
		{"negative timeout", with(okHTTP, func(c *config.Check) { c.Timeout = dur(-time.Second) }), "timeout: -1s must be above 0 (e.g. 1s)"},
		{"negative fall", with(okHTTP, func(c *config.Check) { c.Fall = -1 }), "fall: -1 must be at least 1"},
		{"negative rise", with(okHTTP, func(c *config.Check) { c.Rise = -2 }), "rise: -2 must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := New(tc.check)
			if err == nil {
				t.Fatalf("New accepted %+v as %T", tc.check, ch)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to start with %q", err, tc.want)
			}
			var fe config.FieldError
			if !errors.As(err, &fe) || fe.Path == "" {
				t.Errorf("error %q is not a config.FieldError with a path", err)
			}
		})
	}
}

func TestNewGroupNamesTheBadCheck(t *testing.T) {
	checks := []config.Check{
		{Type: "tcp", Address: "127.0.0.1:5432"},
		{Type: "http", URL: "gopher://x/"},
	}
	_, err := NewGroup("web", checks, quiet(), nil)
	want := `group "web": checks[1].url: "gopher://x/" is not an http or https URL`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want %q...", err, want)
	}
}

func TestNormalizeFillsConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		in   config.Check
		want config.Check
	}{
		{
			config.Check{Type: "http", URL: "http://h/"},
			config.Check{Type: "http", URL: "http://h/", Interval: config.DefaultCheckInterval, Timeout: config.DefaultCheckTimeout,
				Fall: config.DefaultFall, Rise: config.DefaultRise, ExpectStatus: config.DefaultExpectStatus},
		},
		{ // the timeout defaults to the interval when that is shorter
			config.Check{Type: "tcp", Address: "h:1", Interval: dur(100 * time.Millisecond), Fall: 1, Rise: 5},
			config.Check{Type: "tcp", Address: "h:1", Interval: dur(100 * time.Millisecond), Timeout: dur(100 * time.Millisecond), Fall: 1, Rise: 5},
		},
	} {
		got, err := normalize(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("normalize(%+v) =\n%+v\nwant\n%+v", tc.in, got, tc.want)
		}
	}
}

// Every check in the documented example config builds: New agrees with config.Validate.
func TestNewAcceptsTheExampleConfig(t *testing.T) {
	cfg, err := config.Load(testkit.ExampleConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range cfg.Groups {
		if _, err := NewGroup(g.Name, g.Checks, quiet(), nil); err != nil {
			t.Errorf("group %s: %v", g.Name, err)
		}
		n += len(g.Checks)
	}
	if n == 0 {
		t.Fatal("the example config has no checks; this test checks nothing")
	}
}

func probe(t *testing.T, c config.Check) Result {
	t.Helper()
	ch, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	r := ch.Check(context.Background())
	if r.At.IsZero() || r.Took <= 0 {
		t.Errorf("result %+v lacks At or Took", r)
	}
	return r
}

func TestHTTPCheck(t *testing.T) {
	var redirectTargetHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "all good") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/target", http.StatusFound) })
	mux.HandleFunc("/target", func(w http.ResponseWriter, r *http.Request) { redirectTargetHits.Add(1) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ready")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // never ends the body on its own
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), MaxBody))
		fmt.Fprint(w, "needle")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	gone := httptest.NewServer(mux)
	gone.Close()

	for _, tc := range []struct {
		name, path string
		base       string // srv.URL if empty
		status     string
		body       string
		timeout    time.Duration
		ok         bool
		detail     string // Detail must contain it
	}{
		{name: "200", path: "/ok", ok: true, detail: "http 200 from " + srv.URL + "/ok"},
		{name: "503", path: "/fail", detail: "http 503 from " + srv.URL + "/fail"},
		{name: "503 expected", path: "/fail", status: "503", ok: true},
		{name: "status outside a range", path: "/fail", status: "200-299", detail: "http 503"},
		{name: "slow", path: "/slow", timeout: 100 * time.Millisecond, detail: "GET " + srv.URL + "/slow: timed out after 100ms"},
		{name: "redirect is the answer, within 200-399", path: "/redirect", ok: true, detail: "http 302"},
		{name: "redirect is the answer, not 200", path: "/redirect", status: "200", detail: "http 302"},
		{name: "body contains", path: "/ok", body: "good", ok: true},
		{name: "body lacks", path: "/ok", body: "bad", detail: `http 200 from ` + srv.URL + `/ok: body does not contain "bad" (in the first 64 KiB)`},
		{name: "body beyond 64 KiB", path: "/big", body: "needle", detail: `body does not contain "needle"`},
		{name: "body streamed", path: "/stream", body: "ready", timeout: 5 * time.Second, ok: true},
		{name: "status checked before body", path: "/fail", body: "down", detail: "http 503"},
		{name: "refused", base: gone.URL, path: "/ok", detail: "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := cmp(tc.base, srv.URL)
			c := config.Check{Type: "http", URL: base + tc.path, ExpectStatus: tc.status, BodyContains: tc.body,
				Timeout: dur(cmp(tc.timeout, 2*time.Second))}
			start := time.Now()
			r := probe(t, c)
			if r.OK != tc.ok || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("result = %v %q, want %v with %q", r.OK, r.Detail, tc.ok, tc.detail)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("probe took %v despite its timeout", took)
			}
		})
	}
	if n := redirectTargetHits.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
}

// cmp returns a unless it is the zero value, else b.
func cmp[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func TestHTTPCheckUsesAFreshConnectionEachProbe(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ch, err := New(config.Check{Type: "http", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := ch.Check(context.Background()); !r.OK {
			t.Fatal(r.Detail)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("3 probes opened %d connections, want 3", n)
	}
}

func TestHTTPSCheck(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	if r := probe(t, config.Check{Type: "http", URL: srv.URL, TLSSkipVerify: true}); !r.OK {
		t.Errorf("tls_skip_verify: %s", r.Detail)
	}
	if r := probe(t, config.Check{Type: "http", URL: srv.URL}); r.OK || !strings.Contains(r.Detail, "certificate") {
		t.Errorf("self-signed certificate accepted without tls_skip_verify: %v %q", r.OK, r.Detail)
	}
}

func TestTCPCheck(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name, addr string
		ok         bool
		detail     string
	}{
		{"listening", open.Addr().String(), true, "connected to " + open.Addr().String()},
		{"closed", closedAddr, false, "dial tcp " + closedAddr + ": connect: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := probe(t, config.Check{Type: "tcp", Address: tc.addr, Timeout: dur(2 * time.Second)})
			if r.OK != tc.ok || r.Detail != tc.detail {
				t.Errorf("result = %v %q, want %v %q", r.OK, r.Detail, tc.ok, tc.detail)
			}
		})
	}
}

func TestTCPCheckHonoursTheCallersDeadline(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	ch, _ := New(config.Check{Type: "tcp", Address: open.Addr().String()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := ch.Check(ctx); r.OK || !strings.Contains(r.Detail, "cancelled") {
		t.Errorf("probe with a cancelled context = %v %q, want a cancelled failure", r.OK, r.Detail)
	}
}

func TestExecCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		argv    []string
		timeout time.Duration
		ok      bool
		detail  string
	}{
		{"true", []string{"/bin/true"}, 0, true, "exit status 0"},
		{"false", []string{"/bin/false"}, 0, false, "exit status 1"},
		{"output kept", []string{"/bin/sh", "-c", "echo checking; echo db down >&2; exit 3"}, 0, false, "exit status 3: checking\ndb down"},
		{"argv without shell", []string{"/bin/echo", "$HOME; exit 1"}, 0, true, "exit status 0"},
		{"hung", []string{"/bin/sleep", "5"}, 100 * time.Millisecond, false, "timed out after 100ms (killed)"},
		{"missing program", []string{"/nonexistent/check"}, 0, false, "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := probe(t, config.Check{Type: "exec", Command: tc.argv, Timeout: dur(cmp(tc.timeout, 5*time.Second))})
			if r.OK != tc.ok || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("result = %v %q, want %v with %q", r.OK, r.Detail, tc.ok, tc.detail)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("probe took %v", took)
			}
		})
	}
}

func TestExecCheckKeepsOnlyTheStartOfItsOutput(t *testing.T) {
	r := probe(t, config.Check{Type: "exec", Command: []string{"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; exit 1"},
		Timeout: dur(5 * time.Second)})
	want := "exit status 1: " + strings.Repeat("x", MaxOutput) + "…"
	if r.OK || r.Detail != want {
		t.Errorf("detail is %d bytes (%.40q...), want %d", len(r.Detail), r.Detail, len(want))
	}
}

// A timed-out exec check takes its whole process group with it, not just the direct child.
func TestExecCheckTimeoutKillsTheProcessGroup(t *testing.T) {
	r := probe(t, config.Check{Type: "exec", Command: []string{"/bin/sh", "-c", "sleep 30 & echo $!; wait"},
		Timeout: dur(500 * time.Millisecond)})
	_, out, _ := strings.Cut(r.Detail, "(killed): ")
	pid, err := strconv.Atoi(out)
	if r.OK || err != nil {
		t.Fatalf("result = %v %q, want a timeout with the background pid", r.OK, r.Detail)
	}
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("background sleep %d to die", pid), func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Gone, or a zombie waiting for a PID 1 that does not reap.
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}

// fakeChecker answers as its mode says; "hang" blocks until the probe's context ends, like a stuck service.
type fakeChecker struct {
	mode  atomic.Value // string: ok | fail | hang | alternate
	calls atomic.Int32
}

func newFake(mode string) *fakeChecker {
	f := &fakeChecker{}
	f.mode.Store(mode)
	return f
}

func (f *fakeChecker) set(mode string) { f.mode.Store(mode) }

func (f *fakeChecker) Check(ctx context.Context) Result {
	n := f.calls.Add(1)
	switch f.mode.Load().(string) {
	case "ok":
		return Result{OK: true, Detail: "fine"}
	case "hang":
		<-ctx.Done()
		return Result{Detail: "timed out"}
	case "alternate":
		return Result{OK: n%2 == 0, Detail: "flaky"}
	default:
		return Result{Detail: "down"}
	}
}

// fakeGroup runs checkers under one spec each, all "exec" checks with the given timing.
func fakeGroup(ev *events, log *slog.Logger, spec config.Check, checkers ...Checker) *Group {
	specs := make([]config.Check, len(checkers))
	for i := range specs {
		specs[i] = spec
		specs[i].Type = "exec"
	}
	return newGroup("web", specs, checkers, log, ev.onChange)
}

func TestGroupRiseAndFall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		f := newFake("ok")
		var logs syncBuffer
		g := fakeGroup(&ev, slog.New(slog.NewTextHandler(&logs, nil)),
			config.Check{Interval: dur(20 * time.Millisecond), Timeout: dur(10 * time.Millisecond), Rise: 2, Fall: 3}, f)
		g.Start(t.Context())
		defer g.Stop()

		// Probes run at 0, 20ms, 40ms, ...; look between them.
		t0 := time.Now()
		step := func(to time.Duration) { time.Sleep(to - time.Since(t0)); synctest.Wait() }
		synctest.Wait()
		if g.Healthy() || len(ev.list()) != 0 {
			t.Fatalf("healthy after one success with rise 2 (events %v)", ev.list())
		}
		step(30 * time.Millisecond)
		if !g.Healthy() || !ev.is(true)() {
			t.Fatalf("not healthy after 2 successes (events %v)", ev.list())
		}

		f.set("fail") // probes at 40, 60 and 80ms fail
		step(70 * time.Millisecond)
		if !g.Healthy() {
			t.Fatal("unhealthy after 2 failures with fall 3")
		}
		step(90 * time.Millisecond)
		if g.Healthy() || !ev.is(true, false)() {
			t.Fatalf("healthy after 3 failures with fall 3 (events %v)", ev.list())
		}
		st := g.States()[0]
		want := CheckState{Name: "exec[0]", Type: "exec", Consecutive: 3, Rises: 1, Falls: 1,
			Last: Result{Detail: "down", At: st.Last.At, Took: st.Last.Took}}
		want.LastFailure = want.Last
		if st != want {
			t.Errorf("state = %+v\nwant %+v", st, want)
		}

		f.set("ok") // probes at 100 and 120ms pass
		step(130 * time.Millisecond)
		if !g.Healthy() || !ev.is(true, false, true)() {
			t.Fatalf("not healthy again after 2 successes (events %v)", ev.list())
		}
		if st := g.States()[0]; !st.Last.OK || st.LastFailure.OK || st.LastFailure.Detail != "down" {
			t.Errorf("after recovering: last %+v, last failure %+v; want the failure's detail kept", st.Last, st.LastFailure)
		}
		for _, line := range []string{
			`level=WARN msg="health check failing" group=web check=exec[0] detail=down failures=3`,
			`level=INFO msg="health check passing" group=web check=exec[0] detail=fine successes=2`,
		} {
			if !strings.Contains(logs.String(), line) {
				t.Errorf("log lacks %q:\n%s", line, logs.String())
			}
		}
	})
}

func TestGroupDoesNotFlapOnAlternatingResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		f := newFake("ok")
		g := fakeGroup(&ev, quiet(), config.Check{Interval: dur(20 * time.Millisecond), Timeout: dur(10 * time.Millisecond), Rise: 2, Fall: 2}, f)
		g.Start(t.Context())
		defer g.Stop()
		time.Sleep(30 * time.Millisecond)
		synctest.Wait()
		f.set("alternate")
		time.Sleep(2 * time.Second) // 100 probes, never two failures in a row
		synctest.Wait()
		if !g.Healthy() || !ev.is(true)() {
			t.Errorf("healthy = %v, events %v; want healthy throughout", g.Healthy(), ev.list())
		}
		if st := g.States()[0]; st.Consecutive != 1 || st.Falls != 0 {
			t.Errorf("state = %+v, want 1 in a row and no falls", st)
		}
	})
}

// A hung probe fails when its timeout elapses, and only `fall` of them in a row make the check unhealthy.
func TestGroupHungCheckFailsOnlyAfterFallTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval, timeout, fall = 20 * time.Millisecond, 50 * time.Millisecond, 3
		var ev events
		f := newFake("ok")
		g := fakeGroup(&ev, quiet(), config.Check{Interval: dur(interval), Timeout: dur(timeout), Rise: 1, Fall: fall}, f)
		t0 := time.Now()
		g.Start(t.Context())
		time.Sleep(interval / 2)
		synctest.Wait()
		if !g.Healthy() {
			t.Fatal("not healthy after a success with rise 1")
		}

		f.set("hang") // from the probe at 20ms on
		hungFrom := t0.Add(interval)
		time.Sleep(interval + (fall-1)*timeout + timeout/2)
		synctest.Wait()
		if !g.Healthy() {
			t.Fatalf("unhealthy after %d timeouts with fall %d", fall-1, fall)
		}
		time.Sleep(timeout)
		synctest.Wait()
		if !ev.is(true, false)() {
			t.Fatalf("events %v, want [true false] after %d timeouts", ev.list(), fall)
		}
		// Timed-out probes run back to back (each outlasts the interval), so the flip comes exactly fall timeouts on.
		if took := ev.when(1).Sub(hungFrom); took != fall*timeout {
			t.Errorf("unhealthy %v after the service hung, want %v", took, fall*timeout)
		}
		g.Stop() // cancels the probe in flight
		if n := f.calls.Load(); n < 1+fall {
			t.Errorf("%d probes", n)
		}
	})
}

func TestGroupIsHealthyOnlyWhenEveryCheckIs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ev events
		a, b := newFake("ok"), newFake("fail")
		spec := config.Check{Interval: dur(20 * time.Millisecond), Timeout: dur(10 * time.Millisecond), Rise: 1, Fall: 1}
		tcp, exec := spec, spec
		tcp.Type, exec.Type = "tcp", "exec"
		g := newGroup("web", []config.Check{tcp, exec}, []Checker{a, b}, quiet(), ev.onChange)
		var observed sync.Map // check name -> probe count
		g.SetObserver(func(group, check string, r Result) {
			n, _ := observed.LoadOrStore(check, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		})
		g.Start(t.Context())
		defer g.Stop()
		// Probes run at 0, 20ms, 40ms, ...; look between them.
		advance := func() { time.Sleep(spec.Interval.D()); synctest.Wait() }
		time.Sleep(spec.Interval.D() / 2)
		synctest.Wait()
		if g.Healthy() || len(ev.list()) != 0 {
			t.Fatalf("healthy with one check failing (events %v)", ev.list())
		}
		b.set("ok")
		advance()
		if !g.Healthy() || !ev.is(true)() {
			t.Fatalf("not healthy with both checks passing (events %v)", ev.list())
		}
		a.set("fail")
		advance()
		b.set("fail")
		advance()
		if !ev.is(true, false)() {
			t.Fatalf("events %v, want one flip per change of the group, not per check", ev.list())
		}
		st := g.States()
		if len(st) != 2 || st[0].Name != "tcp[0]" || st[1].Name != "exec[1]" || st[0].Healthy || st[1].Healthy {
			t.Errorf("states = %+v", st)
		}
		for _, name := range []string{"tcp[0]", "exec[1]"} {
			n, ok := observed.Load(name)
			if !ok || n.(*atomic.Int32).Load() < 4 {
				t.Errorf("observer saw %v probes of %s, want at least 4", n, name)
			}
		}
	})
}

func TestGroupWithoutChecksIsHealthy(t *testing.T) {
	var ev events
	g, err := NewGroup("web", nil, nil, ev.onChange)
	if err != nil {
		t.Fatal(err)
	}
	g.Start(context.Background())
	if !g.Healthy() || len(g.States()) != 0 {
		t.Errorf("healthy = %v, states %v", g.Healthy(), g.States())
	}
	g.Stop()
	g.Stop()
	if len(ev.list()) != 0 {
		t.Errorf("onChange called: %v", ev.list())
	}
}

func TestGroupStopBeforeStartAndStartAfterStop(t *testing.T) {
	g, err := NewGroup("web", []config.Check{{Type: "exec", Command: []string{"/bin/true"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Stop()
	g.Start(context.Background()) // does nothing: goleak would see a check goroutine otherwise
	g.Stop()
	if g.Healthy() {
		t.Error("a check that never ran is healthy")
	}
}

func TestCheckStateJSON(t *testing.T) {
	st := CheckState{Name: "http[0]", Type: "http", Healthy: true, Consecutive: 4, Rises: 1,
		Last: Result{OK: true, Detail: "http 200 from http://127.0.0.1:8080/healthz", Took: 1500 * time.Microsecond,
			At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"http[0]","type":"http","healthy":true,"consecutive":4,"last":{"ok":true,"detail":"http 200 from http://127.0.0.1:8080/healthz","took":"1.5ms","at":"2025-01-02T03:04:05Z"},"rises":1,"falls":0}`
	if string(b) != want {
		t.Errorf("json =\n%s\nwant\n%s", b, want)
	}
	var back CheckState
	if err := json.Unmarshal(b, &back); err != nil || back != st {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if b, _ := json.Marshal(Result{}); string(b) != `{"ok":false,"detail":"","took":"0s"}` {
		t.Errorf("no probe yet = %s", b)
	}
}

// The real thing end to end: an HTTP service that goes down and comes back, probed every 20ms.
func TestGroupFollowsAnHTTPService(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	var ev events
	var logs syncBuffer
	g, err := NewGroup("web", []config.Check{{Type: "http", URL: srv.URL + "/healthz", Interval: dur(20 * time.Millisecond),
		Timeout: dur(time.Second), Rise: 2, Fall: 2}}, slog.New(slog.NewTextHandler(&logs, nil)), ev.onChange)
	if err != nil {
		t.Fatal(err)
	}
	g.Start(context.Background())
	defer g.Stop()

	testkit.WaitFor(t, 5*time.Second, "healthy", ev.is(true))
	status.Store(http.StatusServiceUnavailable)
	testkit.WaitFor(t, 5*time.Second, "unhealthy", ev.is(true, false))
	if g.Healthy() {
		t.Error("Healthy() disagrees with onChange")
	}
	status.Store(http.StatusOK)
	testkit.WaitFor(t, 5*time.Second, "healthy again", ev.is(true, false, true))
	want := fmt.Sprintf(`level=WARN msg="health check failing" group=web check=http[0] detail="http 503 from %s/healthz" failures=2`, srv.URL)
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// A real exec check that hangs: each probe is killed at its 100ms timeout, and only the third such probe in a row
// makes the check unhealthy. What the group saw up to the flip is asserted, not how long it took, so load cannot
// make this flaky.
func TestGroupHungExecCheck(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "hang")
	var (
		mu      sync.Mutex
		results []Result
		atFlip  = -1 // len(results) when the group became unhealthy
	)
	g, err := NewGroup("db", []config.Check{{Type: "exec", Command: []string{"/bin/sh", "-c", `test ! -e "$0" || exec /bin/sleep 5`, flag},
		Interval: dur(20 * time.Millisecond), Timeout: dur(100 * time.Millisecond), Rise: 1, Fall: 3}}, quiet(),
		func(_ string, healthy bool) {
			mu.Lock()
			defer mu.Unlock()
			if !healthy && atFlip < 0 {
				atFlip = len(results) // the observer has seen the probe that made the flip
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	g.SetObserver(func(_, _ string, r Result) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, r)
	})
	g.Start(context.Background())
	testkit.WaitFor(t, 5*time.Second, "healthy", g.Healthy)

	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "unhealthy", func() bool { mu.Lock(); defer mu.Unlock(); return atFlip >= 0 })
	mu.Lock()
	seen := results[:atFlip]
	mu.Unlock()
	if len(seen) < 4 || !seen[len(seen)-4].OK {
		t.Fatalf("the flip came after %d probes; want a pass, then the failures", len(seen))
	}
	for _, r := range seen[len(seen)-3:] {
		if r.OK || r.Detail != "timed out after 100ms (killed)" || r.Took < 100*time.Millisecond {
			t.Errorf("one of the 3 probes before the flip: %+v, want a timeout after 100ms", r)
		}
	}
	stopped := time.Now()
	g.Stop()
	if took := time.Since(stopped); took > 2*time.Second {
		t.Errorf("Stop took %v with a hung check", took)
	}
}

// Every YAML example in README.md decodes strictly and builds a group.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "~~~ yaml\n")[1:]
	n := 0
	for i, b := range blocks {
		b, _, _ = strings.Cut(b, "~~~")
		if strings.Contains(b, "DURATION") {
			continue // the syntax summary, with placeholders
		}
		var doc struct {
			Groups []config.Group `yaml:"groups"`
			Checks []config.Check `yaml:"checks"`
		}
		dec := yaml.NewDecoder(strings.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Errorf("example %d: %v\n%s", i, err, b)
			continue
		}
		for _, g := range doc.Groups {
			doc.Checks = append(doc.Checks, g.Checks...)
		}
		if len(doc.Checks) == 0 {
			t.Errorf("example %d has no checks:\n%s", i, b)
		}
		if _, err := NewGroup("example", doc.Checks, quiet(), nil); err != nil {
			t.Errorf("example %d: %v\n%s", i, err, b)
		}
		n++
	}
	if n < 4 {
		t.Errorf("found %d examples in README.md, want at least 4", n)
	}
}

// TestPublicResultsHideCredentials: an http check's URL password and query
// values, and an exec check's output, are in Detail but not in the public
// form that API readers without the token get.
func TestPublicResultsHideCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://monitor:hunter2@", 1) + "/healthz?token=tok-s3cret"
	r := probe(t, config.Check{Type: "http", URL: u, Timeout: dur(2 * time.Second)})
	if r.OK || !strings.Contains(r.Detail, "hunter2") || !strings.Contains(r.Detail, "tok-s3cret") {
		t.Fatalf("full detail %q: want the 503 with the URL as configured", r.Detail)
	}
	pub := r.Public()
	if strings.Contains(pub.Detail, "hunter2") || strings.Contains(pub.Detail, "tok-s3cret") || pub.Redacted != "" {
		t.Fatalf("public detail %q leaks the URL's credentials", pub.Detail)
	}
	if want := "http 503 from " + strings.Replace(srv.URL, "http://", "http://monitor:xxxxx@", 1) + "/healthz?token=xxxxx"; pub.Detail != want {
		t.Fatalf("public detail %q, want %q", pub.Detail, want)
	}
	// A connection error (net/http prints the URL with the password as ***).
	srv.Close()
	r = probe(t, config.Check{Type: "http", URL: u, Timeout: dur(2 * time.Second)})
	if pub := r.Public(); r.OK || strings.Contains(pub.Detail, "hunter2") || strings.Contains(pub.Detail, "tok-s3cret") || !strings.Contains(pub.Detail, "xxxxx") {
		t.Fatalf("connection refused: full %q, public %q", r.Detail, pub.Detail)
	}
	// A URL without credentials is shown as it is.
	if r := probe(t, config.Check{Type: "http", URL: "http://127.0.0.1:1/x", Timeout: dur(time.Second)}); r.Redacted != "" || r.Public().Detail != r.Detail {
		t.Fatalf("plain URL redacted: %q → %q", r.Detail, r.Public().Detail)
	}

	r = probe(t, config.Check{Type: "exec", Command: []string{"/bin/sh", "-c", "echo connecting with password=hunter2; exit 2"}, Timeout: dur(5 * time.Second)})
	if !strings.Contains(r.Detail, "password=hunter2") {
		t.Fatalf("exec detail %q: want the output", r.Detail)
	}
	if got := r.Public().Detail; got != "exit status 2 (output hidden: send the API token to see it)" {
		t.Fatalf("public exec detail %q", got)
	}
	st := PublicStates([]CheckState{{Name: "exec[0]", Last: r, LastFailure: r}})
	if strings.Contains(st[0].Last.Detail, "hunter2") || strings.Contains(st[0].LastFailure.Detail, "hunter2") {
		t.Fatalf("PublicStates leaks: %+v", st[0])
	}
	if b, _ := json.Marshal(r); strings.Contains(string(b), "output hidden") {
		t.Fatalf("the redacted form is in the JSON of a result: %s", b)
	}
}
