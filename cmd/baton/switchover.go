package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/agent"
)

func newSwitchoverCmd() *cobra.Command {
	var f apiFlags
	var to string
	cmd := &cobra.Command{
		Use:   "switchover GROUP [--to NODE]",
		Short: "Hand a group to another member now, without waiting out a lease",
		Long: `Coordinated handoff: the owner steps down (standby hook), then the target takes
over (active hook). Without --to, the best healthy standby is chosen. Refused with
a reason when the target is unknown, not a member, unhealthy, or the group is
mid-change. Works during maintenance. Needs the API token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res agent.SwitchoverResult
			body := map[string]string{}
			if to != "" {
				body["to"] = to
			}
			if err := f.post("/v1/groups/"+args[0]+"/switchover", body, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s: %s → %s (epoch %d)\n", res.Group, res.From, res.To, res.Epoch)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "target member (default: best healthy standby)")
	return cmd
}

func newFailoverCmd() *cobra.Command {
	var f apiFlags
	var to string
	var allow bool
	cmd := &cobra.Command{
		Use:   "failover GROUP --to NODE --allow-data-loss",
		Short: "Promote a member the sync policy refuses, once the old owner is gone",
		Long: `For a data-aware group whose owner died while no standby was eligible (sync on or
strict with no recorded synchronous standby, or async beyond max_lag): promote
NODE anyway. Writes the old primary acknowledged and NODE lacks are lost; the
history records the forced failover and the positions. Refused while a quorum
still holds the old owner's lease (use switchover then). Needs the API token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" || !allow {
				return usageError("failover %s: give --to NODE and --allow-data-loss (it may lose acknowledged writes); without data loss use switchover", args[0])
			}
			var res agent.SwitchoverResult
			if err := f.post("/v1/groups/"+args[0]+"/failover", map[string]any{"to": to, "allow_data_loss": true}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "group %s: forced failover %s → %s (epoch %d)\n", res.Group, orDash(res.From), res.To, res.Epoch)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the member to promote")
	cmd.Flags().BoolVar(&allow, "allow-data-loss", false, "confirm that acknowledged writes may be lost")
	return cmd
}

func newMaintenanceCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "maintenance on|off [GROUP]",
		Short: "Pause or resume automatic failover, cluster-wide or for one group",
		Long: `While maintenance is on, no automatic failover, failback or check-driven handoff
happens (a dead owner stays dead); switchover still works. Status shows it.
Needs the API token.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[0] {
			case "on":
				on = true
			case "off":
			default:
				return usageError("maintenance %q: want on or off", args[0])
			}
			group := ""
			if len(args) == 2 {
				group = args[1]
			}
			var res map[string]any
			if err := f.post("/v1/maintenance", map[string]any{"on": on, "group": group}, &res); err != nil {
				return err
			}
			scope := "the whole cluster"
			if group != "" {
				scope = "group " + group
			}
			fmt.Fprintf(cmd.OutOrStdout(), "maintenance %s for %s\n", args[0], scope)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
