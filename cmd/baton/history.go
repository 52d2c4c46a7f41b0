package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/quorum"
)

func newHistoryCmd() *cobra.Command {
	var f apiFlags
	var asJSON, stale bool
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show every ownership change with its reason and timings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ev []quorum.Event
			if err := f.get(readPath("/v1/events", stale), &ev); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(ev)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tGROUP\tEPOCH\tFROM\tTO\tREASON\tDETECT\tDECIDE\tTAKEOVER\tDETAIL")
			for _, e := range ev {
				ts := time.UnixMilli(e.TimeUnixMs).Format("2006-01-02 15:04:05.000")
				detect := "-"
				if e.DetectMs > 0 {
					detect = fmt.Sprintf("%dms", e.DetectMs)
				}
				decide, takeover := "-", "-"
				if e.From != "" {
					decide = fmt.Sprintf("%dms", e.DecideMs)
				}
				if e.TakeoverRecorded {
					takeover = fmt.Sprintf("%dms", e.TakeoverMs)
				}
				detail := e.Detail
				if e.PrimaryPos > 0 || e.PromotedPos > 0 {
					detail += fmt.Sprintf(" [old primary at %d, promoted at %d", e.PrimaryPos, e.PromotedPos)
					if e.LostBytes > 0 {
						detail += fmt.Sprintf(", up to %d bytes lost", e.LostBytes)
					}
					detail += "]"
				}
				if !e.Ownership() {
					decide, takeover = "-", "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ts, e.Group, e.Epoch, orDash(e.From), orDash(e.To), e.Reason, detect, decide, takeover, detail)
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the asked agent's own replica, without asking the quorum leader (works without a quorum; may lag it)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
