// Package vip moves virtual IP addresses: it adds a group's addresses to a network interface when this node takes
// the group over, tells the LAN about it (gratuitous ARP for IPv4, unsolicited neighbour advertisements for IPv6),
// and removes them again when the node gives the group up.
//
// Two things in here keep the address from outliving the lease that entitles this node to it:
//
//   - every address is added with a kernel lifetime (valid_lft) that the owner renews about once a second, so a
//     node on which nothing of Baton runs any more loses the address on its own, within whole seconds;
//   - RunFence, the body of a small separate process (the fence), which removes a group's addresses at a deadline
//     the agent hands it, or at once when the agent dies. Its timing argument is in the RunFence comment and in
//     README.md.
//
// A Manager works on the network namespace of the thread that calls it; everything here is Linux only.
package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// VIP is a virtual IP address of a group and the interface it lives on, e.g. 10.0.0.100/24 on eth0. The prefix
// keeps the host address (10.0.0.100/24, not 10.0.0.0/24): its length is the subnet the address is added with.
type VIP struct {
	Prefix    netip.Prefix
	Interface string
}

// String returns e.g. "10.0.0.100/24 on eth0".
func (v VIP) String() string { return v.Prefix.String() + " on " + v.Interface }

// Addr is the address itself, without the prefix length.
func (v VIP) Addr() netip.Addr { return v.Prefix.Addr() }

// ErrNoInterface is wrapped by the errors about an interface that does not exist.
var ErrNoInterface = errors.New("no such interface on this host")

// ErrNotPresent is wrapped by the errors of Renew and Announce when the address is not on its interface: they
// refresh and advertise an address this node holds, and never bring back one that is gone (see Renew).
var ErrNotPresent = errors.New("the address is not on the interface")

func noInterface(name string) error { return fmt.Errorf("interface %q: %w", name, ErrNoInterface) }

// Parse checks a VIP as the config spells it. The errors name the value, for check-config to put behind the
// field path.
func Parse(address, iface string) (VIP, error) {
	p, err := netip.ParsePrefix(address)
	if err != nil {
		return VIP{}, fmt.Errorf("%q is not an IP prefix (want e.g. 10.0.0.100/24)", address)
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return VIP{}, fmt.Errorf("%q is an IPv4-mapped IPv6 prefix; write it as IPv4 (e.g. 10.0.0.100/24)", address)
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return VIP{}, fmt.Errorf("%s cannot be a VIP: it is not a unicast address", a)
	}
	if err := checkInterfaceName(iface); err != nil {
		return VIP{}, err
	}
	return VIP{Prefix: p, Interface: iface}, nil
}

// checkInterfaceName applies the kernel's rule for interface names (dev_valid_name).
func checkInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("missing interface (the network interface to add the address to, e.g. eth0)")
	case len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\r\v\f"):
		return fmt.Errorf("%q is not an interface name (at most 15 characters, no '/', ':' or spaces)", name)
	}
	return nil
}

// check rejects a VIP that Parse would not have produced (e.g. the zero VIP), so that no method sends the kernel
// a half-empty request.
func (v VIP) check() error {
	if !v.Prefix.IsValid() {
		return fmt.Errorf("VIP on %q has no address", v.Interface)
	}
	if _, err := Parse(v.Prefix.String(), v.Interface); err != nil {
		return err
	}
	return nil
}
