package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/config"
	"github.com/baton-ha/baton/internal/driver"
)

// checkReport is what `baton check-config --json` prints (stable field
// names). The summary fields are set only when the config is valid.
type checkReport struct {
	Config           string         `json:"config"`
	OK               bool           `json:"ok"`
	Problems         []checkProblem `json:"problems"`
	HostChecked      string         `json:"host_checked,omitempty"` // the --node whose host-local checks ran
	Cluster          string         `json:"cluster,omitempty"`
	Nodes            int            `json:"nodes,omitempty"`
	Groups           int            `json:"groups,omitempty"`
	Profile          string         `json:"profile,omitempty"`
	HeartbeatMs      int64          `json:"heartbeat_ms,omitempty"`
	FailureTimeoutMs int64          `json:"failure_timeout_ms,omitempty"`
}

type checkProblem struct {
	Path    string `json:"path"` // field path (e.g. groups[0].vips[1].address), "" for the whole file
	Message string `json:"message"`
}

func newCheckConfigCmd() *cobra.Command {
	var cfgPath, node string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a cluster config; print every problem with its field path",
		Long: `Validate a cluster config file and print every problem with its field path,
e.g. groups[0].vips[1].address: "10.0.0.300/24" is not an IP prefix.
With --node, also check what only this host can tell (its address, interfaces and
VIP networks, hook and service programs, data_dir, the database driver's binaries
and password files): run it on each node with that node's name.
Exits 0 when the config is valid, 2 when it is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rep := checkReport{Config: cfgPath, Problems: []checkProblem{}}
			cfg, err := config.Load(cfgPath)
			var problems config.Errors
			if err != nil && !errors.As(err, &problems) {
				problems = config.Errors{{Msg: err.Error()}}
			}
			if err == nil && node != "" {
				rep.HostChecked = node
				if _, nerr := cfg.NodeByName(node); nerr != nil {
					problems = append(problems, config.FieldError{Path: "--node", Msg: nerr.Error()})
				} else {
					problems = append(problems, config.CheckHost(cfg, node)...)
					problems = append(problems, checkDrivers(cfg, node, problems)...)
				}
			}
			for _, p := range problems {
				rep.Problems = append(rep.Problems, checkProblem{Path: p.Path, Message: p.Msg})
			}
			rep.OK = len(problems) == 0
			if rep.OK {
				t := cfg.Timing()
				rep.Cluster, rep.Nodes, rep.Groups, rep.Profile = cfg.Cluster.Name, len(cfg.Nodes), len(cfg.Groups), cfg.Cluster.Profile
				rep.HeartbeatMs, rep.FailureTimeoutMs = t.HeartbeatInterval.Milliseconds(), t.FailureTimeout.Milliseconds()
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			}
			if !rep.OK {
				if !asJSON {
					for _, p := range problems {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", cfgPath, p.Error())
					}
				}
				return &exitError{code: exitUsage, msg: fmt.Sprintf("%s: %d problem(s)", cfgPath, len(problems))}
			}
			if !asJSON {
				t := cfg.Timing()
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (cluster %q, %d nodes, %d groups, profile %s: heartbeat %v, failure timeout %v)\n",
					cfgPath, cfg.Cluster.Name, len(cfg.Nodes), len(cfg.Groups), cfg.Cluster.Profile, t.HeartbeatInterval, t.FailureTimeout)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", defaultConfig, "cluster config file")
	cmd.Flags().StringVar(&node, "node", "", "also run host-local checks for this node")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"config","ok","problems":[{"path","message"}],...} instead`)
	return cmd
}

// checkDrivers builds the driver of each data-aware group node is a member of
// (unless the config checks found its driver section wrong already),
// as the agent does at start: that checks the binaries, the OS user and the
// password files without touching the database, so a driver the agent could
// not start is refused here rather than at start.
func checkDrivers(cfg *config.Config, node string, known config.Errors) config.Errors {
	var errs config.Errors
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if g.Driver == nil || reported(known, fmt.Sprintf("groups[%d].driver", i)) {
			continue // the config checks already said what is wrong with it
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
			if field, rest, ok := strings.Cut(msg, " "); ok && strings.HasPrefix(field, "driver.") {
				// "driver.bin_dir /x does not exist": the field path of this group
				errs = append(errs, config.FieldError{Path: fmt.Sprintf("groups[%d].%s", i, strings.TrimSuffix(field, ":")), Msg: rest})
			} else {
				errs = append(errs, config.FieldError{Path: fmt.Sprintf("groups[%d].driver", i), Msg: msg})
			}
		}
	}
	return errs
}

// reported says whether a problem under path is among errs already.
func reported(errs config.Errors, path string) bool {
	for _, e := range errs {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") {
			return true
		}
	}
	return false
}
