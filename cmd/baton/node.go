package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/agent"
)

func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Quorum membership (nodes are added and removed through the config file and a reload)",
	}
	var f apiFlags
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Take a dead node out of the quorum now",
		Long: `Asks the quorum leader to remove NAME from the Raft configuration at once, for a
node that will not come back (like 'consul operator raft remove-peer'). Refused,
with the reason, when NAME is not a voter, when it is running (stop its agent
first), when fewer than 3 voters would be left, or when the voters that are up
would not be a quorum of those left. Then remove NAME from the config file and
reload every node; until then, a NAME that comes back is added again. Adding
and replacing nodes: see 'Adding, replacing and removing a node' in the README.
Needs the API token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res agent.NodeRemoval
			if err := f.post("/v1/nodes/"+args[0]+"/remove", struct{}{}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s removed from the quorum; voters now: %s\nnow remove it from the config file and reload every node\n",
				res.Node, strings.Join(res.Voters, ", "))
			return nil
		},
	}
	f.register(remove)
	cmd.AddCommand(remove)
	return cmd
}
