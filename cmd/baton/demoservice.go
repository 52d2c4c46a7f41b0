package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/demo"
)

// newDemoServiceCmd is the tiny "who am I" service used by the demo, the lab
// and the standby benchmarks: it answers "I am NAME" to HTTP GETs and to raw
// TCP clients, after an optional start-up delay (to model slow services).
func newDemoServiceCmd() *cobra.Command {
	var listen, name string
	var delay time.Duration
	cmd := &cobra.Command{
		Use:   "demo-service",
		Short: "A stand-in service for trying Baton: answers every TCP or HTTP client with \"I am NAME\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				name = os.Getenv("BATON_NODE")
			}
			time.Sleep(delay) // start-up time of a slow service
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo-service %s listening on %s\n", name, listen)
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				go demo.ServeWhoami(c, name)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to listen on")
	cmd.Flags().StringVar(&name, "name", "", "name to answer with (default $BATON_NODE)")
	cmd.Flags().DurationVar(&delay, "delay", 0, "wait this long before listening (start-up time)")
	return cmd
}
