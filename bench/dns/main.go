// Command dns measures the built-in DNS server's answer latency and throughput: a Server with a static zone on a
// free loopback port, and real UDP clients, each on its own socket, sending queries one after another (a client
// sends its next query when the answer to the last one is in). Latency is per query at the client; queries/s is
// all answers over the wall time of the run.
//
//	go run ./bench/dns -n 20000
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/baton-ha/baton/internal/benchkit"
	batondns "github.com/baton-ha/baton/internal/frontdoor/dns"
)

func main() {
	n := flag.Int("n", 20000, "queries per row")
	conc := flag.String("c", "1,4,16", "concurrent clients, one row each")
	flag.Parse()
	var clients []int
	for _, f := range strings.Split(*conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 || c > *n {
			fmt.Fprintf(os.Stderr, "dns: -c %q: want counts of clients from 1 to -n, e.g. 1,4,16\n", *conc)
			os.Exit(2)
		}
		clients = append(clients, c)
	}

	zone := map[string]batondns.Record{
		"web": {Addrs: addrs("10.0.0.11", "fd00::11"), Port: 8080,
			Targets: []batondns.Target{{Node: "n1", Addr: netip.MustParseAddr("10.0.0.11")}, {Node: "n1", Addr: netip.MustParseAddr("fd00::11")}}},
		"api": {Addrs: addrs("10.0.0.11", "10.0.0.12", "10.0.0.13"), Port: 443},
		"n1":  {Addrs: addrs("10.0.0.11", "fd00::11")},
	}
	s, err := batondns.New("", 0, func() map[string]batondns.Record { return zone }, slog.New(slog.DiscardHandler))
	benchkit.Check(err)
	benchkit.Check(s.Listen("127.0.0.1:0"))
	defer s.Close()
	addr := s.Addr().String()
	run(addr, "web.baton.", dns.TypeA, 2000, 1) // warm up: sockets, the buffer pool, the scheduler

	fmt.Printf("# Built-in DNS server, UDP on loopback, %s, %s, GOMAXPROCS %d, %d queries per row\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.Version(), runtime.GOMAXPROCS(0), *n)
	fmt.Println("| query | answer | clients | p50 | p99 | max | queries/s |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, q := range []struct {
		name   string
		qtype  uint16
		answer string
	}{
		{"web.baton.", dns.TypeA, "1 A"},
		{"_http._tcp.api.baton.", dns.TypeSRV, "3 SRV + 3 A glue"},
		{"nope.baton.", dns.TypeA, "NXDOMAIN + SOA"},
	} {
		for _, c := range clients {
			lat, took := run(addr, q.name, q.qtype, *n, c)
			slices.Sort(lat)
			fmt.Printf("| %s %s | %s | %d | %s | %s | %s | %.0f |\n", dns.TypeToString[q.qtype], q.name, q.answer, c,
				us(pct(lat, 0.50)), us(pct(lat, 0.99)), us(lat[len(lat)-1]), float64(len(lat))/took.Seconds())
		}
	}
}

// run sends n queries from c clients and returns each query's latency and the wall time.
func run(addr, name string, qtype uint16, n, c int) ([]time.Duration, time.Duration) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c {
		lo, hi := i*n/c, (i+1)*n/c
		cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := cl.Dial(addr)
		benchkit.Check(err)
		wg.Go(func() {
			defer conn.Close()
			q := new(dns.Msg).SetQuestion(name, qtype)
			for j := lo; j < hi; j++ {
				q.Id = dns.Id()
				r, rtt, err := cl.ExchangeWithConn(q, conn)
				benchkit.Check(err)
				if r.Id != q.Id || r.Truncated {
					benchkit.Check(fmt.Errorf("bad answer to %s: %v", name, r))
				}
				lat[j] = rtt
			}
		})
	}
	wg.Wait()
	return lat, time.Since(start)
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}
