package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/probe"
	"github.com/baton-ha/baton/internal/quorum"
)

// DrillReport is what `baton drill` measured (stable --json).
type DrillReport struct {
	Kind        string         `json:"kind"` // switchover | failure
	Group       string         `json:"group"`
	Target      string         `json:"target"`
	FromOwner   string         `json:"from_owner"`
	ToOwner     string         `json:"to_owner"`
	FromEpoch   uint64         `json:"from_epoch"`
	ToEpoch     uint64         `json:"to_epoch"`
	Probes      int            `json:"probes"`
	Failed      int            `json:"failed_probes"`
	OutageMs    float64        `json:"outage_ms"`     // longest run of failed probes (last success → next success)
	AnsweredBy  []string       `json:"answered_by"`   // distinct answers seen, in order
	NewEvents   []quorum.Event `json:"history"`       // history entries the drill produced
	DurationMs  float64        `json:"duration_ms"`   // whole drill
	ServedAgain bool           `json:"served_again"`  // the target answered after the change
	StillFailed bool           `json:"still_failing"` // the target was not answering at the end
}

func newDrillCmd() *cobra.Command {
	var f apiFlags
	var target, url, group string
	var every, settle time.Duration
	var disrupt, asJSON bool
	cmd := &cobra.Command{
		Use:   "drill --target HOST:PORT|--url URL [--group G] [--allow-disruption]",
		Short: "Rehearse a failover on a live cluster and measure what a client sees",
		Long: `Probes the service the way a client does (a TCP connect to --target, or an HTTP
GET of --url) every --every, then makes the group change owner and reports the
longest outage the probe saw, the ownership change and the history entries.

By default the drill is a planned switchover (coordinated, no lease wait).
With --allow-disruption it is a failure drill: the owner's agent exits at once
without handing off, as a crash would (its VIP fence still drops the VIP), and
the cluster must detect it; restart that agent afterwards (systemd does).
Needs the API token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (target == "") == (url == "") {
				return usageError("give exactly one of --target HOST:PORT or --url URL: the service the drill probes")
			}
			var st core.Status
			if err := f.get("/v1/status", &st); err != nil {
				return err
			}
			var g *core.GroupStatus
			for i := range st.Groups {
				if group == "" || st.Groups[i].Name == group {
					g = &st.Groups[i]
					break
				}
			}
			if g == nil {
				return &exitError{code: exitRefused, msg: fmt.Sprintf("unknown group %q", group)}
			}
			if g.Owner == "" {
				return fmt.Errorf("group %s has no owner: nothing to drill", g.Name)
			}
			var before []quorum.Event
			if err := f.get("/v1/events", &before); err != nil {
				return err
			}
			rep := DrillReport{Kind: "switchover", Group: g.Name, Target: target + url, FromOwner: g.Owner, FromEpoch: g.Epoch}
			if disrupt {
				rep.Kind = "failure"
			}
			spec := probe.Spec{Kind: probe.Connect, Target: target, Every: every, Timeout: drillProbeTimeout}
			if url != "" {
				spec.Kind, spec.Target = probe.HTTP, url
			}
			p, err := probe.Start(spec)
			if err != nil {
				return fmt.Errorf("%w (see --target, --url and --every)", err)
			}
			time.Sleep(500 * time.Millisecond) // a baseline of answers
			start := time.Now()
			if disrupt {
				owner := findNode(st, g.Owner)
				var res map[string]any
				crash := f
				crash.url = owner
				if err := crash.post("/v1/debug/crash", map[string]any{}, &res); err != nil {
					p.Stop()
					return fmt.Errorf("asking %s's agent to exit: %w", g.Owner, err)
				}
			} else {
				var res agent.SwitchoverResult
				if err := f.post("/v1/groups/"+g.Name+"/switchover", map[string]string{}, &res); err != nil {
					p.Stop()
					return err
				}
			}
			// Wait for the new owner (asked of any agent that answers), then settle.
			other := otherAPIs(st, g.Owner)
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if o, e, ok := ownerVia(f, other, g.Name); ok && e > g.Epoch {
					rep.ToOwner, rep.ToEpoch = o, e
					break
				}
			}
			time.Sleep(settle)
			probes := p.Stop()
			rep.DurationMs = float64(time.Since(start).Microseconds()) / 1000
			rep.Probes = len(probes)
			rep.OutageMs = float64(probe.Worst(probes, start).Duration.Microseconds()) / 1000
			seen := map[string]bool{}
			for _, pr := range probes {
				if !pr.OK() {
					rep.Failed++
					continue
				}
				if !seen[pr.Who] {
					seen[pr.Who] = true
					rep.AnsweredBy = append(rep.AnsweredBy, pr.Who)
				}
				if pr.At.After(start) {
					rep.ServedAgain = true
				}
			}
			rep.StillFailed = len(probes) > 0 && !probes[len(probes)-1].OK()
			var after []quorum.Event
			for _, api := range other {
				g2 := f
				g2.url = api
				if g2.get("/v1/events", &after) == nil {
					break
				}
			}
			for _, e := range after {
				if e.Seq > maxSeq(before) && e.Group == g.Name {
					rep.NewEvents = append(rep.NewEvents, e)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			fmt.Fprintf(out, "%s drill of group %s, probing %s every %v\n", rep.Kind, rep.Group, rep.Target, every)
			fmt.Fprintf(out, "  owner:   %s (epoch %d) → %s (epoch %d)\n", rep.FromOwner, rep.FromEpoch, orDash(rep.ToOwner), rep.ToEpoch)
			fmt.Fprintf(out, "  outage:  %.1f ms (longest run of failed probes; %d of %d probes failed)\n", rep.OutageMs, rep.Failed, rep.Probes)
			if rep.Failed > 0 {
				// A probe gives up after its own short timeout; a real client
				// whose SYN was lost retries only after the kernel's 1 s.
				fmt.Fprintln(out, "           a client whose connection attempt fell into the outage waits ~1 s more for TCP to resend its SYN")
			}
			if len(rep.AnsweredBy) > 0 {
				// Only an HTTP target that says who it is (like baton demo-service) names its answerers.
				fmt.Fprintf(out, "  answers: %s\n", strings.Join(rep.AnsweredBy, ", "))
			}
			for _, e := range rep.NewEvents {
				fmt.Fprintf(out, "  history: epoch %d %s → %s (%s) detect %d ms, decide %d ms, takeover %d ms\n",
					e.Epoch, orDash(e.From), e.To, e.Reason, e.DetectMs, e.DecideMs, e.TakeoverMs)
			}
			if !rep.ServedAgain || rep.StillFailed {
				return &exitError{code: exitDrill, msg: "the target did not answer again after the change"}
			}
			if disrupt {
				fmt.Fprintf(out, "  note: restart %s's agent now (systemd does it for you)\n", rep.FromOwner)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&target, "target", "", "HOST:PORT to probe with TCP connects (e.g. the VIP and service port)")
	cmd.Flags().StringVar(&url, "url", "", "URL to probe with HTTP GETs (2xx = up)")
	cmd.Flags().StringVar(&group, "group", "", "group to drill (default: the first)")
	cmd.Flags().DurationVar(&every, "every", 10*time.Millisecond, "probe interval")
	cmd.Flags().DurationVar(&settle, "settle", 2*time.Second, "keep probing this long after the new owner is known")
	cmd.Flags().BoolVar(&disrupt, "allow-disruption", false, "failure drill: make the owner's agent exit without handing off")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// findNode returns a node's API address from a status.
func findNode(st core.Status, name string) string {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n.API
		}
	}
	return ""
}

// otherAPIs lists the API addresses of every node but `but`.
func otherAPIs(st core.Status, but string) []string {
	var out []string
	for _, n := range st.Nodes {
		if n.Name != but && n.API != "" {
			out = append(out, n.API)
		}
	}
	return out
}

// ownerVia asks the agents in turn for the group's owner and epoch (as f
// would: the same config, token and TLS settings).
func ownerVia(base apiFlags, apis []string, group string) (string, uint64, bool) {
	for _, api := range apis {
		f := base
		f.url = api
		var st core.Status
		if f.get("/v1/status", &st) != nil {
			continue
		}
		for _, g := range st.Groups {
			if g.Name == group {
				return g.Owner, g.Epoch, true
			}
		}
	}
	return "", 0, false
}

// drillProbeTimeout bounds one drill probe. A drill probes a production
// service across a real network, where 50 ms (probe.DefaultTimeout, tuned for
// the lab) would count a slow answer as an outage.
const drillProbeTimeout = 200 * time.Millisecond

func maxSeq(ev []quorum.Event) uint64 {
	var m uint64
	for _, e := range ev {
		m = max(m, e.Seq)
	}
	return m
}
