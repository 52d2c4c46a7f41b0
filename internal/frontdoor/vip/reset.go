package vip

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// ResetTable is the name of the nftables table (family inet) in which the agent of node in cluster answers TCP
// connections to its groups' VIPs with a reset while this host does not hold them (see SetResets):
// baton_vip_CLUSTER_NODE, with every character nft would not take in a name as '_', so that agents of two clusters
// (or two nodes of one) on a host do not replace each other's rules.
func ResetTable(cluster, node string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
				return r
			}
			return '_'
		}, s)
	}
	return "baton_vip_" + clean(cluster) + "_" + clean(node)
}

// ErrNoNFT is wrapped by SetResets' and ClearResets' error when the nft command is not installed.
var ErrNoNFT = errors.New("the nft command is not installed (apt-get install nftables)")

// SetResets makes this host answer every TCP packet that arrives for one of vips while the address is not on
// this host with a TCP reset, instead of dropping it in silence. It replaces table (see ResetTable), in one
// nftables transaction, with a prerouting rule per interface:
//
//	iifname "eth0" ip daddr { 10.0.0.100 } fib daddr type != local meta l4proto tcp reject with tcp reset
//
// Why: when a VIP moves, clients keep sending to the old owner's MAC until the new owner's gratuitous ARP
// reaches them. Without a rule the old owner's kernel drops those packets (the address is no longer its own), and a
// client's lost SYN is retransmitted only after TCP's initial timeout of one second, however soon the new owner
// announces. With it the client is refused at once and its next attempt reaches the new owner as soon as the
// announcement has. The same holds on failover, when the fence or the agent removed the address at the end of the
// lease, and for established connections, which learn at once that their server is gone.
//
// Safety: the rule only answers packets sent to this host's MAC, with the VIP as their source address; it answers
// no ARP or neighbour solicitation, so it never makes a second owner of the address (a host that does not hold
// the address never answers ARP for it). It needs no timing: the fib lookup sees the address as local while this
// host holds it, and then the packet is delivered as usual; the moment the address is gone, the rule applies.
//
// An empty vips deletes the table. The rule works in the network namespace of the calling thread, like the rest
// of the Manager. It needs the nft command (nftables): without it the error wraps ErrNoNFT, and VIPs still work,
// with silence instead of resets after a move.
func (m *Manager) SetResets(table string, vips []VIP) error {
	if len(vips) == 0 {
		return m.ClearResets(table)
	}
	script, err := resetScript(table, vips)
	if err != nil {
		return err
	}
	if err := m.nft(script); err != nil {
		return fmt.Errorf("installing the TCP resets for VIPs this host does not hold (nftables table inet %s): %w", table, err)
	}
	return nil
}

// ClearResets deletes table; a table that is not there is not an error.
func (m *Manager) ClearResets(table string) error {
	// Declaring the table first makes the delete succeed when there is none.
	if err := m.nft("table inet " + table + "\ndelete table inet " + table + "\n"); err != nil {
		return fmt.Errorf("deleting nftables table inet %s: %w", table, err)
	}
	return nil
}

// resetScript is the nft script SetResets runs: the table is declared, deleted and made again in one transaction,
// so the rules are replaced at once and never missing in between.
func resetScript(table string, vips []VIP) (string, error) {
	type key struct {
		iface string
		v6    bool
	}
	byIface := map[key][]string{}
	var keys []key
	for _, v := range vips {
		if err := v.check(); err != nil {
			return "", err
		}
		k := key{v.Interface, v.Addr().Is6()}
		if _, ok := byIface[k]; !ok {
			keys = append(keys, k)
		}
		a := v.Addr().String()
		if !slices.Contains(byIface[k], a) {
			byIface[k] = append(byIface[k], a)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %[1]s\ndelete table inet %[1]s\ntable inet %[1]s {\n", table)
	// At priority filter, after any DNAT in prerouting: an address an operator maps elsewhere is not refused.
	b.WriteString("\tchain deposed {\n\t\ttype filter hook prerouting priority filter; policy accept;\n")
	for _, k := range keys {
		fam := "ip"
		if k.v6 {
			fam = "ip6"
		}
		// The interface name is checked (no quotes, spaces or separators): it cannot break out of the string.
		fmt.Fprintf(&b, "\t\tiifname %q %s daddr { %s } fib daddr type != local meta l4proto tcp reject with tcp reset\n",
			k.iface, fam, strings.Join(byIface[k], ", "))
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

// runNFT runs an nft script in the calling thread's network namespace (a child process inherits the namespace of
// the thread that starts it).
func runNFT(script string) error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return ErrNoNFT
	}
	cmd := exec.Command(path, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
