package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/api"
	"github.com/baton-ha/baton/internal/config"
)

func newAgentCmd() *cobra.Command {
	var cfgPath, node, level string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the Baton agent for this node",
		Long: `Run the Baton agent. Every node runs the same cluster file; --node picks this
node's entry (default: the entry named like this host). SIGTERM or Ctrl-C hands
off every group this node owns to a successor at once, then exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return fmt.Errorf("%s:\n%w", cfgPath, err)
			}
			self, err := cfg.LocalNode(node)
			if err != nil {
				return err
			}
			if errs := config.CheckHost(cfg, self.Name); len(errs) > 0 {
				return fmt.Errorf("%s on this host:\n%w", cfgPath, errs)
			}
			debug, err := agent.DebugFromEnv()
			if err != nil {
				return err
			}
			if addr := os.Getenv("BATON_PPROF"); addr != "" {
				// Profiling for developers; never on by default.
				go func() { log.Warn("pprof listener stopped", "err", http.ListenAndServe(addr, nil)) }()
			}
			// Exec checks and services inherit these, so one cluster-wide command
			// can tell which node it runs on.
			os.Setenv("BATON_CLUSTER", cfg.Cluster.Name)
			os.Setenv("BATON_NODE", self.Name)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ignoreHangup(ctx, log)
			go debug.Watch(ctx, log)
			slog.SetDefault(log)
			return agent.Run(ctx, agent.Options{
				Config: cfg, Node: self.Name, Log: log, Version: version, Debug: debug,
				Handler: func(a *agent.Agent) http.Handler { return api.New(a, log.With("component", "api")) },
			})
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster config file")
	cmd.Flags().StringVar(&node, "node", "", "this node's name in the config (default: hostname)")
	cmd.Flags().StringVar(&level, "log-level", "info", "debug | info | warn | error")
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// ignoreHangup keeps SIGHUP from killing the agent (its default action), which
// for anyone with keepalived habits would be an unplanned failover. Live
// reload is not built yet: say so and carry on.
func ignoreHangup(ctx context.Context, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP received: live reload is not available yet; ignoring it (restart the agent, one node at a time, to apply a changed config)")
			case <-ctx.Done():
				return
			}
		}
	}()
}
