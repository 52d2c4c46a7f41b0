package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// whoamiServer answers "I am NAME" on a loopback port until stopped, the way
// Baton's demo service answers a client that half-closes.
type whoamiServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	name atomic.Value // string; "" = accept and close without answering
}

func startWhoami(t *testing.T, name string) *whoamiServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &whoamiServer{ln: ln}
	s.name.Store(name)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n := s.name.Load().(string); n != "" {
				_, _ = io.WriteString(c, "I am "+n+"\n")
			}
			c.Close()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *whoamiServer) stop() { s.ln.Close(); s.wg.Wait() }

// waitProbes waits until cond holds for the prober's record.
func waitProbes(t *testing.T, p *Prober, what string, cond func([]Probe) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(p.Probes()); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; probes: %+v", what, p.Probes())
		}
	}
}

func countOK(ps []Probe) (n int) {
	for _, p := range ps {
		if p.OK() {
			n++
		}
	}
	return n
}

func TestProberWhoamiOutage(t *testing.T) {
	s := startWhoami(t, "h1")
	p, err := Start(Spec{Kind: Whoami, Target: s.ln.Addr().String(), Every: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	waitProbes(t, p, "answers from h1", func(ps []Probe) bool { return countOK(ps) >= 5 })
	if !p.Served("h1", time.Time{}) {
		t.Fatalf("h1 not seen: %+v", p.Probes())
	}
	// The server accepts but stops answering: down for a whoami client.
	down := time.Now()
	s.name.Store("")
	waitProbes(t, p, "failures", func(ps []Probe) bool { return len(Outages(ps, down)) > 0 && countOK(ps[len(ps)-3:]) == 0 })
	s.name.Store("h2")
	if !p.WaitServed("h2", down, 5*time.Second) {
		t.Fatalf("h2 never answered: %+v", p.Probes())
	}
	probes := p.Stop()
	w := Worst(probes, down)
	if w.Before != "h1" || w.After != "h2" || w.Failed < 3 || w.Ongoing || w.Duration <= 0 {
		t.Errorf("worst outage %+v", w)
	}
	if last, ok := p.Last(); !ok || last.Who != "h2" {
		t.Errorf("Last = %+v, %v; want h2", last, ok)
	}
	if again := p.Stop(); len(again) != len(probes) {
		t.Errorf("second Stop returned %d probes, first %d", len(again), len(probes))
	}
}

func TestProberConnectAndDial(t *testing.T) {
	s := startWhoami(t, "")
	var dials atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	p, err := Start(Spec{Kind: Connect, Target: s.ln.Addr().String(), Every: 2 * time.Millisecond, Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	// An accepted connection is an answer for Connect, even a silent one.
	waitProbes(t, p, "accepted connections", func(ps []Probe) bool { return countOK(ps) >= 3 })
	s.stop()
	stopped := time.Now()
	waitProbes(t, p, "refused connections", func(ps []Probe) bool { return len(Outages(ps, stopped)) > 0 })
	probes := p.Stop()
	if dials.Load() < int64(len(probes)) {
		t.Errorf("%d dials for %d probes: Spec.Dial not used for every probe", dials.Load(), len(probes))
	}
	if w := Worst(probes, stopped); !w.Ongoing || w.Before != "" {
		t.Errorf("worst outage after the server stopped: %+v, want ongoing, Before \"\" (a silent server)", w)
	}
}

func TestProberHTTP(t *testing.T) {
	var status atomic.Int64
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		fmt.Fprintln(w, "I am n1")
	}))
	defer srv.Close()
	p, err := Start(Spec{Kind: HTTP, Target: srv.URL + "/", Every: 2 * time.Millisecond, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitProbes(t, p, "2xx answers", func(ps []Probe) bool { return countOK(ps) >= 3 })
	t5 := time.Now()
	status.Store(503)
	waitProbes(t, p, "503s", func(ps []Probe) bool { return len(Outages(ps, t5)) > 0 })
	status.Store(200)
	if !p.WaitServed("I am n1", t5, 5*time.Second) {
		t.Fatalf("not served again: %+v", p.Probes())
	}
	probes := p.Stop()
	var sawStatus bool
	for _, pr := range probes {
		sawStatus = sawStatus || strings.Contains(pr.Err, "503")
	}
	if !sawStatus {
		t.Errorf("no probe failed with the 503 status: %+v", probes)
	}
	if w := Worst(probes, t5); w.Before != "I am n1" || w.After != "I am n1" || w.Ongoing {
		t.Errorf("worst outage %+v", w)
	}
}

func TestSpecValidate(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string // "" = valid
	}{
		{Spec{Kind: Whoami, Target: "127.0.0.1:80", Every: time.Millisecond}, ""},
		{Spec{Kind: HTTP, Target: "http://127.0.0.1/", Every: 5 * time.Millisecond}, ""},
		{Spec{Kind: Connect, Target: "127.0.0.1", Every: time.Millisecond}, `probe: Target "127.0.0.1": want HOST:PORT`},
		{Spec{Kind: HTTP, Target: "127.0.0.1:80", Every: time.Millisecond}, `probe: Target "127.0.0.1:80": want an http:// or https:// URL`},
		{Spec{Kind: Whoami, Target: "127.0.0.1:80", Every: 500 * time.Microsecond}, "probe: Every = 500µs, want ≥ 1ms"},
		{Spec{Kind: Whoami, Target: "127.0.0.1:80", Every: time.Millisecond, Timeout: -1}, "probe: Timeout = -1ns, want ≥ 0"},
		{Spec{Kind: Kind(7), Target: "127.0.0.1:80", Every: time.Millisecond}, "probe: Kind Kind(7): want Connect, Whoami or HTTP"},
	} {
		err := c.spec.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)) {
			t.Errorf("%+v: Validate = %v, want %q", c.spec, err, c.want)
		}
	}
	if _, err := Start(Spec{Kind: Whoami, Target: "nope"}); err == nil {
		t.Error("Start accepted an invalid Spec")
	}
}
