package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"

	"github.com/baton-ha/baton/internal/nsnet"
)

// All fault rules live in one table per namespace, so Heal and Close remove
// them with a single "delete table". Partition and loss use separate base
// chains: a partition stays in place while the loss rate is changed.
const nftBase = `add table inet batonlab
add chain inet batonlab part_in { type filter hook input priority -10 ; policy accept ; }
add chain inet batonlab part_out { type filter hook output priority -10 ; policy accept ; }
add chain inet batonlab loss_in { type filter hook input priority -5 ; policy accept ; }
add chain inet batonlab lossy
`

// LinkDown sets the bridge-side end of host's veth down: to the host it looks
// like a pulled cable (eth0 loses carrier but keeps its addresses and admin
// state). host may be "client".
func (l *Lab) LinkDown(host string) error { return l.setPort(host, false) }

// LinkUp undoes LinkDown.
func (l *Lab) LinkUp(host string) error { return l.setPort(host, true) }

func (l *Lab) setPort(host string, up bool) error {
	if err := l.CheckHost(host); err != nil {
		return err
	}
	br, err := l.Netlink(Bridge)
	if err != nil {
		return err
	}
	link, err := br.LinkByName(nsnet.BridgePort(host))
	if err != nil {
		return fmt.Errorf("lab: %s: %w", nsnet.BridgePort(host), err)
	}
	if up {
		err = br.LinkSetUp(link)
	} else {
		err = br.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("lab: link %s up=%v: %w", host, up, err)
	}
	l.Log().Info("link", "host", host, "up", up)
	return nil
}

// Partition drops all IP traffic between every member of a and every member
// of b, in both directions, with nftables rules (table inet batonlab) in each
// member's namespace: incoming packets are dropped by source MAC and source
// address, outgoing ones by destination address. Matching the MAC as well
// catches traffic to and from addresses the lab does not know about, such as
// VIPs. ARP is not filtered. "client" may be a member. Partitions add up
// until Heal.
func (l *Lab) Partition(a, b []string) error {
	if len(a) == 0 || len(b) == 0 {
		return errors.New("lab: Partition: both sides need at least one host")
	}
	for _, h := range append(slices.Clone(a), b...) {
		if err := l.CheckHost(h); err != nil {
			return err
		}
	}
	for _, h := range a {
		if slices.Contains(b, h) {
			return fmt.Errorf("lab: Partition: %s is on both sides", h)
		}
	}
	apply := func(members, others []string) error {
		for _, h := range members {
			var s strings.Builder
			s.WriteString(nftBase)
			for _, m := range l.matchers(others, "saddr") {
				fmt.Fprintf(&s, "add rule inet batonlab part_in %s drop\n", m)
			}
			for _, m := range l.addrMatchers(others, "daddr") {
				fmt.Fprintf(&s, "add rule inet batonlab part_out %s drop\n", m)
			}
			if err := l.applyNft(h, s.String()); err != nil {
				return err
			}
		}
		return nil
	}
	if err := apply(a, b); err != nil {
		return err
	}
	if err := apply(b, a); err != nil {
		return err
	}
	l.Log().Info("partition", "a", a, "b", b)
	return nil
}

// Loss makes each listed host drop percent% of the packets it receives from
// the other lab hosts (all IP traffic: UDP, TCP, ICMP), chosen at random per
// packet (nft "numgen random mod 100 < percent"). Traffic from the client is
// only affected if "client" is listed too; a listed client drops percent% of
// what it receives from the hosts. Calling Loss again replaces the rate on
// the listed hosts; percent 0 removes it.
func (l *Lab) Loss(hosts []string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("lab: Loss: percent = %d, want 0..100", percent)
	}
	for _, h := range hosts {
		if err := l.CheckHost(h); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		var sources []string
		for _, o := range l.Hosts() {
			if o != h {
				sources = append(sources, o)
			}
		}
		if h != Client && slices.Contains(hosts, Client) {
			sources = append(sources, Client)
		}
		var s strings.Builder
		s.WriteString(nftBase)
		s.WriteString("flush chain inet batonlab loss_in\nflush chain inet batonlab lossy\n")
		if percent > 0 && len(sources) > 0 {
			if percent == 100 {
				s.WriteString("add rule inet batonlab lossy drop\n") // nft rejects "< 100" for a 0..99 value
			} else {
				fmt.Fprintf(&s, "add rule inet batonlab lossy numgen random mod 100 < %d drop\n", percent)
			}
			s.WriteString("add rule inet batonlab lossy accept\n")
			// One goto per packet: each packet draws once, whichever rule
			// matches it.
			for _, m := range l.matchers(sources, "saddr") {
				fmt.Fprintf(&s, "add rule inet batonlab loss_in %s goto lossy\n", m)
			}
		}
		if err := l.applyNft(h, s.String()); err != nil {
			return err
		}
	}
	l.Log().Info("loss", "hosts", hosts, "percent", percent)
	return nil
}

// Heal removes every partition and loss rule and sets every link up again
// (both veth ends).
func (l *Lab) Heal() error {
	if l.Closed() {
		return ErrClosed
	}
	l.mu.Lock()
	tables := slices.Sorted(maps.Keys(l.nftables))
	l.mu.Unlock()
	var errs []error
	for _, role := range tables {
		if out, err := l.nft(role, "delete table inet batonlab\n"); err != nil {
			errs = append(errs, fmt.Errorf("lab: %s: delete table: %w: %s", role, err, out))
			continue
		}
		l.mu.Lock()
		delete(l.nftables, role)
		l.mu.Unlock()
	}
	for _, role := range append([]string{Client}, l.Hosts()...) {
		if err := l.setPort(role, true); err != nil {
			errs = append(errs, err)
		}
		if err := l.SetUp(role, l.Iface()); err != nil {
			errs = append(errs, err)
		}
	}
	l.Log().Info("heal", "errors", len(errs))
	return errors.Join(errs...)
}

// matchers returns nft match expressions for packets from (dir "saddr") the
// given roles: by MAC and by address.
func (l *Lab) matchers(roles []string, dir string) []string {
	var macs []string
	for _, r := range roles {
		macs = append(macs, l.MAC(r).String())
	}
	return append([]string{"ether " + dir + " { " + strings.Join(macs, ", ") + " }"}, l.addrMatchers(roles, dir)...)
}

// addrMatchers returns nft match expressions on the roles' IPv4 (and IPv6)
// addresses in direction dir ("saddr" or "daddr").
func (l *Lab) addrMatchers(roles []string, dir string) []string {
	var v4, v6 []string
	for _, r := range roles {
		v4 = append(v4, l.Addr(r))
		if a := l.Addr6(r); a != "" {
			v6 = append(v6, a)
		}
	}
	out := []string{"ip " + dir + " { " + strings.Join(v4, ", ") + " }"}
	if len(v6) > 0 {
		out = append(out, "ip6 "+dir+" { "+strings.Join(v6, ", ")+" }")
	}
	return out
}

// applyNft loads an nft script atomically in role's namespace and remembers
// that the namespace now holds the batonlab table.
func (l *Lab) applyNft(role, script string) error {
	if l.Closed() {
		return ErrClosed
	}
	if out, err := l.nft(role, script); err != nil {
		return fmt.Errorf("lab: %s: nft: %w: %s\nscript:\n%s", role, err, bytes.TrimSpace(out), script)
	}
	l.mu.Lock()
	l.nftables[role] = true
	l.mu.Unlock()
	return nil
}

func (l *Lab) nft(role, script string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), nsnet.CmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.NS(role), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	return cmd.CombinedOutput()
}

// Drop is one direction of a partition: packets from any of From to any of
// To are dropped on arrival at To.
type Drop struct {
	From, To []string
}

// Net is a whole set of network faults, for callers whose faults overlap
// and end independently (internal/nemesis): SetNet replaces the previous set
// at once instead of adding to it.
type Net struct {
	// Drops: each drops what its From sends to its To, on To's input (by
	// source MAC and address, as Partition does). A Drop and its mirror make
	// a partition; one alone is an asymmetric one (To can send to From but
	// not hear it).
	Drops []Drop
	// Loss: host → percent of the IP packets it receives from the other
	// hosts that it drops at random (as Loss, not counting the client).
	Loss map[string]int
}

// SetNet makes n the lab's partitions and loss in every namespace (hosts and
// client), replacing what Partition, Loss or an earlier SetNet set; link
// state is not touched. Each namespace's rules change in one atomic nft
// transaction. SetNet(Net{}) removes every rule.
func (l *Lab) SetNet(n Net) error {
	in := map[string][]string{} // role → sources to drop
	for _, d := range n.Drops {
		for _, h := range append(slices.Clone(d.From), d.To...) {
			if err := l.CheckHost(h); err != nil {
				return err
			}
		}
		for _, to := range d.To {
			for _, from := range d.From {
				if from != to && !slices.Contains(in[to], from) {
					in[to] = append(in[to], from)
				}
			}
		}
	}
	for h, p := range n.Loss {
		if err := l.CheckHost(h); err != nil {
			return err
		}
		if p < 0 || p > 100 {
			return fmt.Errorf("lab: SetNet: loss on %s = %d%%, want 0..100", h, p)
		}
	}
	var errs []error
	for _, role := range append([]string{Client}, l.Hosts()...) {
		var s strings.Builder
		s.WriteString(nftBase)
		s.WriteString("flush chain inet batonlab part_in\nflush chain inet batonlab part_out\n" +
			"flush chain inet batonlab loss_in\nflush chain inet batonlab lossy\n")
		if from := in[role]; len(from) > 0 {
			slices.Sort(from)
			for _, m := range l.matchers(from, "saddr") {
				fmt.Fprintf(&s, "add rule inet batonlab part_in %s drop\n", m)
			}
		}
		if p := n.Loss[role]; p > 0 && role != Client {
			if p == 100 {
				s.WriteString("add rule inet batonlab lossy drop\n")
			} else {
				fmt.Fprintf(&s, "add rule inet batonlab lossy numgen random mod 100 < %d drop\n", p)
			}
			s.WriteString("add rule inet batonlab lossy accept\n")
			var sources []string
			for _, o := range l.Hosts() {
				if o != role {
					sources = append(sources, o)
				}
			}
			for _, m := range l.matchers(sources, "saddr") {
				fmt.Fprintf(&s, "add rule inet batonlab loss_in %s goto lossy\n", m)
			}
		}
		if err := l.applyNft(role, s.String()); err != nil {
			errs = append(errs, err)
		}
	}
	l.Log().Info("net", "drops", n.Drops, "loss", n.Loss)
	return errors.Join(errs...)
}
