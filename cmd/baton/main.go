// Command baton is a failover manager: one binary runs on every node of a
// small cluster and makes a TCP service highly available with quorum-safe
// leases, fencing epochs and sub-second failover. See README.md.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const defaultConfig = "/etc/baton/baton.yaml"

func main() {
	os.Exit(execute(newRoot(), os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes, the same for every command (README, `baton --help`).
const (
	exitOK      = 0 // done
	exitFailed  = 1 // could not be done: agent unreachable, no quorum leader, an I/O or runtime error
	exitUsage   = 2 // bad flags or arguments, or a config that does not pass check-config
	exitRefused = 3 // the agent understood and refused: unknown group or node, switchover refused, missing or wrong token
	exitDrill   = 4 // baton drill: the service did not answer again after the change
)

const exitCodesHelp = `Exit codes (every command):
  0  done
  1  failed: agent unreachable, no quorum leader, I/O or runtime error
  2  usage: bad flags or arguments, or a config check-config refuses
  3  refused by the agent: unknown group or node, switchover refused,
     missing or wrong API token
  4  baton drill: the service did not answer again after the change`

// execute runs the command line and returns its exit code; errors go to
// stderr prefixed with "baton:".
func execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Everything cobra refuses before a command runs (unknown command or
	// flag, wrong number of arguments) is a usage error; ran tells them
	// apart from the command's own errors.
	ran := false
	root.PersistentPreRun = func(*cobra.Command, []string) { ran = true }
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "baton:", err)
	code := exitCode(err)
	if !ran && code == exitFailed {
		code = exitUsage
		fmt.Fprintln(stderr, "baton: see 'baton --help' (or 'baton COMMAND --help')")
	}
	return code
}

// exitError carries a specific exit code (e.g. check-config found problems).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is an exitUsage error for arguments a command checks itself.
func usageError(format string, a ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, a...)}
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.exitCode()
	}
	return exitFailed
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "baton",
		Short: "Baton: sub-second, split-brain-free failover for any TCP service",
		Long: `Baton: sub-second, split-brain-free failover for any TCP service.

Every node runs 'baton agent' with the same cluster file; the other commands
talk to an agent's HTTP API (--api URL, else this host's agent in --config).
Read commands (status, history, version, check-config, drill) print stable
JSON with --json. Shell completion: 'baton completion bash|zsh|fish|powershell'
(see 'baton completion bash --help'); man pages: 'baton docs man DIR'.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newCheckConfigCmd(), newStatusCmd(), newHistoryCmd(), newVersionCmd(), newDemoCmd(),
		newSwitchoverCmd(), newFailoverCmd(), newMaintenanceCmd(), newFenceCmd(),
		newDemoServiceCmd(), newDrillCmd(), newDocsCmd(), newInitCmd(), newReloadCmd(), newNodeCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintln(cmd.OutOrStdout(), v.line())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"version","commit","built","go"}`)
	return cmd
}

// versionInfo is what `baton version --json` prints (stable field names).
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"` // 12 hex digits, "+uncommitted changes" when built from a dirty tree; "unknown"
	Built   string `json:"built"`  // the commit's time as the toolchain recorded it; "unknown"
	Go      string `json:"go"`
}

// line is "baton VERSION (commit C, built T, goX)".
func (v versionInfo) line() string {
	return fmt.Sprintf("baton %s (commit %s, %s, %s)", v.Version, v.Commit, v.Built, v.Go)
}

// printJSON writes v indented, as every --json does.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// buildVersion is the version from -ldflags "-X main.version=..." (else the
// module version, else dev), the commit and its time as the Go toolchain
// recorded them in the binary.
func buildVersion() versionInfo {
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
	return versionInfo{Version: v, Commit: commit, Built: built, Go: goVersion}
}
