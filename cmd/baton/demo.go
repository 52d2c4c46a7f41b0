package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Run a local 3-node failover demo (arrives with the front-doors work)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), `baton demo is not built yet: it arrives with the front-doors issue (proxy, DNS, VIP).
Until then, scripts/test runs a real 3-process cluster on 127.0.0.x (see README.md, "Quick start").`)
			return &exitError{code: 3, msg: "demo not available in this build"}
		},
	}
}
