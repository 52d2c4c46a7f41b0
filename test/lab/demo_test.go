package labtest

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/baton-ha/baton/internal/proctest"
)

// TestDemoVIP runs `baton demo --vip` non-interactively: the README's demo
// in the namespace lab with a real VIP.
func TestDemoVIP(t *testing.T) {
	cmd := exec.Command(bin, "demo", "--vip")
	out, err, timedOut := proctest.RunWithin(cmd, 120*time.Second)
	if timedOut {
		t.Fatalf("demo --vip did not finish within 120 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("demo --vip failed: %v\n%s", err, out)
	}
	for _, want := range []string{"took over the VIP; the client saw an outage of", "0 rounds with two owners", "==> done"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo --vip output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("%s", out)
}
