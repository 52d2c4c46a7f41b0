package nsnet

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
)

// ARPReport summarises an ARPWatch.
type ARPReport struct {
	Rounds          int            // requests sent
	MaxDistinctMACs int            // most MACs that answered in one round
	DualRounds      int            // rounds in which two or more MACs answered: two owners of one address
	SilentRounds    int            // rounds nobody answered
	MACs            map[string]int // MAC → rounds it answered in
	// Dual lists when the first MaxDual dual rounds started and who
	// answered, for a timeline.
	Dual []DualRound
}

// MaxDual bounds ARPReport.Dual.
const MaxDual = 100

// DualRound is one round in which two or more MACs answered.
type DualRound struct {
	At   time.Time
	MACs []string
}

// ARPWatch asks, from the client namespace, who has an IPv4 address, once per
// interval, and records which MACs answer each round. Only ARP replies
// addressed to the client's own request count (sender IP = the watched
// address, target IP = the client's), not gratuitous announcements: the
// question is who would take the client's traffic.
type ARPWatch struct {
	vip    netip.Addr
	self   netip.Addr
	c      *arp.Client
	every  time.Duration
	window time.Duration
	stop   chan struct{}
	done   chan struct{}

	mu  sync.Mutex
	rep ARPReport

	stopOnce sync.Once
	l        *Lab
}

// StartARPWatch starts watching vip (an address in 10.77.0.0/24) every
// interval. Each round sends one ARP request and collects replies for
// 3/4 of the interval (2 ms..100 ms).
func (l *Lab) StartARPWatch(vip string, every time.Duration) (*ARPWatch, error) {
	a, err := netip.ParseAddr(vip)
	if err != nil {
		return nil, fmt.Errorf("lab: StartARPWatch: %w", err)
	}
	if !a.Is4() || !Prefix4.Contains(a) {
		return nil, fmt.Errorf("lab: StartARPWatch: %s is not in the lab's IPv4 prefix %s", a, Prefix4)
	}
	if every < 2*time.Millisecond {
		return nil, fmt.Errorf("lab: StartARPWatch: interval = %v, want ≥ 2ms", every)
	}
	var c *arp.Client
	// The packet socket (and the interface lookup, which goes through a
	// netlink socket) must be made inside the client namespace.
	err = l.InNS(Client, func() error {
		ifi, err := net.InterfaceByName(ifaceName)
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: StartARPWatch: %w", err)
	}
	w := &ARPWatch{
		vip:    a,
		self:   netip.MustParseAddr(l.Addr(Client)),
		c:      c,
		every:  every,
		window: min(max(every*3/4, 2*time.Millisecond), 100*time.Millisecond),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		rep:    ARPReport{MACs: map[string]int{}},
		l:      l,
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, ErrClosed
	}
	l.watches[w] = struct{}{}
	l.mu.Unlock()
	go w.loop()
	return w, nil
}

func (w *ARPWatch) loop() {
	defer close(w.done)
	defer w.c.Close()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		w.round()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

func (w *ARPWatch) round() {
	at := time.Now()
	seen := map[string]bool{}
	if err := w.c.Request(w.vip); err == nil {
		_ = w.c.SetReadDeadline(time.Now().Add(w.window))
		for {
			p, _, err := w.c.Read()
			if err != nil {
				break // deadline
			}
			if p.Operation == arp.OperationReply && p.SenderIP == w.vip && p.TargetIP == w.self {
				seen[p.SenderHardwareAddr.String()] = true
			}
		}
	} else {
		w.l.log.Warn("arp request", "vip", w.vip, "err", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rep.Rounds++
	w.rep.MaxDistinctMACs = max(w.rep.MaxDistinctMACs, len(seen))
	switch {
	case len(seen) == 0:
		w.rep.SilentRounds++
	case len(seen) >= 2:
		w.rep.DualRounds++
		if len(w.rep.Dual) < MaxDual {
			w.rep.Dual = append(w.rep.Dual, DualRound{At: at, MACs: slices.Sorted(maps.Keys(seen))})
		}
	}
	for mac := range seen {
		w.rep.MACs[mac]++
	}
}

// Report returns the report so far without stopping.
func (w *ARPWatch) Report() ARPReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.rep
	r.Dual = slices.Clone(w.rep.Dual)
	r.MACs = make(map[string]int, len(w.rep.MACs))
	for k, v := range w.rep.MACs {
		r.MACs[k] = v
	}
	return r
}

// Stop ends the watch after the current round and returns the report. Later
// calls return the same report.
func (w *ARPWatch) Stop() ARPReport {
	w.stopOnce.Do(func() {
		close(w.stop)
		<-w.done
		w.l.mu.Lock()
		delete(w.l.watches, w)
		w.l.mu.Unlock()
	})
	return w.Report()
}
