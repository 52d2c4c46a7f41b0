package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter routes hashicorp/raft's hclog output into a slog.Logger.
// Raft is chatty at Info (elections, snapshots, connections): everything
// below Warn is logged at slog Debug, so an agent's Info log stays about
// Baton's own decisions.
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
	peers   *peerErrors // shared by every adapter derived from one (With, Named)
}

// peerErrors rate-limits raft's complaints that it cannot reach a peer. The
// leader logs one at ERROR on every retry (about every 100 ms) while a peer
// restarts, which is a normal event: they are logged as warnings, each kind
// at most once per peerErrorEvery, with the count of those not logged.
type peerErrors struct {
	mu   sync.Mutex
	last map[string]time.Time
	hush map[string]int
}

const peerErrorEvery = 10 * time.Second

// peerUnreachable are raft's messages for a peer it cannot reach right now.
var peerUnreachable = []string{"failed to heartbeat to", "failed to appendEntries to", "failed to contact",
	"failed to make requestVote RPC", "failed to send snapshot to", "failed to pipeline appendEntries"}

func newHclogAdapter(l *slog.Logger) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &hclogAdapter{l: l, peers: &peerErrors{last: map[string]time.Time{}, hush: map[string]int{}}}
}

// quiet reports whether to skip a peer-unreachable message, and otherwise
// how many like it were skipped since it was last logged.
func (p *peerErrors) quiet(key string, now time.Time) (skip bool, skipped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.last[key]) < peerErrorEvery {
		p.hush[key]++
		return true, 0
	}
	p.last[key] = now
	skipped = p.hush[key]
	delete(p.hush, key)
	return false, skipped
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelDebug
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	sl := slogLevel(level)
	for _, m := range peerUnreachable {
		if strings.HasPrefix(msg, m) && a.peers != nil {
			skip, skipped := a.peers.quiet(msg+fmt.Sprint(peerArg(args)), time.Now())
			if skip {
				return
			}
			sl = slog.LevelWarn
			if skipped > 0 {
				args = append(args, "not_logged_since_last", skipped)
			}
			break
		}
	}
	if !a.l.Enabled(context.Background(), sl) {
		return
	}
	for i, v := range args {
		// raft formats some values lazily with hclog.Fmt.
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	if a.name != "" {
		args = append([]any{"raft_logger", a.name}, args...)
	}
	a.l.Log(context.Background(), sl, msg, args...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l.With(args...), name: a.name, implied: append(append([]any(nil), a.implied...), args...), peers: a.peers}
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return &hclogAdapter{l: a.l, name: name, implied: a.implied, peers: a.peers}
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l, name: name, implied: a.implied, peers: a.peers}
}

// SetLevel is ignored: the slog handler decides what is recorded.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case a.enabled(slog.LevelDebug):
		return hclog.Debug
	case a.enabled(slog.LevelWarn):
		return hclog.Warn
	case a.enabled(slog.LevelError):
		return hclog.Error
	default:
		return hclog.Off
	}
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter logs each written line, taking the level from a leading
// "[WARN]"/"[ERR]"-style tag as the standard library loggers in raft's
// dependencies write them; untagged lines are Debug.
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return stdWriter{a}
}

type stdWriter struct{ a *hclogAdapter }

func (w stdWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		level := hclog.Debug
		switch {
		case strings.HasPrefix(s, "[ERR"):
			level = hclog.Error
		case strings.HasPrefix(s, "[WARN"):
			level = hclog.Warn
		}
		if i := strings.Index(s, "] "); i >= 0 && s[0] == '[' {
			s = s[i+2:]
		}
		w.a.Log(level, s)
	}
	return len(p), nil
}

// peerArg returns the value of the "peer" key in raft's log arguments.
func peerArg(args []any) any {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "peer" {
			return args[i+1]
		}
	}
	return nil
}
