package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memTable is an in-memory twin of the kernel's address table, for the fence's timing under testing/synctest.
type memTable struct {
	mu       sync.Mutex
	addrs    map[VIP]bool // by address and interface; the prefix length is ignored, as the kernel side does
	failDels int          // how many removals fail before they work again
	watchers map[chan netip.Addr]bool
	aborted  map[netip.Addr]int // abort calls per address (connections reset before a removal)
}

func newMemTable() *memTable {
	return &memTable{addrs: map[VIP]bool{}, watchers: map[chan netip.Addr]bool{}, aborted: map[netip.Addr]int{}}
}

func key(v VIP) VIP { return VIP{Prefix: netip.PrefixFrom(v.Addr(), 0), Interface: v.Interface} }

func (t *memTable) prepare(VIP) (bool, error) { return false, nil }

func (t *memTable) abort(v VIP) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.aborted[v.Addr()]++
	return 0, nil
}

func (t *memTable) replace(v VIP, _ uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addrs[key(v)] = true
	for ch := range t.watchers {
		ch <- v.Addr()
	}
	return nil
}

func (t *memTable) remove(v VIP) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failDels > 0 {
		t.failDels--
		return errors.New("netlink says no")
	}
	delete(t.addrs, key(v))
	return nil
}

func (t *memTable) present(v VIP) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addrs[key(v)], nil
}

func (t *memTable) has(v VIP) bool { ok, _ := t.present(v); return ok }

func (t *memTable) watch(done <-chan struct{}, _ *slog.Logger) (<-chan netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan netip.Addr, 1024)
	for k := range t.addrs {
		ch <- k.Addr()
	}
	t.watchers[ch] = true
	go func() {
		<-done
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.watchers, ch)
		close(ch)
	}()
	return ch, nil
}

// simFence is a fence running on a memTable inside a synctest bubble.
type simFence struct {
	t      *testing.T
	kernel *memTable
	m      *Manager
	w      *io.PipeWriter
	cancel context.CancelFunc
	start  time.Time
	done   chan error
}

var (
	webV4 = VIP{Prefix: netip.MustParsePrefix("10.77.9.1/24"), Interface: "eth0"}
	webV6 = VIP{Prefix: netip.MustParsePrefix("fd77:9::1/64"), Interface: "eth0"}
	dbV4  = VIP{Prefix: netip.MustParsePrefix("10.77.9.2/24"), Interface: "eth0"}
)

// startSim starts a fence guarding web (webV4, webV6) and db (dbV4). Call it inside synctest.Test.
func startSim(t *testing.T) *simFence {
	kernel := newMemTable()
	r, w := io.Pipe()
	ctx, cancel := context.WithCancel(t.Context())
	s := &simFence{t: t, kernel: kernel, m: newManager(testLog(t), kernel), w: w, cancel: cancel, start: time.Now(), done: make(chan error, 1)}
	s.m.AnnounceCount = 0 // the twin has no link to announce on
	groups := map[string][]VIP{"web": {webV4, webV6}, "db": {dbV4}}
	mono := func() time.Duration { return time.Since(s.start) + time.Hour } // any origin will do
	go func() { s.done <- runFence(ctx, r, groups, s.m, testLog(t), mono) }()
	t.Cleanup(func() {
		cancel()
		w.Close()
	})
	synctest.Wait()
	return s
}

func (s *simFence) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.w, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
	synctest.Wait()
}

func (s *simFence) add(vs ...VIP) {
	s.t.Helper()
	for _, v := range vs {
		if err := s.m.Add(v, 0); err != nil {
			s.t.Fatal(err)
		}
	}
	synctest.Wait()
}

// sleep lets d pass and the fence act on it.
func (s *simFence) sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// want checks which VIPs are present, at the current time since start.
func (s *simFence) want(present ...VIP) {
	s.t.Helper()
	for _, v := range []VIP{webV4, webV6, dbV4} {
		want := false
		for _, p := range present {
			want = want || p == v
		}
		if got := s.kernel.has(v); got != want {
			s.t.Errorf("at %v: %s present = %v, want %v", time.Since(s.start), v, got, want)
		}
	}
}

func (s *simFence) returned() (error, bool) {
	select {
	case err := <-s.done:
		return err, true
	default:
		return nil, false
	}
}

func TestFenceSimHoldRunsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 300")
		s.send("hold db 5000")
		s.add(webV4, webV6, dbV4)
		s.sleep(299 * time.Millisecond)
		s.want(webV4, webV6, dbV4)
		s.sleep(time.Millisecond)
		s.want(dbV4) // at the deadline to the nanosecond
		s.sleep(4700 * time.Millisecond)
		s.want()
	})
}

func TestFenceSimRenewedHoldsKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 300")
		s.add(webV4, webV6)
		for range 20 { // two seconds of renewals, each well before the deadline
			s.sleep(100 * time.Millisecond)
			s.send("hold web 300")
		}
		s.want(webV4, webV6)
		s.sleep(299 * time.Millisecond)
		s.want(webV4, webV6)
		s.sleep(time.Millisecond)
		s.want()
	})
}

func TestFenceSimNewHoldReplacesOld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 10000")
		s.add(webV4)
		s.send("hold web 100") // shorter: the agent's lease shrank (e.g. a step back in acks)
		s.sleep(100 * time.Millisecond)
		s.want()
	})
}

func TestFenceSimPassedDeadlines(t *testing.T) {
	for _, line := range []string{"hold web 0", "hold web -5", "hold web 300 3599700000000"} {
		t.Run(line, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t)
				s.send("hold web 1000")
				s.add(webV4, webV6)
				// The last one was written 300 ms ago on the fence's mono clock (an hour since its origin).
				s.send(line)
				s.want()
			})
		})
	}
}

// TestFenceSimWrittenAt: a hold counts from when the agent wrote it (a pipe that sat unread, or an agent frozen
// between computing the deadline and writing it, cannot stretch it).
func TestFenceSimWrittenAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		mono := time.Since(s.start) + time.Hour
		s.send("hold web 1000")
		s.add(webV4)
		s.send(fmt.Sprintf("hold web 500 %d", mono-200*time.Millisecond)) // written 200 ms ago
		s.sleep(299 * time.Millisecond)
		s.want(webV4)
		s.sleep(time.Millisecond)
		s.want()

		// A stamp from the future (another clock) is not trusted to lengthen the hold.
		s.send("hold web 1000")
		s.add(webV4)
		s.send(fmt.Sprintf("hold web 200 %d", mono+time.Hour))
		s.sleep(200 * time.Millisecond)
		s.want()
	})
}

func TestFenceSimDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 10000")
		s.send("hold db 10000")
		s.add(webV4, webV6, dbV4)
		s.send("drop web")
		s.want(dbV4)
		s.sleep(20 * time.Second) // the old deadline of web does no harm
		s.want()
	})
}

// A reload moves db to another address while it is held, adds a group and forgets web: the old address of db
// goes, the new one is guarded by db's hold, the new group's address by its own, and web's addresses are no
// longer the fence's business (the agent removed them; the fence removes them too).
func TestFenceSimVIPs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold db 1000")
		s.send("hold web 1000")
		s.add(dbV4, webV4)
		dbNew := VIP{Prefix: netip.MustParsePrefix("10.77.9.3/24"), Interface: "eth0"}
		s.send(strings.TrimSuffix(VIPsLine("db", []VIP{dbV4, dbNew}), "\n"))
		s.add(dbNew)
		s.send(strings.TrimSuffix(VIPsLine("db", []VIP{dbNew}), "\n"))
		s.want(webV4)
		if !s.kernel.has(dbNew) {
			t.Fatal("the new address of db went at once")
		}
		s.send(strings.TrimSuffix(VIPsLine("web", nil), "\n"))
		s.want()
		api := VIP{Prefix: netip.MustParsePrefix("10.77.9.4/24"), Interface: "eth0"}
		s.send(strings.TrimSuffix(VIPsLine("api", []VIP{api}), "\n"))
		s.send("hold api 2000")
		s.add(api)
		s.sleep(time.Second)
		if s.kernel.has(dbNew) {
			t.Error("db's new address outlived db's hold")
		}
		if !s.kernel.has(api) {
			t.Error("api's address went before its hold ran out")
		}
		s.sleep(time.Second)
		if s.kernel.has(api) {
			t.Error("api's address outlived its hold")
		}
		// An address of another group is refused, and changes nothing.
		s.send(strings.TrimSuffix(VIPsLine("db", []VIP{api}), "\n"))
		s.send("hold db 5000")
		s.add(dbNew)
		s.sleep(time.Second)
		if !s.kernel.has(dbNew) {
			t.Error("a refused vips line changed db's addresses")
		}
	})
}

func TestFenceSimEOF(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 10000")
		s.send("hold db 10000")
		s.add(webV4, webV6, dbV4)
		s.send("drop web") // lines before the EOF are still acted on, in order
		s.w.Close()
		synctest.Wait()
		s.want()
		if err, ok := s.returned(); !ok || err != nil {
			t.Errorf("RunFence after EOF: returned %v, %v; want nil at once", ok, err)
		}
	})
}

func TestFenceSimReadError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 10000")
		s.add(webV4)
		s.w.CloseWithError(errors.New("broken pipe"))
		synctest.Wait()
		s.want()
		if err, ok := s.returned(); !ok || err == nil || err.Error() != "reading the agent's commands: broken pipe" {
			t.Errorf("RunFence after a read error: returned %v, %v", ok, err)
		}
	})
}

func TestFenceSimCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 10000")
		s.add(webV4, webV6)
		s.cancel()
		synctest.Wait()
		s.want()
		if err, ok := s.returned(); !ok || !errors.Is(err, context.Canceled) {
			t.Errorf("RunFence after cancel: returned %v, %v", ok, err)
		}
	})
}

// TestFenceSimReadd: an address of a group without a hold is removed again (the agent was frozen between checking
// its lease and adding or renewing the address, and resumed after the fence removed it).
func TestFenceSimReadd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 100")
		s.add(webV4)
		s.sleep(100 * time.Millisecond)
		s.want()
		s.add(webV4) // the frozen agent resumes
		s.sleep(readdGrace - time.Millisecond)
		s.want(webV4)
		s.sleep(time.Millisecond)
		s.want()

		// A hold that arrives within the grace (read after the address notification) keeps the address.
		s.add(webV4)
		s.sleep(readdGrace / 2)
		s.send("hold web 1000")
		s.sleep(readdGrace)
		s.want(webV4)
		// And an address added under a hold is not touched until the deadline.
		s.add(webV6)
		s.sleep(950*time.Millisecond - 1) // now 225 ms; the hold, read at 175 ms, runs out at 1175 ms
		s.want(webV4, webV6)
		s.sleep(1)
		s.want()
	})
}

// TestFenceSimStartSweep: addresses left from before the fence started, with no hold, are removed.
func TestFenceSimStartSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kernel := newMemTable()
		kernel.addrs[key(dbV4)] = true
		r, w := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- runFence(t.Context(), r, map[string][]VIP{"db": {dbV4}}, newManager(nil, kernel), testLog(t), func() time.Duration { return 0 })
		}()
		time.Sleep(readdGrace)
		synctest.Wait()
		if kernel.has(dbV4) {
			t.Error("a VIP without a hold survived the fence's start")
		}
		w.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func TestFenceSimBadLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold web 300")
		s.add(webV4)
		for _, line := range []string{
			"", "   ", "hold", "hold web", "hold web abc", "hold web 1.5", "hold web 99999999999999",
			"hold web 300 then", "hold web 300 1 2", "hold nope 10000", "drop nope", "drop", "drop web now", "frob web",
			"HOLD web 10000", strings.Repeat("x", 1000),
		} {
			s.send(line)
		}
		s.sleep(299 * time.Millisecond)
		s.want(webV4) // nothing dropped it early
		s.sleep(time.Millisecond)
		s.want() // nor kept it late
		if _, ok := s.returned(); ok {
			t.Error("RunFence returned on bad lines")
		}
	})
}

func TestFenceSimRemoveRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send("hold db 100")
		s.add(dbV4)
		s.kernel.mu.Lock()
		s.kernel.failDels = 2
		s.kernel.mu.Unlock()
		s.sleep(100 * time.Millisecond)
		s.want(dbV4)
		s.sleep(retryEvery)
		s.want(dbV4)
		s.sleep(retryEvery)
		s.want()
	})
}

// FuzzFenceCommand: no line from the agent makes the fence panic, and a hold it accepts sets a deadline between
// now and a day from now.
func FuzzFenceCommand(f *testing.F) {
	for _, s := range []string{"hold web 300", "hold web 300 123456789", "drop web", "hold web -1", "hold  web\t5",
		"hold web 9223372036854775807", "hold web 1 -9223372036854775808", "drop db extra", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		kernel := newMemTable()
		fc := &fence{m: newManager(nil, kernel), log: slog.New(slog.DiscardHandler), mono: func() time.Duration { return time.Hour },
			groups: map[string]*fenceGroup{"web": {name: "web", vips: []VIP{webV4}}},
			group:  map[VIP]*fenceGroup{}, checks: map[VIP]check{}}
		fc.group[webV4] = fc.groups["web"]
		now := time.Now()
		fc.command(line, now)
		if u := fc.groups["web"].until; !u.IsZero() && (u.Before(now) || u.After(now.Add(maxHold))) {
			t.Errorf("%q: deadline %v from now", line, u.Sub(now))
		}
	})
}

// TestFenceSimKeep: after "keep ADDR..." the fence removes those addresses at their deadline without resetting
// their connections (tcp_reset: false), and the others with; a later line replaces the list.
func TestFenceSimKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t)
		s.send(strings.TrimSuffix(KeepLine([]VIP{webV4, webV6}), "\n"))
		s.send("hold web 100")
		s.send("hold db 100")
		s.add(webV4, webV6, dbV4)
		s.sleep(100 * time.Millisecond)
		s.want()
		aborted := func(v VIP) int {
			s.kernel.mu.Lock()
			defer s.kernel.mu.Unlock()
			return s.kernel.aborted[v.Addr()]
		}
		if aborted(webV4) != 0 || aborted(webV6) != 0 || aborted(dbV4) != 1 {
			t.Errorf("resets before removal: web %d/%d, db %d; want 0/0 (kept) and 1", aborted(webV4), aborted(webV6), aborted(dbV4))
		}
		s.send("keep")
		s.send("hold web 100")
		s.add(webV4)
		s.sleep(100 * time.Millisecond)
		if aborted(webV4) != 1 {
			t.Errorf("after an empty keep line web's connections were reset %d times, want 1", aborted(webV4))
		}
		s.send("keep 10.77.9.999")
		s.send("hold web 100")
		s.add(webV4)
		s.sleep(100 * time.Millisecond)
		if aborted(webV4) != 2 {
			t.Errorf("a bad keep line changed the list: web's connections reset %d times, want 2", aborted(webV4))
		}
	})
}
