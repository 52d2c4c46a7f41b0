package vip

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		address, iface string
		want           string // the error, or "" for a VIP
	}{
		{"10.0.0.100/24", "eth0", ""},
		{"10.0.0.100/32", "bond0.100", ""},
		{"fd00::100/64", "eth0", ""},
		{"10.0.0.300/24", "eth0", `"10.0.0.300/24" is not an IP prefix (want e.g. 10.0.0.100/24)`},
		{"10.0.0.100", "eth0", `"10.0.0.100" is not an IP prefix (want e.g. 10.0.0.100/24)`},
		{"", "eth0", `"" is not an IP prefix (want e.g. 10.0.0.100/24)`},
		{"fe80::1%eth0/64", "eth0", `"fe80::1%eth0/64" is not an IP prefix (want e.g. 10.0.0.100/24)`},
		{"::ffff:10.0.0.1/120", "eth0", `"::ffff:10.0.0.1/120" is an IPv4-mapped IPv6 prefix; write it as IPv4 (e.g. 10.0.0.100/24)`},
		{"0.0.0.0/0", "eth0", "0.0.0.0 cannot be a VIP: it is not a unicast address"},
		{"224.0.0.18/32", "eth0", "224.0.0.18 cannot be a VIP: it is not a unicast address"},
		{"ff02::1/128", "eth0", "ff02::1 cannot be a VIP: it is not a unicast address"},
		{"10.0.0.100/24", "", "missing interface (the network interface to add the address to, e.g. eth0)"},
		{"10.0.0.100/24", "a very long interface name", `"a very long interface name" is not an interface name (at most 15 characters, no '/', ':' or spaces)`},
		{"10.0.0.100/24", "eth0:1", `"eth0:1" is not an interface name (at most 15 characters, no '/', ':' or spaces)`},
		{"10.0.0.100/24", "..", `".." is not an interface name (at most 15 characters, no '/', ':' or spaces)`},
	} {
		v, err := Parse(c.address, c.iface)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Parse(%q, %q): %v", c.address, c.iface, err)
		case c.want == "":
			if v.Prefix != netip.MustParsePrefix(c.address) || v.Interface != c.iface {
				t.Errorf("Parse(%q, %q) = %+v", c.address, c.iface, v)
			}
		case err == nil:
			t.Errorf("Parse(%q, %q) = %v, want error %s", c.address, c.iface, v, c.want)
		case err.Error() != c.want:
			t.Errorf("Parse(%q, %q):\n got %s\nwant %s", c.address, c.iface, err, c.want)
		}
	}
}

func TestVIPString(t *testing.T) {
	v := VIP{Prefix: netip.MustParsePrefix("10.0.0.100/24"), Interface: "eth0"}
	if got := v.String(); got != "10.0.0.100/24 on eth0" {
		t.Errorf("String() = %q", got)
	}
	if err := (VIP{Interface: "eth0"}).check(); err == nil || err.Error() != `VIP on "eth0" has no address` {
		t.Errorf("zero VIP: %v", err)
	}
}

func TestLifetimeSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint32
	}{
		{0, 0}, // forever
		{time.Nanosecond, 1},
		{300 * time.Millisecond, 1}, // never 0, which would mean forever
		{time.Second, 1},
		{1001 * time.Millisecond, 2},
		{2500 * time.Millisecond, 3},
		{1 << 62, 0}, // beyond the kernel's range: forever
	} {
		got, err := lifetimeSeconds(c.d)
		if err != nil || got != c.want {
			t.Errorf("lifetimeSeconds(%v) = %d, %v; want %d", c.d, got, err, c.want)
		}
	}
	if _, err := lifetimeSeconds(-time.Second); err == nil || err.Error() != "lifetime -1s is negative (use 0 for an address that does not expire)" {
		t.Errorf("negative lifetime: %v", err)
	}
}

func TestLines(t *testing.T) {
	if got := DropLine("web"); got != "drop web\n" {
		t.Errorf("DropLine = %q", got)
	}
	if got := KeepLine([]VIP{{Prefix: netip.MustParsePrefix("10.0.0.1/24")}, {Prefix: netip.MustParsePrefix("fd00::1/64")}}); got != "keep 10.0.0.1 fd00::1\n" {
		t.Errorf("KeepLine = %q", got)
	}
	if got := KeepLine(nil); got != "keep\n" {
		t.Errorf("KeepLine(nil) = %q", got)
	}
	before := monotonicNow()
	line := HoldLine("web", 1999*time.Microsecond)
	var group string
	var ms, at int64
	if n, err := fmt.Sscanf(line, "hold %s %d %d\n", &group, &ms, &at); n != 3 || err != nil || group != "web" || ms != 1 {
		t.Fatalf("HoldLine = %q", line)
	}
	if at < int64(before) || at > int64(monotonicNow()) {
		t.Errorf("HoldLine stamped %d, not between %d and now", at, before)
	}
}
