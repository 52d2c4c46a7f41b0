package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/testkit"
)

// The fence against the real kernel, in a namespace of its own, fed through a real pipe. The exact timing is
// tested under synctest (fence_sim_test.go); these check that the pieces fit, with generous bounds.

type labFence struct {
	t      *testing.T
	ns     string
	m      *Manager
	w      *os.File // the agent's end of the pipe
	errc   <-chan error
	g1, g2 []VIP
}

func startLabFence(t *testing.T) *labFence {
	t.Helper()
	ns := newSolo(t)
	f := &labFence{t: t, ns: ns, m: NewManager(testLog(t)),
		g1: []VIP{mustParse(t, "10.77.5.1/24", "d0"), mustParse(t, "fd77:5::1/64", "d0")},
		g2: []VIP{mustParse(t, "10.77.5.2/24", "d0")},
	}
	f.m.AnnounceCount = 0
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	ctx, cancel := context.WithCancel(context.Background())
	groups := map[string][]VIP{"g1": f.g1, "g2": f.g2}
	f.errc = goInNS(ns, func() error {
		defer r.Close()
		return RunFence(ctx, r, groups, NewManager(testLog(t)), testLog(t))
	})
	t.Cleanup(func() {
		cancel()
		w.Close()
		if f.errc == nil {
			return // the test saw it return
		}
		select {
		case err := <-f.errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("RunFence: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("RunFence did not return")
		}
	})
	return f
}

func (f *labFence) send(format string, args ...any) {
	f.t.Helper()
	if _, err := fmt.Fprintf(f.w, format+"\n", args...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *labFence) add(vs ...VIP) {
	f.t.Helper()
	inNS(f.t, f.ns, func() {
		for _, v := range vs {
			if err := f.m.Add(v, 0); err != nil {
				f.t.Fatal(err)
			}
		}
	})
}

func (f *labFence) present(vs ...VIP) (all, none bool) {
	all, none = true, true
	inNS(f.t, f.ns, func() {
		for _, v := range vs {
			ok, err := f.m.Present(v)
			if err != nil {
				f.t.Fatal(err)
			}
			all, none = all && ok, none && !ok
		}
	})
	return all, none
}

// waitGone waits until every one of vs is gone and returns how long that took.
func (f *labFence) waitGone(within time.Duration, vs ...VIP) time.Duration {
	f.t.Helper()
	return testkit.WaitFor(f.t, within, fmt.Sprintf("%v to be removed", vs), func() bool { _, none := f.present(vs...); return none })
}

func (f *labFence) wantPresent(vs ...VIP) {
	f.t.Helper()
	if all, _ := f.present(vs...); !all {
		f.t.Errorf("%v: not all present", vs)
	}
}

func TestFence(t *testing.T) {
	needRoot(t)

	t.Run("hold runs out", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g2 10000")
		f.send("hold g1 300")
		start := time.Now()
		f.add(f.g1...)
		f.add(f.g2...)
		took := f.waitGone(2*time.Second, f.g1...)
		if took < 250*time.Millisecond {
			t.Errorf("removed %v after a 300 ms hold", took)
		}
		f.wantPresent(f.g2...)
		t.Logf("hold of 300 ms: removed after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("renewed holds keep it", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g1 200")
		f.add(f.g1...)
		for range 12 {
			time.Sleep(50 * time.Millisecond)
			f.send("hold g1 200")
		}
		f.wantPresent(f.g1...)
		if took := f.waitGone(2*time.Second, f.g1...); took < 150*time.Millisecond {
			t.Errorf("removed %v after the last 200 ms hold", took)
		}
	})

	t.Run("drop removes now", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g1 10000")
		f.send("hold g2 10000")
		f.add(f.g1...)
		f.add(f.g2...)
		f.send("drop g1")
		f.waitGone(5*time.Second, f.g1...)
		f.wantPresent(f.g2...)
	})

	t.Run("written-at counts", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g1 10000")
		f.add(f.g1...)
		// Written 1.9 s ago for 2 s: gone in about 0.1 s, not 2 s.
		f.send("hold g1 2000 %d", monotonicNow()-1900*time.Millisecond)
		if took := f.waitGone(3*time.Second, f.g1...); took > 1500*time.Millisecond {
			t.Errorf("a hold written 1.9 s before for 2 s held for %v more", took)
		}
	})

	t.Run("re-added after the hold ran out", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g1 100")
		f.add(f.g1...)
		f.waitGone(2*time.Second, f.g1...)
		f.add(f.g1...) // a frozen agent resumes and adds or renews
		took := f.waitGone(5*time.Second, f.g1...)
		t.Logf("re-added address removed again after %v", took.Round(time.Millisecond))
	})

	t.Run("unheld at start", func(t *testing.T) {
		t.Parallel()
		ns := newSolo(t)
		m := NewManager(testLog(t))
		v := mustParse(t, "10.77.5.9/24", "d0")
		inNS(t, ns, func() {
			if err := m.Add(v, 0); err != nil {
				t.Fatal(err)
			}
		})
		r, w := io.Pipe()
		errc := goInNS(ns, func() error {
			return RunFence(context.Background(), r, map[string][]VIP{"g": {v}}, NewManager(testLog(t)), testLog(t))
		})
		inNS(t, ns, func() {
			testkit.WaitFor(t, time.Second, "the VIP to be removed", func() bool { ok, err := m.Present(v); return err == nil && !ok })
		})
		w.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})

	// The agent frozen (SIGSTOP), then killed (SIGKILL): a real process holds the write end of the pipe.
	t.Run("agent frozen then killed", func(t *testing.T) {
		t.Parallel()
		f := startLabFence(t)
		f.send("hold g1 300")
		f.send("hold g2 10000")
		f.add(f.g1...)
		f.add(f.g2...)
		agent := exec.Command("sleep", "60")
		agent.ExtraFiles = []*os.File{f.w}
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		defer agent.Wait()
		defer agent.Process.Kill()
		f.w.Close() // now only the agent holds the pipe open
		if err := agent.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		f.waitGone(2*time.Second, f.g1...) // the fence's own timer
		f.wantPresent(f.g2...)
		killed := time.Now()
		if err := agent.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		took := f.waitGone(5*time.Second, f.g2...)
		select {
		case err := <-f.errc:
			if err != nil {
				t.Errorf("RunFence after the agent died: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("RunFence did not return after the agent died")
		}
		f.errc = nil
		t.Logf("agent killed: its VIPs were gone %v later (%v to see it)", time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	})
}
