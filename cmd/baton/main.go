// Command baton is a failover manager: one binary runs on every node of a
// small cluster and makes a TCP service highly available with quorum-safe
// leases, fencing epochs and sub-second failover. See README.md.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/baton/baton.yaml"

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "baton:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code (e.g. check-config found problems).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "baton",
		Short:         "Baton: sub-second, split-brain-free failover for any TCP service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newCheckConfigCmd(), newStatusCmd(), newHistoryCmd(), newVersionCmd(), newDemoCmd(),
		newSwitchoverCmd(), newFailoverCmd(), newMaintenanceCmd(), newFenceCmd(),
		newDemoServiceCmd(), newDrillCmd(), newReloadCmd(), newNodeCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
		},
	}
}

// versionLine is "baton VERSION (commit C, built T, goX)": the version from
// -ldflags "-X main.version=..." (else the module version, else dev), the
// commit and its time as the Go toolchain recorded them in the binary.
func versionLine() string {
	v, commit, built, goVersion := version, "unknown", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value[:min(12, len(s.Value))]
			case "vcs.time":
				built = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			commit += "+uncommitted changes"
		}
	}
	return fmt.Sprintf("baton %s (commit %s, %s, %s)", v, commit, built, goVersion)
}
