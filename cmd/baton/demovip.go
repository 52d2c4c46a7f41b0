package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/baton-ha/baton/internal/nsnet"
	"github.com/baton-ha/baton/internal/probe"
)

// runVIPDemo is `baton demo --vip`: the same story in a network-namespace
// lab (root), with a real VIP, a prober in a client namespace and an ARP
// watch counting hosts that answer for the VIP.
func runVIPDemo(ctx context.Context, out io.Writer, keep bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("demo --vip builds network namespaces and needs root; run `sudo baton demo --vip`, or `baton demo` without root")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, cleanup, err := demoDir(out, keep)
	if err != nil {
		return err
	}
	defer cleanup()
	const vip = "10.77.0.100"
	demoStep(out, "building a lab: bridge, hosts h1 h2 h3 on 10.77.0.0/24 in their own namespaces, a client namespace")
	l, err := nsnet.New(nsnet.Options{Hosts: 3})
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := l.StartCluster(nsnet.ClusterSpec{Bin: bin, Dir: dir, VIP: vip + "/24"})
	if err != nil {
		return err
	}
	defer c.Stop()
	owner, err := c.WaitHolder(vip, "", 20*time.Second)
	if err != nil {
		return fmt.Errorf("%w (logs in %s; rerun with --keep-files)", err, dir)
	}
	fmt.Fprintf(out, "VIP %s is on %s (%s); h3 is the witness\n", vip, owner, l.Addr(owner))
	p, err := l.StartProber(vip+":8080", 5*time.Millisecond)
	if err != nil {
		return err
	}
	defer p.Stop()
	w, err := l.StartARPWatch(vip, 20*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.Stop()
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	other := "h1"
	if owner == "h1" {
		other = "h2"
	}
	demoStep(out, "kill -9 %s's agent; the client connects to %s:8080 every 5 ms, an ARP watch asks who has %s every 20 ms", owner, vip, vip)
	killed := time.Now()
	if err := c.KillAgent(owner); err != nil {
		return err
	}
	if !p.WaitServed(other, killed, 20*time.Second) {
		return fmt.Errorf("%s never answered on the VIP (logs in %s; rerun with --keep-files)", other, dir)
	}
	if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	worst := probe.Worst(p.Probes(), killed)
	rep := w.Report()
	fmt.Fprintf(out, "%s took over the VIP; the client saw an outage of %v (%d failed probes, last answer %q, next %q)\n",
		other, worst.Duration.Round(time.Millisecond), worst.Failed, worst.Before, worst.After)
	fmt.Fprintf(out, "ARP watch: %d rounds, at most %d MAC(s) answering at once, %d rounds with two owners\n",
		rep.Rounds, rep.MaxDistinctMACs, rep.DualRounds)
	demoStep(out, "restarting %s's agent: it rejoins as standby and does not take the VIP back", owner)
	if err := c.StartAgent(owner); err != nil {
		return err
	}
	if err := sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	holders, err := c.HoldersOf(vip)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "VIP holders now: %v\n", holders)
	demoStep(out, "done: the lab is torn down on exit")
	return nil
}
