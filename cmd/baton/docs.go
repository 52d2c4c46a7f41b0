package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func newDocsCmd() *cobra.Command {
	docs := &cobra.Command{
		Use:   "docs",
		Short: "Generate documentation (man pages) from the commands themselves",
	}
	man := &cobra.Command{
		Use:   "man DIR",
		Short: "Write a man page for baton and every command into DIR (section 1)",
		Long: `Write baton.1 and one page per command (baton-status.1, baton-agent.1, ...)
into DIR, creating it if needed. The packages install them under
/usr/share/man/man1, so 'man baton' and 'man baton-agent' work.`,
		Example: "  baton docs man /usr/local/share/man/man1 && mandb -q",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			// No Title: each page gets its command's (BATON-STATUS(1), ...).
			header := &doc.GenManHeader{Section: "1", Source: "baton " + buildVersion().Version, Manual: "Baton manual"}
			root := cmd.Root()
			// Generated pages must not depend on the day they were made
			// (reproducible packages): cobra dates them from the
			// environment's SOURCE_DATE_EPOCH when set.
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("writing man pages into %s: %w", dir, err)
			}
			n, _ := filepath.Glob(filepath.Join(dir, "baton*.1"))
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d man pages into %s\n", len(n), dir)
			return nil
		},
	}
	docs.AddCommand(man)
	return docs
}
