package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/frontdoor/vip"
)

// newFenceCmd is the dead-man switch the agent starts for its VIPs. It is
// not meant to be run by hand: it reads "hold GROUP MS" / "drop GROUP" from
// the agent on stdin and removes a group's VIPs when its deadline passes, or
// all of them when the agent's pipe closes (the agent died).
func newFenceCmd() *cobra.Command {
	var cfgPath, node, level string
	cmd := &cobra.Command{
		Use:    "fence",
		Short:  "VIP dead-man switch (started by the agent)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			log = log.With("component", "fence", "node", node)
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			groups := map[string][]vip.VIP{}
			for _, g := range cfg.Units() {
				if _, member := g.Member(node); !member {
					continue
				}
				for _, c := range g.VIPs {
					v, err := vip.Parse(c.Address, c.Interface)
					if err != nil {
						return err
					}
					groups[g.Name] = append(groups[g.Name], v)
				}
			}
			// Signals aimed at the agent must not take the fence down first:
			// it ends when the agent's pipe closes.
			signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			return vip.RunFence(context.Background(), os.Stdin, groups, vip.NewManager(log), log)
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster config file")
	cmd.Flags().StringVar(&node, "node", "", "this node's name")
	cmd.Flags().StringVar(&level, "log-level", "info", "debug | info | warn | error")
	return cmd
}
