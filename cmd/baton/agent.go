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
	"github.com/baton-ha/baton/internal/systemd"
)

func newAgentCmd() *cobra.Command {
	var cfgPath, node, level string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the Baton agent for this node",
		Long: `Run the Baton agent. Every node runs the same cluster file; --node picks this
node's entry (default: the entry named like this host). SIGTERM or Ctrl-C hands
off every group this node owns to a successor at once, then exits. SIGHUP
re-reads the config file and applies it without a restart (as 'baton reload'
does); a file with problems is refused, logged, and the running config stays.

Under systemd (packaging/baton.service, Type=notify) the agent tells systemd
it is ready once it has joined the quorum and caught up, pets the watchdog
from its core loop when WatchdogSec is set, says when it stops and reloads, and
logs without timestamps and with journal priorities. It exits 2 when it refuses
its config (the unit does not restart it then), 1 on other failures.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			// Read (and removed from the environment) before anything starts
			// a child process: see package systemd.
			sd := systemd.New(log.With("component", "systemd"))
			// A config the agent refuses exits 2 (the unit's
			// RestartPreventExitStatus): restarting would fail again.
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return &exitError{code: exitUsage, msg: fmt.Sprintf("%s:\n%v", cfgPath, err)}
			}
			self, err := cfg.LocalNode(node)
			if err != nil {
				return &exitError{code: exitUsage, msg: err.Error()}
			}
			if errs := config.CheckHost(cfg, self.Name); len(errs) > 0 {
				return &exitError{code: exitUsage, msg: fmt.Sprintf("%s on this host:\n%v", cfgPath, errs)}
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
			go debug.Watch(ctx, log)
			slog.SetDefault(log)
			var apiOpts []api.Option
			if t := cfg.API.TLS; t != nil {
				tc, err := t.ClientConfig(self.Name)
				if err != nil {
					return fmt.Errorf("%s:\n%w", cfgPath, err)
				}
				apiOpts = append(apiOpts, api.WithPeerTLS(tc))
			}
			return agent.Run(ctx, agent.Options{
				Config: cfg, Node: self.Name, Log: log, Version: version, Systemd: sd, Reloads: hangups(ctx, log), Debug: debug,
				Handler: func(a *agent.Agent) http.Handler { return api.New(a, log.With("component", "api"), apiOpts...) },
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
		return nil, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if systemd.LogsToJournal(os.Stderr) {
		// Under systemd: no second timestamp, and the level as the
		// journal's priority.
		return slog.New(systemd.NewJournalHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

// hangups turns SIGHUP into reload requests. Catching it also keeps SIGHUP
// from killing the agent (its default action), which for anyone with
// keepalived habits would be an unplanned failover. A SIGHUP that arrives
// while a reload runs is kept (one), so the newest file is always applied.
func hangups(ctx context.Context, log *slog.Logger) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	out := make(chan struct{}, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				log.Info("SIGHUP received: reloading the config")
				select {
				case out <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
