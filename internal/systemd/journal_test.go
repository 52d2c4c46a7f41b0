package systemd

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestJournalHandler(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(NewJournalHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log = log.With("node", "n1")
	log.Debug("d")
	log.Info("agent started", "cluster", "prod")
	log.WithGroup("g").Warn("w", "k", 1)
	log.Error("e", "err", "boom")
	want := []string{
		`<7>level=DEBUG msg=d node=n1`,
		`<6>level=INFO msg="agent started" node=n1 cluster=prod`,
		`<4>level=WARN msg=w node=n1 g.k=1`,
		`<3>level=ERROR msg=e node=n1 err=boom`,
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), out.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestJournalHandlerLevel(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(NewJournalHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	log.Info("hidden")
	if out.Len() != 0 {
		t.Fatalf("info logged at level warn: %q", out.String())
	}
}

func TestLogsToJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	if !LogsToJournal(f) {
		t.Error("stderr that is the journal stream not recognised")
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1))
	if LogsToJournal(f) {
		t.Error("a redirected stderr taken for the journal")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if LogsToJournal(f) {
		t.Error("journal without JOURNAL_STREAM")
	}
}
