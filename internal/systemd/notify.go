// Package systemd connects the agent to systemd when it runs as a
// Type=notify service (packaging/baton.service): the sd_notify messages that
// tell systemd when the agent is ready, alive, reloading and stopping, and a
// log handler for the journal.
//
// The messages and when the agent sends them:
//
//   - READY=1 once the node has joined the quorum and caught up with what it
//     committed (a leader is known and this node applied the committed log),
//     so `systemctl start baton` returns when `baton status` can be trusted.
//   - WATCHDOG=1 from the agent's core loop (internal/agent, the goroutine
//     that drives core.Node), at most every half WatchdogSec: a core loop that
//     freezes stops petting, and systemd kills and restarts the agent.
//   - STOPPING=1 when the SIGTERM handoff begins.
//   - RELOADING=1 with MONOTONIC_USEC, then READY=1 again, around a live
//     reload: the reload path calls [Notifier.Reloading] before it applies a
//     new config and [Notifier.Reloaded] when it is done (whether the new
//     config was taken or refused), as Type=notify-reload expects.
//   - STATUS=... with a one-line state for `systemctl status`.
//
// Outside systemd (no NOTIFY_SOCKET) every method does nothing. The socket
// address is read once and NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID are
// removed from the environment, so that hooks, checks and supervised
// services (a PostgreSQL built with systemd support would otherwise send its
// own READY=1 on the agent's socket) do not inherit them.
package systemd

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to the socket systemd gave this process.
// Its methods are safe for concurrent use; each one sends at most one
// datagram and never blocks on systemd.
type Notifier struct {
	addr     string        // NOTIFY_SOCKET; "" outside systemd
	watchdog time.Duration // WatchdogSec as systemd passed it; 0 = off
	log      *slog.Logger

	mu      sync.Mutex
	lastPet time.Time
	ready   bool
	failed  bool // a send failed once (logged once, not per pet)
}

// New reads NOTIFY_SOCKET and the watchdog settings from the environment and
// removes them from it (see the package comment). log may be nil.
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	n := &Notifier{addr: os.Getenv("NOTIFY_SOCKET"), log: log}
	os.Unsetenv("NOTIFY_SOCKET")
	wd, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		log.Warn("systemd watchdog settings unreadable; not petting the watchdog", "err", err)
	}
	n.watchdog = wd
	return n
}

// Enabled reports whether systemd asked for notifications.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != "" }

// WatchdogInterval is the watchdog timeout systemd set (WatchdogSec), 0 when
// the watchdog is off.
func (n *Notifier) WatchdogInterval() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog
}

// Ready tells systemd the agent is up (READY=1) with a status line; only the
// first call sends READY, later ones only update the status.
func (n *Notifier) Ready(status string) {
	if !n.Enabled() {
		return
	}
	n.mu.Lock()
	first := !n.ready
	n.ready = true
	n.mu.Unlock()
	if first {
		n.send(daemon.SdNotifyReady + "\n" + statusLine(status))
		return
	}
	n.Status(status)
}

// IsReady reports whether READY=1 was sent.
func (n *Notifier) IsReady() bool {
	if !n.Enabled() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready
}

// Status sets the line `systemctl status` shows.
func (n *Notifier) Status(status string) {
	if n.Enabled() {
		n.send(statusLine(status))
	}
}

// Pet sends WATCHDOG=1 when the watchdog is on and half its interval has
// passed since the last pet (systemd's advice). Call it from the loop whose
// liveness the watchdog stands for, as often as that loop runs.
func (n *Notifier) Pet(now time.Time) {
	if n.WatchdogInterval() == 0 {
		return
	}
	n.mu.Lock()
	due := n.lastPet.IsZero() || now.Sub(n.lastPet) >= n.watchdog/2
	if due {
		n.lastPet = now
	}
	n.mu.Unlock()
	if due {
		n.send(daemon.SdNotifyWatchdog)
	}
}

// Stopping tells systemd the agent has begun to shut down (STOPPING=1).
func (n *Notifier) Stopping(status string) {
	if n.Enabled() {
		n.send(daemon.SdNotifyStopping + "\n" + statusLine(status))
	}
}

// Reloading tells systemd a configuration reload has begun: RELOADING=1 with
// MONOTONIC_USEC (the CLOCK_MONOTONIC time in microseconds, which systemd
// uses to match the reload it asked for). Call [Notifier.Reloaded] when the
// reload is over, whatever its outcome.
func (n *Notifier) Reloading() {
	if n.Enabled() {
		n.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec() + statusLine("reloading the config"))
	}
}

// Reloaded ends a reload begun with [Notifier.Reloading]: READY=1 with a
// status line saying what happened (e.g. "config reloaded: 1 group added" or
// "reload refused: ...; running the previous config").
func (n *Notifier) Reloaded(status string) {
	if n.Enabled() {
		n.send(daemon.SdNotifyReady + "\n" + statusLine(status))
	}
}

func statusLine(s string) string {
	// One line: systemd takes everything up to the newline.
	return "STATUS=" + strings.ReplaceAll(s, "\n", " ")
}

// send writes one datagram to the socket, as daemon.SdNotify does, but to the
// address read at New (the environment no longer holds it). A failure is
// logged once: systemd going away is not worth a line per watchdog pet.
func (n *Notifier) send(state string) {
	err := sendTo(n.addr, state)
	if err == nil {
		return
	}
	n.mu.Lock()
	first := !n.failed
	n.failed = true
	n.mu.Unlock()
	if first {
		n.log.Warn("cannot notify systemd (further failures are not logged)", "socket", n.addr, "err", err)
	}
}

func sendTo(addr, state string) error {
	if addr == "" {
		return errors.New("no NOTIFY_SOCKET")
	}
	// An address starting with "@" is an abstract socket; net handles it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}
