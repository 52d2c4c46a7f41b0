package agent

import (
	"net/netip"
	"testing"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/core"
)

// TestDNSGlueMatchesDirectAnswers: the SRV glue for a VIP group must not
// name node n1 with the VIP as its address, since n1.<zone> answers the
// node's own address.
func TestDNSGlueMatchesDirectAnswers(t *testing.T) {
	e := core.Endpoints{Group: "web", Endpoints: []core.Endpoint{{Node: "n1", Address: "10.0.0.11", Port: 80, VIP: "10.0.0.100"}}}
	vipGroup := &config.Group{Name: "web", Port: 80, VIPs: []config.VIP{{Address: "10.0.0.100/24", Interface: "eth0"}}}
	rec := dnsRecord(vipGroup, e)
	if len(rec.Targets) != 0 || len(rec.Addrs) != 1 || rec.Addrs[0] != netip.MustParseAddr("10.0.0.100") {
		t.Fatalf("VIP group: %+v, want the VIP and no node-named targets", rec)
	}
	e.Endpoints[0].VIP = ""
	rec = dnsRecord(&config.Group{Name: "web", Port: 80}, e)
	if len(rec.Targets) != 1 || rec.Targets[0].Node != "n1" || rec.Targets[0].Addr != netip.MustParseAddr("10.0.0.11") {
		t.Fatalf("group without VIPs: targets %+v, want n1 at its own address", rec.Targets)
	}
}
