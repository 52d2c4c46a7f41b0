package nsnet

import (
	"net/netip"
	"testing"

	"go.uber.org/goleak"
)

// The namespace lab itself is exercised as root through internal/lab's
// tests (which build on this package) and `baton demo --vip` in test/lab.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheckTarget(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"10.77.0.11", true}, {"10.77.0.255", true}, {"fd77::11", true}, {"127.0.0.1", true}, {"::1", true},
		{"::ffff:10.77.0.5", true}, {"10.77.1.1", false}, {"192.0.2.1", false}, {"fd78::1", false}, {"fd77:0:0:1::1", false},
	} {
		err := checkTarget(netip.MustParseAddr(c.addr))
		if (err == nil) != c.ok {
			t.Errorf("checkTarget(%s) = %v, want ok=%v", c.addr, err, c.ok)
		}
	}
}
