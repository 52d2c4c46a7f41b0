package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Hash identifies the effective config: every value Parse filled in, defaults included, but not the secret or
// the API token themselves (they never leave the node; a node with another secret cannot talk to the cluster
// anyway). Every node announces it in its heartbeats, so a node still running an older file after a rolling
// change shows up in `baton status`. Two files that differ only in comments, layout or spelt-out defaults hash
// alike.
func (c *Config) Hash() uint64 {
	b, err := json.Marshal(c)
	if err != nil {
		panic("config: marshalling a parsed config: " + err.Error()) // only plain data in it
	}
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// CheckReload reports what keeps next from replacing cur live on node (the running agent's node): every setting
// that cannot change without restarting agents, each with its path, the reason and the way to change it.
// Everything else may change: groups (added, removed, renamed), their members and priorities, failback, checks,
// VIPs, hooks, DNS and proxy settings, the API token, keep_leader_off_owners, and one node added or removed.
// Both configs must be valid.
func CheckReload(cur, next *Config, node string) Errors {
	var errs Errors
	restartAll := "cannot change live: every node must run with the same value at once; stop every agent, change it, start them again"
	if cur.Cluster.Name != next.Cluster.Name {
		errs.add("cluster.name", "%q → %q: %s (it keys all cluster traffic, so the change makes a new cluster)", cur.Cluster.Name, next.Cluster.Name, restartAll)
	}
	if !bytes.Equal(cur.Secret, next.Secret) {
		errs.add("cluster.secret", "the cluster secret changed: %s (nodes with different secrets cannot authenticate each other's heartbeats or quorum traffic)", restartAll)
	}
	if cur.Cluster.Port != next.Cluster.Port {
		errs.add("cluster.port", "%d → %d: %s (the agents listen on it)", cur.Cluster.Port, next.Cluster.Port, restartAll)
	}
	if cur.Timing() != next.Timing() {
		errs.add("cluster.profile", "the effective timing changed (profile %s → %s, or a timing override): %s (owners and voters count leases and holds with the same timing)",
			cur.Cluster.Profile, next.Cluster.Profile, restartAll)
	}
	if cur.API.UIEnabled() != next.API.UIEnabled() {
		errs.add("api.ui", "%v → %v: cannot change live (the dashboard is mounted when the agent starts); restart the agents one at a time", cur.API.UIEnabled(), next.API.UIEnabled())
	}
	checkReloadNodes(&errs, cur, next, node)
	for i := range next.Groups {
		ng := &next.Groups[i]
		cg := cur.GroupByName(ng.Name)
		if cg == nil {
			if ng.Driver != nil {
				errs.add(fmt.Sprintf("groups[%d].driver", i), "group %q is new and data-aware: a driver cannot be started live; restart the agents one at a time to add it", ng.Name)
			}
			continue
		}
		p := fmt.Sprintf("groups[%d]", i)
		how := fmt.Sprintf("cannot change live for an existing group; remove group %q and add it under a new name, or restart the agents one at a time", ng.Name)
		if cg.Mode != ng.Mode {
			errs.add(p+".mode", "%s → %s: %s", cg.Mode, ng.Mode, how)
		}
		if cg.Standby != ng.Standby {
			errs.add(p+".standby", "%s → %s: %s", cg.Standby, ng.Standby, how)
		}
		if !reflect.DeepEqual(cg.Service, ng.Service) {
			errs.add(p+".service", "changed: %s (the supervised service would have to be restarted)", how)
		}
		if !reflect.DeepEqual(cg.Driver, ng.Driver) {
			errs.add(p+".driver", "changed: %s (the data-aware driver keeps state about its database)", how)
		} else if ng.Driver != nil && !reflect.DeepEqual(memberNodes(cg), memberNodes(ng)) {
			errs.add(p+".members", "the members of data-aware group %q changed: a database cannot join or leave replication live; restart the agents one at a time", ng.Name)
		}
	}
	for i := range cur.Groups {
		cg := &cur.Groups[i]
		if next.GroupByName(cg.Name) == nil && cg.Driver != nil {
			errs.add("groups", "group %q (data-aware, groups[%d] of the running config) was removed: a driver cannot be stopped live; restart the agents one at a time to remove it", cg.Name, i)
		}
	}
	return errs
}

func checkReloadNodes(errs *Errors, cur, next *Config, node string) {
	var added, removed []string
	for i := range next.Nodes {
		nn := &next.Nodes[i]
		cn, err := cur.NodeByName(nn.Name)
		p := fmt.Sprintf("nodes[%d]", i)
		if err != nil {
			added = append(added, nn.Name)
			continue
		}
		why := fmt.Sprintf("cannot change live for an existing node (%s)", nn.Name)
		if cn.Address != nn.Address {
			errs.add(p+".address", "%s → %s: %s: the quorum and the heartbeats know nodes by address; remove the node and add it again under its new address", cn.Address, nn.Address, why)
		}
		if cn.API != nn.API {
			errs.add(p+".api", "%s → %s: %s: the agent listens on it and the others forward requests to it; restart that node's agent with the new file", cn.API, nn.API, why)
		}
		if cn.DataDir != nn.DataDir {
			errs.add(p+".data_dir", "%s → %s: %s: the agent holds its quorum store open there; stop the agent, move the directory, start it again", cn.DataDir, nn.DataDir, why)
		}
		if cn.Witness != nn.Witness {
			errs.add(p+".witness", "%v → %v: %s: restart that node's agent with the new file", cn.Witness, nn.Witness, why)
		}
	}
	for i := range cur.Nodes {
		if _, err := next.NodeByName(cur.Nodes[i].Name); err != nil {
			removed = append(removed, cur.Nodes[i].Name)
			if cur.Nodes[i].Name == node {
				errs.add("nodes", "node %q (nodes[%d] of the running config) was removed: this is the node the agent runs as; stop its agent, then reload the others", node, i)
			}
		}
	}
	switch {
	case len(added)+len(removed) > 1:
		errs.add("nodes", "%s: add or remove one node per reload (the quorum changes its members one at a time, so that the old and the new majorities always overlap); reload every node after each, and wait until `baton status` shows no node whose config DIFFERS",
			describeNodeChange(added, removed))
	case len(removed) == 1 && len(cur.Nodes) >= 3 && len(next.Nodes) < 3:
		errs.add("nodes", "removing node %q would leave %d voters: keep at least 3, so that the loss of any one still leaves a quorum (add the replacement first)", removed[0], len(next.Nodes))
	}
}

func describeNodeChange(added, removed []string) string {
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "nodes added: "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "nodes removed: "+strings.Join(removed, ", "))
	}
	return strings.Join(parts, "; ")
}

func memberNodes(g *Group) []string {
	out := make([]string, len(g.Members))
	for i, m := range g.Members {
		out[i] = m.Node
	}
	return out
}
