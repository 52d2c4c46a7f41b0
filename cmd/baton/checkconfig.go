package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
)

func newCheckConfigCmd() *cobra.Command {
	var cfgPath, node string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a cluster config; print every problem with its field path",
		Long: `Validate a cluster config file and print every problem with its field path,
e.g. groups[0].vips[1].address: "10.0.0.300/24" is not an IP prefix.
With --node, also check what only this host can tell (interfaces, data_dir).
Exits 0 when the config is valid, 2 when it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			cfg, err := config.Load(cfgPath)
			var problems config.Errors
			if err != nil {
				if !errors.As(err, &problems) {
					return &exitError{code: 2, msg: fmt.Sprintf("%s: %v", cfgPath, err)}
				}
			}
			if err == nil && node != "" {
				if _, nerr := cfg.NodeByName(node); nerr != nil {
					problems = append(problems, config.FieldError{Path: "--node", Msg: nerr.Error()})
				} else {
					problems = append(problems, config.CheckHost(cfg, node)...)
				}
			}
			if len(problems) > 0 {
				for _, p := range problems {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cfgPath, p.Error())
				}
				return &exitError{code: 2, msg: fmt.Sprintf("%s: %d problem(s)", cfgPath, len(problems))}
			}
			t := cfg.Timing()
			fmt.Fprintf(out, "%s: ok (cluster %q, %d nodes, %d groups, profile %s: heartbeat %v, failure timeout %v)\n",
				cfgPath, cfg.Cluster.Name, len(cfg.Nodes), len(cfg.Groups), cfg.Cluster.Profile, t.HeartbeatInterval, t.FailureTimeout)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster config file")
	cmd.Flags().StringVar(&node, "node", "", "also run host-local checks for this node")
	return cmd
}
