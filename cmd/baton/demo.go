package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/baton-ha/baton/internal/proctest"
)

func newDemoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local 3-node cluster, kill the owner, and show the failover",
		Long: `Starts three agents on 127.0.x.y (two members serving a tiny HTTP "who am I"
service, and a witness), a client that follows the owner through the agents'
/v1/groups/web/active endpoints, then kills the owner with kill -9 and prints the
outage the client saw and the new owner, and restores the killed node.
Needs no root. Ctrl-C stops everything and removes the temporary files.
(The proxy, DNS and VIP front doors arrive with their issues.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-files", false, "keep the demo's config and logs")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, keep bool) error {
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "baton-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "demo files in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	c, err := proctest.New(bin, dir, proctest.Spec{Cluster: "demo", Members: []string{"n1", "n2"}, Witness: "w1", Profile: "default"})
	if err != nil {
		return err
	}
	defer c.Stop()
	svcPort := c.Port + 2
	for _, n := range []string{"n1", "n2"} {
		stopSvc, err := proctest.Whoami(net.JoinHostPort(c.Addrs[n], fmt.Sprint(svcPort)), n)
		if err != nil {
			return fmt.Errorf("demo service on %s: %w", c.Addrs[n], err)
		}
		defer stopSvc()
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "\n==> "+format+"\n", args...) }
	step("starting 3 agents (n1 priority 200, n2 priority 190, witness w1) on %s, %s, %s",
		c.Addrs["n1"], c.Addrs["n2"], c.Addrs["w1"])
	if err := c.StartAll(); err != nil {
		return err
	}
	owner, epoch, err := c.WaitOwner("w1", 20*time.Second)
	if err != nil {
		return fmt.Errorf("%w (logs in %s; rerun with --keep-files)", err, dir)
	}
	fmt.Fprintf(out, "group web is owned by %s (epoch %d)\n", owner, epoch)
	if err := printDemoStatus(out, c, "w1"); err != nil {
		return err
	}

	cl := newDemoClient(c, []string{"n1", "n2"}, svcPort)
	go cl.run(ctx)
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return err
	}
	step("kill -9 the owner's agent (%s); the client keeps asking \"who am I\" every 5 ms", owner)
	killed := time.Now()
	if err := c.Kill(owner); err != nil {
		return err
	}
	other := "n1"
	if owner == "n1" {
		other = "n2"
	}
	e, err := c.WaitHook(20*time.Second, func(e proctest.HookEvent) bool {
		return e.Node == other && e.Role == "active" && e.At.After(killed)
	})
	if err != nil {
		return err
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	gap, before, after := cl.outage(killed)
	fmt.Fprintf(out, "%s took over: its active hook ran %v after the kill (epoch %d)\n", other,
		e.At.Sub(killed).Round(time.Millisecond), e.Epoch)
	fmt.Fprintf(out, "the client saw an outage of %v (last answer \"%s\", next answer \"%s\")\n",
		gap.Round(time.Millisecond), before, after)
	if hist, err := c.Baton("w1", "history"); err == nil {
		fmt.Fprintf(out, "\n%s", hist)
	}

	step("restarting %s: it rejoins as standby and does not take the group back (failback: false)", owner)
	if err := c.Start(owner); err != nil {
		return err
	}
	if _, err := c.WaitHook(20*time.Second, func(e proctest.HookEvent) bool {
		return e.Node == owner && e.Role == "standby" && e.At.After(killed)
	}); err != nil {
		return err
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	if err := printDemoStatus(out, c, owner); err != nil {
		return err
	}
	step("done: failover in well under a second, no split brain, history recorded. Try it on real machines: see README.md")
	return nil
}

func printDemoStatus(out io.Writer, c *proctest.Cluster, via string) error {
	st, err := c.Status(via)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	printStatus(out, st)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted")
	case <-time.After(d):
		return nil
	}
}

// demoClient follows the owner the way a load balancer would: it asks the
// members' role endpoints who is active, then calls that member's service.
type demoClient struct {
	c       *proctest.Cluster
	members []string
	port    int
	http    *http.Client
	mu      sync.Mutex
	answers []demoAnswer
}

type demoAnswer struct {
	at  time.Time
	who string
}

func newDemoClient(c *proctest.Cluster, members []string, port int) *demoClient {
	return &demoClient{c: c, members: members, port: port,
		http: &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}}
}

func (d *demoClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		who := ""
		for _, m := range d.members {
			resp, err := d.http.Get("http://" + d.c.APIs[m] + "/v1/groups/web/active")
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				continue
			}
			r, err := d.http.Get(fmt.Sprintf("http://%s/", net.JoinHostPort(d.c.Addrs[m], fmt.Sprint(d.port))))
			if err == nil {
				b, _ := io.ReadAll(r.Body)
				r.Body.Close()
				who = strings.TrimSpace(string(b))
			}
			break
		}
		d.mu.Lock()
		d.answers = append(d.answers, demoAnswer{time.Now(), who})
		d.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// outage returns the longest run without an answer after t.
func (d *demoClient) outage(t time.Time) (gap time.Duration, before, after string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var last demoAnswer
	for _, a := range d.answers {
		if a.who == "" {
			continue
		}
		if !last.at.IsZero() && a.at.After(t) && a.at.Sub(last.at) > gap {
			gap, before, after = a.at.Sub(last.at), last.who, a.who
		}
		last = a
	}
	return gap, before, after
}
