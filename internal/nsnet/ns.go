package nsnet

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vishvananda/netns"
)

// InNS runs f on a goroutine locked to an OS thread that is switched into
// host's namespace ("client" and "bridge" work too) and waits for it. Sockets
// f creates stay in that namespace for their whole life and may be used from
// any goroutine afterwards. Goroutines f starts run outside the namespace.
//
// f runs on another goroutine: it must not call t.FailNow (t.Fatal); a panic
// in f is re-raised in the caller.
func (l *Lab) InNS(host string, f func() error) error {
	return l.inNSRole(host, f)
}

func (l *Lab) inNSRole(role string, f func() error) error {
	target, err := l.handle(role)
	if err != nil {
		return err
	}
	return inNS(target, f)
}

// inNS runs f on a fresh locked thread switched into target. The thread goes
// back to its original namespace afterwards; if that fails the goroutine exits
// still locked, which makes the runtime destroy the thread rather than reuse
// it in the wrong namespace.
func inNS(target netns.NsHandle, f func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: setns: %w", err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = f()
		}()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// writeSysctls writes /proc/sys entries of the calling thread's network
// namespace (call inside InNS). optional: skip entries that do not exist
// (IPv6 disabled in the kernel).
func writeSysctls(kv map[string]string, optional bool) error {
	var errs []error
	for k, v := range kv {
		p := filepath.Join("/proc/sys", k)
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			errs = append(errs, fmt.Errorf("sysctl %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}

// ---- SIGINT/SIGTERM: close every live lab, then die of the signal ----

var live struct {
	sync.Mutex
	labs map[*Lab]struct{}
	sigs chan os.Signal
	stop chan struct{}
}

func register(l *Lab) {
	live.Lock()
	defer live.Unlock()
	if live.labs == nil {
		live.labs = map[*Lab]struct{}{}
	}
	live.labs[l] = struct{}{}
	if live.sigs != nil {
		return
	}
	sigs := make(chan os.Signal, 1)
	stop := make(chan struct{})
	live.sigs, live.stop = sigs, stop
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-stop:
		case sig := <-sigs:
			onSignal(sig.(syscall.Signal))
		}
	}()
}

func unregister(l *Lab) {
	live.Lock()
	delete(live.labs, l)
	if len(live.labs) > 0 || live.sigs == nil {
		live.Unlock()
		return
	}
	signal.Stop(live.sigs)
	close(live.stop)
	live.sigs, live.stop = nil, nil
	live.Unlock()
}

func onSignal(sig syscall.Signal) {
	live.Lock()
	labs := mapKeys(live.labs)
	live.Unlock()
	for _, l := range labs {
		l.log.Warn("signal: closing lab", "signal", sig.String())
		_ = l.Close()
	}
	// Every lab unregistered, so our Notify is stopped: re-raise for the
	// default action (or the program's own handler, if it has one).
	_ = syscall.Kill(os.Getpid(), sig)
}
