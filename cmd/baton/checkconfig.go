package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/driver"
)

func newCheckConfigCmd() *cobra.Command {
	var cfgPath, node string
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a cluster config; print every problem with its field path",
		Long: `Validate a cluster config file and print every problem with its field path,
e.g. groups[0].vips[1].address: "10.0.0.300/24" is not an IP prefix.
With --node, also check what only this host can tell (its address, interfaces and
VIP networks, hook and service programs, data_dir, the database driver's binaries
and password files).
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
					problems = append(problems, checkDrivers(cfg, node)...)
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

// checkDrivers builds the driver of each data-aware group node is a member of,
// as the agent does at start: that checks the binaries, the OS user and the
// password files without touching the database, so a driver the agent could
// not start is refused here rather than at start.
func checkDrivers(cfg *config.Config, node string) config.Errors {
	var errs config.Errors
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if g.Driver == nil {
			continue
		}
		if _, member := g.Member(node); !member {
			continue
		}
		var members []string
		for _, m := range g.Members {
			members = append(members, m.Node)
		}
		d := *g.Driver
		d.DataDir = strings.ReplaceAll(d.DataDir, "{node}", node)
		if _, err := driver.New(&d, driver.Options{Cluster: cfg.Cluster.Name, Group: g.Name, Node: node, Members: members}); err != nil {
			msg := strings.TrimPrefix(err.Error(), driver.ErrConfig.Error()+": ")
			if strings.HasPrefix(msg, "driver.") { // "driver.bin_dir …": make it a field path of this group
				errs = append(errs, config.FieldError{Msg: fmt.Sprintf("groups[%d].%s", i, msg)})
			} else {
				errs = append(errs, config.FieldError{Path: fmt.Sprintf("groups[%d].driver", i), Msg: msg})
			}
		}
	}
	return errs
}
