package systemd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// LogsToJournal reports whether f (the agent's stderr) is connected to the
// journal: systemd sets JOURNAL_STREAM to the device and inode of the stream
// it connected, and a process whose stderr was redirected elsewhere (a
// `baton agent 2>file` inside a unit) no longer matches it.
func LogsToJournal(f *os.File) bool {
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" || f == nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// NewJournalHandler is the agent's log handler under systemd: the logfmt
// lines of slog.TextHandler without their time (the journal stamps every
// line itself, so a second timestamp only takes room), each prefixed with its
// syslog priority (<3> error, <4> warning, <6> info, <7> debug), which
// journald turns into the entry's PRIORITY, so `journalctl -p warning -u
// baton` shows warnings and errors only.
func NewJournalHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	replace := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if replace != nil {
			return replace(groups, a)
		}
		return a
	}
	out := &journalOut{w: w}
	return &journalHandler{out: out, inner: slog.NewTextHandler(&out.buf, &o)}
}

// journalOut is shared by a handler and those derived from it (WithAttrs,
// WithGroup): one record is formatted into buf, then written with its prefix
// in one Write, under mu.
type journalOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   io.Writer
}

type journalHandler struct {
	out   *journalOut
	inner slog.Handler // writes into out.buf
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	fmt.Fprintf(&h.out.buf, "<%d>", priority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.out.w.Write(h.out.buf.Bytes())
	return err
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{out: h.out, inner: h.inner.WithAttrs(as)}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{out: h.out, inner: h.inner.WithGroup(name)}
}

// priority maps a slog level to a syslog priority (sd-daemon(3)).
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	default:
		return 7
	}
}
