package benchkit

import (
	"strings"
	"testing"
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
