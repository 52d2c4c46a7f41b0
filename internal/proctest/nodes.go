package proctest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// AddNode adds a node to the cluster file (after the last node), on the next
// free loopback address of the cluster's range, with the cluster's API port
// and a data_dir under the cluster's directory. It does not start it, and the
// running agents do not know it until they reload.
func (c *Cluster) AddNode(name string, witness bool) error {
	if _, ok := c.Addrs[name]; ok {
		return fmt.Errorf("node %s exists", name)
	}
	var last netip.Addr
	for _, a := range c.Addrs {
		if ip := netip.MustParseAddr(a); !last.IsValid() || last.Less(ip) {
			last = ip
		}
	}
	addr := last.Next().String()
	api := net.JoinHostPort(addr, strconv.Itoa(c.Port+1))
	line := fmt.Sprintf("  - {name: %s, address: %s, api: %q, data_dir: %q, witness: %v}\n",
		name, addr, api, filepath.Join(c.Dir, name), witness)
	b, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, "groups:\n")
	if i < 0 {
		return fmt.Errorf("%s has no groups: section to add the node before", c.ConfigPath)
	}
	if err := os.WriteFile(c.ConfigPath, []byte(s[:i]+line+s[i:]), 0o600); err != nil {
		return err
	}
	c.SetNode(name, addr, api)
	return nil
}

// RemoveNode removes a node's line from the cluster file (not from groups'
// members: the node must be a member of none). The agents still know it until
// they reload.
func (c *Cluster) RemoveNode(name string) error {
	b, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		return err
	}
	var out []string
	found := false
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(l, "  - {name: "+name+",") {
			found = true
			continue
		}
		out = append(out, l)
	}
	if !found {
		return fmt.Errorf("%s lists no node %s", c.ConfigPath, name)
	}
	return os.WriteFile(c.ConfigPath, []byte(strings.Join(out, "")), 0o600)
}
