package benchkit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseCounts(t *testing.T) {
	m, err := ParseCounts(" sigstop=12, loss=8,", "fault")
	if err != nil || m["sigstop"] != 12 || m["loss"] != 8 || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"loss", "loss=0", "loss=x"} {
		if _, err := ParseCounts(bad, "fault"); err == nil || !strings.Contains(err.Error(), "want fault=N") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestThisHost(t *testing.T) {
	h := ThisHost()
	if h.NProc < 1 || h.Go == "" || h.LoadAvg == "" {
		t.Fatalf("%+v", h)
	}
}

// TestCheckExits runs Check in a child process (it exits): the message names
// the command and the error, and the status is 1.
func TestCheckExits(t *testing.T) {
	if os.Getenv("BENCHKIT_CHECK_CHILD") != "" {
		Check(nil)
		Check(errors.New("lab: boom"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckExits$")
	cmd.Env = append(os.Environ(), "BENCHKIT_CHECK_CHILD=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("child: %v, want exit status 1\n%s", err, out)
	}
	if want := filepath.Base(os.Args[0]) + ": lab: boom\n"; string(out) != want {
		t.Errorf("child printed %q, want %q", out, want)
	}
}

func TestCPUTicksAndRSS(t *testing.T) {
	pid := os.Getpid()
	before := CPUTicks(pid)
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	if after := CPUTicks(pid); after < before {
		t.Errorf("CPU ticks went back: %d → %d", before, after)
	}
	if rss := RSSKB(pid); rss < 1024 {
		t.Errorf("RSS of the test process %d KiB, want more than 1 MiB", rss)
	}
}

func TestQuantileAndFormat(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for q, want := range map[float64]float64{0.5: 3, 0.9: 5, 0.99: 5, 0: 1} {
		if got := Quantile(xs, q); got != want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", xs, q, got, want)
		}
	}
	if Quantile(nil, 0.5) != 0 || xs[0] != 5 {
		t.Error("Quantile of none is not 0, or it sorted its input")
	}
	if got := FormatMs(Ms(412 * time.Millisecond)); got != "412 ms" {
		t.Errorf("FormatMs = %q", got)
	}
	if got := FormatMs(12345); got != "12.3 s" {
		t.Errorf("FormatMs(12345) = %q", got)
	}
}
