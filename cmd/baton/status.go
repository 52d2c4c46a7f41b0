package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/baton-ha/baton/internal/cluster"
	"github.com/baton-ha/baton/internal/core"
	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var f apiFlags
	var asJSON, stale bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show nodes and group ownership as an agent sees them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var st core.Status
			if err := f.get(readPath("/v1/status", stale), &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the asked agent's own replica, without asking the quorum leader (works without a quorum; may lag it)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the stable JSON form")
	return cmd
}

func printStatus(out io.Writer, st core.Status) {
	fmt.Fprintf(out, "cluster %s — seen from %s — quorum leader %s — profile %s (heartbeat %dms, lease %dms)\n",
		st.Cluster, st.Node, orDash(st.Leader), st.Profile, st.HBMs, st.LeaseMs)
	if st.Maintenance {
		fmt.Fprintln(out, "MAINTENANCE: automatic failover is paused cluster-wide (baton maintenance off)")
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tALIVE\tQUORUM ROLE\tCONFIG\tLAST SEEN")
	for _, n := range st.Nodes {
		alive := "yes"
		if !n.Alive {
			alive = "NO"
		}
		role := orDash(n.RaftRole)
		if !n.Alive {
			role = "unknown" // what a dead node last said is no longer true
		}
		if n.Witness {
			role += " (witness)"
		}
		seen := "-"
		if n.Self {
			seen = "self"
		} else if n.LastSeenMs >= 0 {
			seen = fmt.Sprintf("%dms ago", n.LastSeenMs)
		}
		if n.RejectedStale > 0 {
			seen += fmt.Sprintf(" (its heartbeats refused as stale: %d; see the log)", n.RejectedStale)
		}
		if n.ProtocolMismatch > 0 {
			seen += fmt.Sprintf(" (speaks heartbeat protocol %d, this node %d: refused; run one baton release on every node)", n.ProtocolMismatch, cluster.ProtocolVersion)
		}
		conf := orDash(n.ConfigHash)
		if len(conf) > 8 {
			conf = conf[:8]
		}
		if n.ConfigDiffers {
			// A reload that has not reached this node (or a file that
			// differs): it may not know every group yet.
			conf += " DIFFERS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Address, alive, role, conf, seen)
	}
	tw.Flush()
	if len(st.QuorumVoters) > 0 && len(st.QuorumVoters) != len(st.Nodes) {
		// A membership change on its way (see 'Adding, replacing and
		// removing a node' in the README).
		fmt.Fprintf(out, "quorum voters: %s (the leader is bringing them in line with the config's nodes)\n", strings.Join(st.QuorumVoters, ", "))
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tMODE\tOWNER\tEPOCH\tSTANDBY\tMAINTENANCE\tCHECKS HERE\tMEMBERS")
	for _, g := range st.Groups {
		members := ""
		for i, m := range g.Members {
			if i > 0 {
				members += " "
			}
			state := "up"
			switch {
			case !m.Alive:
				state = "dead"
			case !m.Healthy:
				state = "unhealthy"
			}
			if m.DB != "" {
				state += "," + m.DB
				if m.LagB > 0 {
					state += fmt.Sprintf(",lag %dB", m.LagB)
				}
				if m.SyncRec {
					state += ",sync"
				}
			}
			members += fmt.Sprintf("%s(%d,%s)", m.Node, m.Priority, state)
		}
		maint, checks := "no", "-"
		if g.Maintenance {
			maint = "YES"
		}
		if g.Role != "" {
			checks = "pass"
			if !g.Healthy {
				checks = "FAIL"
			}
		}
		owner := orDash(g.Owner)
		if g.HandoffTo != "" {
			owner += " → " + g.HandoffTo
		}
		if len(g.Units) > 0 {
			owner = orDash(strings.Join(g.Owners, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", g.Name, g.Mode, owner, g.Epoch, g.Standby, maint, checks, members)
	}
	tw.Flush()
	for _, g := range st.Groups {
		if len(g.Units) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n%s units (active-active: each VIP has its own owner and epoch)\n", g.Name)
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  UNIT\tVIP\tOWNER\tEPOCH")
		for _, u := range g.Units {
			owner := orDash(u.Owner)
			if u.HandoffTo != "" {
				owner += " → " + u.HandoffTo
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", u.Name, orDash(u.VIP), owner, u.Epoch)
		}
		tw.Flush()
	}
	for _, g := range st.Groups {
		if len(g.VIPs) > 0 {
			where := "on no node (no owner acts now)"
			if g.Owner != "" {
				where = "on " + g.Owner
			}
			fmt.Fprintf(out, "\nvips: %s: %s %s\n", g.Name, strings.Join(g.VIPs, ", "), where)
		}
		for _, f := range failingChecks(g.Checks) {
			fmt.Fprintf(out, "\ncheck failing here: %s: %s\n", g.Name, f)
		}
	}
	if st.RejectedPackets > 0 {
		fmt.Fprintf(out, "\nheartbeats rejected by this node: %d (a wrong cluster secret, an unknown sender or a replay; see the log and baton_heartbeat_packets_rejected_total)\n", st.RejectedPackets)
	}
	for _, g := range st.Groups {
		if g.DBError != "" {
			fmt.Fprintf(out, "\ndatabase error: %s: %s\n", g.Name, g.DBError)
		}
	}
	for _, g := range st.Groups {
		if g.Note != "" && g.Note != "owner's lease held" {
			fmt.Fprintf(out, "\nnote: %s: %s\n", g.Name, g.Note)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// failingChecks returns "name: detail" for this node's failing checks of a
// group, from the check states in the status JSON.
func failingChecks(checks any) []string {
	b, err := json.Marshal(checks)
	if err != nil {
		return nil
	}
	var cs []struct {
		Name    string `json:"name"`
		Healthy bool   `json:"healthy"`
		Last    struct {
			Detail string `json:"detail"`
		} `json:"last"`
	}
	if json.Unmarshal(b, &cs) != nil {
		return nil
	}
	var out []string
	for _, c := range cs {
		if !c.Healthy {
			out = append(out, c.Name+": "+orDash(c.Last.Detail))
		}
	}
	return out
}
