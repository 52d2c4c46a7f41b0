package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/agent"
)

func newReloadCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the agent re-read its config file and apply it without a restart",
		Long: `The agent (--api, default the local one) re-reads the config file it was started
with and applies it live: groups added, removed or changed (members, priorities,
failback, checks, VIPs, hooks, DNS, proxy). Groups that did not change are not
disturbed. A file with problems is refused whole with check-config's messages,
and so is a change that cannot be made live (cluster name, secret, port, timing,
a node's address, API or data_dir), with the reason; the running config stays.
Same as SIGHUP to the agent. Every node reads its own copy: copy the file to
every node, then reload each one; 'baton status' marks nodes whose config
differs. Needs the API token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res agent.ReloadResult
			if err := f.post("/v1/reload", struct{}{}, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Unchanged {
				fmt.Fprintf(out, "%s: unchanged (config %s)\n", res.Config, res.ConfigHash)
				return nil
			}
			fmt.Fprintf(out, "%s: reloaded (config %s)\n", res.Config, res.ConfigHash)
			for _, l := range []struct {
				what  string
				names []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"changed", res.Changed}} {
				if len(l.names) > 0 {
					fmt.Fprintf(out, "  %s: %s\n", l.what, strings.Join(l.names, ", "))
				}
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
