package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// interfaceByName is net.InterfaceByName, replaceable in tests.
var interfaceByName = net.InterfaceByName

// CheckHost runs the checks that depend on the host node runs on, which Validate cannot: every VIP interface of
// the groups node is a member of exists here, and node's data_dir exists and is writable or can be created. It
// writes (and removes) a probe file to test writability, because permission bits alone do not tell (read-only
// mounts, ACLs, root).
func CheckHost(c *Config, node string) Errors {
	var errs Errors
	ni := -1
	for i := range c.Nodes {
		if c.Nodes[i].Name == node {
			ni = i
		}
	}
	if ni < 0 {
		errs.add("", "unknown node %q (known: %s)", node, c.knownNodes())
		return errs
	}
	for i := range c.Groups {
		g := &c.Groups[i]
		if _, ok := g.Member(node); !ok {
			continue
		}
		for j, v := range g.VIPs {
			if v.Interface == "" {
				continue // Validate reports it
			}
			if _, err := interfaceByName(v.Interface); err != nil {
				errs.add(fmt.Sprintf("groups[%d].vips[%d].interface", i, j), "no interface %q on this host", v.Interface)
			}
		}
	}
	if dir := c.Nodes[ni].DataDir; dir != "" {
		if err := checkWritableDir(dir); err != nil {
			errs.add(fmt.Sprintf("nodes[%d].data_dir", ni), "%v", err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkWritableDir checks that dir is a writable directory, or that its nearest existing ancestor is one (so the
// agent can create it).
func checkWritableDir(dir string) error {
	d := filepath.Clean(dir)
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				if d == filepath.Clean(dir) {
					return fmt.Errorf("%s is not a directory", dir)
				}
				return fmt.Errorf("cannot create %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("cannot use %s: %v", dir, pathErr(err))
		}
		parent := filepath.Dir(d)
		if parent == d {
			return fmt.Errorf("cannot create %s: no existing parent directory", dir)
		}
		d = parent
	}
	f, err := os.CreateTemp(d, ".baton-check-*")
	if err != nil {
		if d == filepath.Clean(dir) {
			return fmt.Errorf("%s is not writable: %v", dir, pathErr(err))
		}
		return fmt.Errorf("cannot create %s: %s is not writable: %v", dir, d, pathErr(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}
