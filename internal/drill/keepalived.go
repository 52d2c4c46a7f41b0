package drill

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/baton-ha/baton/internal/lab"
)

// AdvertInt maps a profile to the keepalived advert_int it is compared with.
//
// keepalived's backup declares the master dead after
// master_down = 3×advert_int + skew, skew = (256−priority)/256 × advert_int,
// so with the backup at priority 100:
//
//	"default"        0.1 s  → 361 ms  (Baton default: 50 ms heartbeats, ~408 ms voters' hold)
//	"fast"           0.05 s → 180 ms  (Baton fast: ~153 ms hold)
//	"keepalived-1s"  1 s    → 3.6 s   (keepalived's stock advert_int, for reference)
//
// Sub-second adverts need VRRPv3 (centisecond advert field); keepalived 2.2.7
// accepts 0.05.
func AdvertInt(profile string) (string, error) {
	switch profile {
	case "", "default":
		return "0.1", nil
	case "fast":
		return "0.05", nil
	case "keepalived-1s":
		return "1", nil
	}
	return "", fmt.Errorf("drill: profile %q: want default, fast or keepalived-1s", profile)
}

// KeepalivedConfig renders the config of one member: both start BACKUP with
// preemption on (the stock setup), priorities 150/100, unicast adverts to the
// peer like Baton's heartbeats.
func KeepalivedConfig(self, selfAddr, peerAddr string, priority int, advert, vip, iface string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}\n", self)
	fmt.Fprintf(&b, "vrrp_instance VI_77 {\n  state BACKUP\n  interface %s\n  virtual_router_id 77\n  priority %d\n", iface, priority)
	fmt.Fprintf(&b, "  advert_int %s\n  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", advert, selfAddr, peerAddr)
	fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s dev %s\n  }\n  garp_master_delay 0\n  garp_master_repeat 3\n}\n", vip, iface)
	return b.String()
}

// keepalived runs one keepalived per member (h1, h2); the witness is unused.
type keepalived struct {
	l       *lab.Lab
	dir     string
	members []string
	procs   map[string]*lab.Proc
	starts  int
}

func startKeepalived(l *lab.Lab, s Scenario) (*keepalived, error) {
	advert, err := AdvertInt(s.Profile)
	if err != nil {
		return nil, err
	}
	k := &keepalived{l: l, dir: s.Dir, members: l.Hosts()[:2], procs: map[string]*lab.Proc{}}
	for i, h := range k.members {
		peer := k.members[1-i]
		conf := KeepalivedConfig(h, l.Addr(h), l.Addr(peer), 150-50*i, advert, VIP+"/24", l.Iface())
		if err := os.WriteFile(k.conf(h), []byte(conf), 0o600); err != nil {
			return nil, err
		}
		if err := l.StartWhoami(h, Port); err != nil {
			return nil, err
		}
		if err := k.start(h); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *keepalived) conf(h string) string { return filepath.Join(k.dir, "keepalived-"+h+".conf") }

func (k *keepalived) start(h string) error {
	k.starts++
	// Fresh pid files per start: keepalived refuses to start if the pid
	// file names a live process, and a SIGKILLed one leaves its file behind.
	pid := filepath.Join(k.dir, fmt.Sprintf("keepalived-%s-%d.pid", h, k.starts))
	vpid := filepath.Join(k.dir, fmt.Sprintf("keepalived-%s-%d.vrrp.pid", h, k.starts))
	p, err := k.l.Start(h, "keepalived", []string{"keepalived", "-n", "-l", "-D", "-f", k.conf(h), "-p", pid, "-r", vpid},
		nil, k.log(h))
	if err != nil {
		return err
	}
	k.procs[h] = p
	return nil
}

func (k *keepalived) hosts() []string { return k.members }

// kill9 SIGKILLs keepalived's whole process group (parent and VRRP child),
// so nothing gets to remove the VIP: the address stays on the dead owner.
func (k *keepalived) kill9(h string) error { return k.procs[h].Kill() }

// restart removes the VIP the killed keepalived left behind (the job an init
// script or an operator does before restarting it) and starts it again.
func (k *keepalived) restart(h string) error {
	_, _ = k.l.Run(h, "ip", "addr", "del", VIP+"/24", "dev", k.l.Iface())
	return k.start(h)
}

// stop and cont signal the whole group: keepalived's VRRP work happens in a
// child process, so freezing only the parent would freeze nothing.
func (k *keepalived) stop(h string) error { return syscall.Kill(-k.procs[h].Pid(), syscall.SIGSTOP) }
func (k *keepalived) cont(h string) error { return syscall.Kill(-k.procs[h].Pid(), syscall.SIGCONT) }

// takeovers counts "Entering MASTER STATE" in the members' logs.
func (k *keepalived) takeovers() (int, error) {
	n := 0
	for _, h := range k.members {
		b, err := os.ReadFile(k.log(h))
		if err != nil {
			return 0, err
		}
		n += strings.Count(string(b), "Entering MASTER STATE")
	}
	return n, nil
}

func (k *keepalived) log(h string) string { return filepath.Join(k.dir, "keepalived-"+h+".log") }

func (k *keepalived) close() {
	for _, p := range k.procs {
		_ = syscall.Kill(-p.Pid(), syscall.SIGCONT)
		_ = p.Kill()
	}
}
