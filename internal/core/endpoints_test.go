package core_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/baton-ha/baton/internal/core"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/quorum"
)

const endpointsConfig = `
version: 1
cluster: {name: c, secret: "0123456789abcdef0123456789abcdef"}
nodes:
  - {name: n1, address: 10.0.0.1}
  - {name: n2, address: 10.0.0.2}
  - {name: w1, address: 10.0.0.3, witness: true}
groups:
  - name: web
    members: [{node: n1}, {node: n2}]
    proxy: {listen: ":9080", port: 8080}
  - name: edge
    mode: active-active
    port: 443
    members: [{node: n1}, {node: n2}]
    vips:
      - {address: 10.0.1.1/24, interface: eth0}
      - {address: 10.0.1.2/24, interface: eth0}
      - {address: 10.0.1.3/24, interface: eth0}
`

func TestEndpointsOf(t *testing.T) {
	cfg, err := config.Parse([]byte(endpointsConfig), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	spec := cfg.CoreSpec()
	s := quorum.NewState()
	if _, ok := core.EndpointsOf(spec, s, "nope"); ok {
		t.Fatal("unknown group found")
	}
	e, _ := core.EndpointsOf(spec, s, "web")
	if len(e.Endpoints) != 0 || e.Generation != 0 || e.Mode != "active-passive" {
		t.Fatalf("unowned web: %+v", e)
	}
	s.Groups["web"] = quorum.GroupState{Owner: "n2", Epoch: 5}
	s.Groups["edge[0]"] = quorum.GroupState{Owner: "n1", Epoch: 1}
	s.Groups["edge[1]"] = quorum.GroupState{Owner: "n2", Epoch: 3}
	s.Groups["edge[2]"] = quorum.GroupState{Owner: "n1", Epoch: 2}
	e, _ = core.EndpointsOf(spec, s, "web")
	if len(e.Endpoints) != 1 || e.Endpoints[0] != (core.Endpoint{Node: "n2", Address: "10.0.0.2", Port: 8080, Epoch: 5}) || e.Generation != 5 {
		t.Fatalf("web: %+v", e)
	}
	if got := e.DNSAddrs(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) {
		t.Fatalf("web DNS %v, want the owner's address", got)
	}
	e, _ = core.EndpointsOf(spec, s, "edge")
	if len(e.Endpoints) != 3 || e.Generation != 6 || e.Endpoints[1].Unit != "edge[1]" || e.Endpoints[1].VIP != "10.0.1.2" || e.Endpoints[1].Port != 443 {
		t.Fatalf("edge: %+v", e)
	}
	if got := e.DNSAddrs(); len(got) != 3 || got[0] != netip.MustParseAddr("10.0.1.1") {
		t.Fatalf("edge DNS %v, want its three owned VIPs", got)
	}
}
