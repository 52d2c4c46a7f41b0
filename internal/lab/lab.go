// Package lab is the namespace lab of Baton's end-to-end tests, benchmarks
// and drills: internal/nsnet's network of namespaces (hosts h1..hN and a
// client on a bridge, processes and Baton clusters inside them, whoami
// servers, a prober and an ARP watch in the client) plus reversible faults —
// a host's link down, nftables partitions and packet loss — that Heal undoes.
//
// The faults are test-only, which is why they are not in nsnet: `baton demo
// --vip` links nsnet, never this package. A *Lab embeds *nsnet.Lab, so every
// nsnet method works on it, and the names below are nsnet's.
//
// New needs root and the `ip` and `nft` commands.
package lab

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"sync"

	"github.com/baton-ha/baton/internal/nsnet"
)

// Names from nsnet, so the tests and benchmarks speak one vocabulary.
type (
	Options     = nsnet.Options
	Cluster     = nsnet.Cluster
	ClusterSpec = nsnet.ClusterSpec
	Proc        = nsnet.Proc
	ARPWatch    = nsnet.ARPWatch
	ARPReport   = nsnet.ARPReport
	DualRound   = nsnet.DualRound
)

// Namespace roles that are not hosts.
const (
	Client = nsnet.Client
	Bridge = nsnet.Bridge
)

// Errors from nsnet.
var (
	ErrNotRoot = nsnet.ErrNotRoot
	ErrClosed  = nsnet.ErrClosed
	ErrTimeout = nsnet.ErrTimeout
)

// Lab is a running namespace lab with fault injection. Its methods may be
// called concurrently.
type Lab struct {
	*nsnet.Lab

	mu       sync.Mutex
	nftables map[string]bool // roles holding table inet batonlab
}

// New builds the lab (nsnet.New) and makes Close delete the fault tables
// first. On error everything created so far is removed again.
func New(opts Options) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("lab: the \"nft\" command is required for faults (apt-get install nftables): %w", err)
	}
	n, err := nsnet.New(opts)
	if err != nil {
		return nil, err
	}
	l := &Lab{Lab: n, nftables: map[string]bool{}}
	if err := n.OnClose(l.deleteTables); err != nil {
		return nil, err
	}
	return l, nil
}

// deleteTables removes the fault tables while the namespaces still exist
// (Close runs it before deleting them).
func (l *Lab) deleteTables() error {
	l.mu.Lock()
	tables := slices.Sorted(maps.Keys(l.nftables))
	l.mu.Unlock()
	var errs []error
	for _, role := range tables {
		if out, err := l.nft(role, "delete table inet batonlab\n"); err != nil {
			errs = append(errs, fmt.Errorf("%s: delete nft table: %w: %s", role, err, out))
		}
	}
	return errors.Join(errs...)
}
