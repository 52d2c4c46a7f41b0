package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/baton-ha/baton/internal/drill"
	"github.com/baton-ha/baton/internal/lab"
)

// reference is a process measured beside the agents in the same window: the
// reference system's idle cost.
type reference struct {
	name, role string
	pids       func() []int // the processes whose CPU and RSS add up
}

// startKeepalived runs the reference for the 3 × 1 idle cost: keepalived on
// two hosts of the namespace lab (root only), VRRPv3 with advert_int 0.1 —
// the setting whose failure detection matches Baton's default profile
// (drill.AdvertInt) — unicast to each other, one VIP, as bench/compare runs
// it. Its work is in a VRRP child process, so both processes of each member
// count. It returns nil, with the reason printed, when it cannot run.
func startKeepalived(dir string) (refs []reference, stop func()) {
	l, err := lab.New(lab.Options{Hosts: 2})
	if err != nil {
		fmt.Printf("(keepalived reference not measured: %v)\n\n", err)
		return nil, func() {}
	}
	advert, _ := drill.AdvertInt("default")
	for i, h := range []string{"h1", "h2"} {
		peer := map[string]string{"h1": "h2", "h2": "h1"}[h]
		conf := filepath.Join(dir, "keepalived-"+h+".conf")
		text := drill.KeepalivedConfig(h, l.Addr(h), l.Addr(peer), 150-50*i, advert, drill.VIP+"/24", l.Iface())
		vpid := filepath.Join(dir, "keepalived-"+h+".vrrp.pid")
		if err == nil {
			err = os.WriteFile(conf, []byte(text), 0o600)
		}
		var p *lab.Proc
		if err == nil {
			p, err = l.Start(h, "keepalived", []string{"keepalived", "-n", "-l", "-D", "-f", conf,
				"-p", filepath.Join(dir, "keepalived-"+h+".pid"), "-r", vpid}, nil, filepath.Join(dir, "keepalived-"+h+".log"))
		}
		if err != nil {
			fmt.Printf("(keepalived reference not measured: %v)\n\n", err)
			l.Close()
			return nil, func() {}
		}
		role := "backup"
		if i == 0 {
			role = "master"
		}
		refs = append(refs, reference{name: "keepalived " + h, role: role + ", advert_int " + advert, pids: func() []int {
			pids := []int{p.Pid()}
			if b, err := os.ReadFile(vpid); err == nil {
				if child, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					pids = append(pids, child)
				}
			}
			return pids
		}})
	}
	time.Sleep(3 * time.Second) // elected, VIP up, idle
	return refs, func() { l.Close() }
}
