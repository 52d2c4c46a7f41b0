// Package dns is Baton's built-in authoritative DNS server: every agent answers for the cluster's zone (baton. by
// default) from its replica of the cluster state, so whichever node a client asks, it gets the same answer, and
// that answer follows a failover as soon as the replica does.
//
// The agent hands New a Snapshot function; ServeDNS calls it once per query and answers from the map it returns,
// so there is no zone to reload and nothing to invalidate. The names it answers, the SRV scheme and the response
// codes are described in README.md beside this file.
package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Record is what one name in the zone resolves to.
type Record struct {
	// Addrs are the addresses serving the name now: A records for the IPv4 ones, AAAA for the IPv6 ones, in this
	// order. Empty means the name exists but nobody serves it: NOERROR with no answer, not NXDOMAIN, so a
	// resolver does not cache "no such name" for a group that is merely between owners.
	Addrs []netip.Addr
	// Port, 1 to 65535, is the service's port, published as SRV records; 0 publishes none.
	Port int
	// Targets, when set, name the node behind each address, and the SRV records point at those node names
	// (n1.<zone>) instead of names derived from the addresses. See README.md.
	Targets []Target
}

// Target names the node serving a record on one address.
type Target struct {
	Node string     // the node's name relative to the zone, lowercase, e.g. "n1"
	Addr netip.Addr // the address it serves on, for the A or AAAA glue next to the SRV record
}

// Snapshot returns the zone's names, keyed by the name relative to the zone: lowercase, without the zone and
// without a trailing dot ("web" for web.baton.). It is called once per query, concurrently from many goroutines,
// so it must be quick and must not block (a map read under a read lock, or an atomic.Pointer load). The map and
// the Records in it are only read, never kept past the query, and must not change while a query reads them.
type Snapshot func() map[string]Record

const (
	// DefaultZone is the zone New uses when given "".
	DefaultZone = "baton."
	// DefaultTTL is the TTL New uses when given 0: answers change at failover, so resolvers should not keep them.
	DefaultTTL = time.Second

	// maxUDPSize is the largest UDP response sent, and the size advertised in our OPT record: 1232 bytes fits an
	// IPv6 packet on any link without fragmentation (DNS flag day 2020). Larger answers are truncated, and the
	// client retries over TCP.
	maxUDPSize = 1232

	// nsLabel is the name the zone's NS and SOA records point at; see README.md.
	nsLabel = "ns"

	srvPriority = 0
	srvWeight   = 10
)

// Server answers queries for one zone. Its methods are safe for concurrent use.
type Server struct {
	// OnQuery, when set, is called once for every query ServeDNS answers, with the response code (dns.RcodeSuccess,
	// dns.RcodeNameError, ...) and the time from receiving the parsed query to handing the answer to the socket. It
	// runs on the goroutine serving the query, concurrently with other calls, so it must be quick (a Prometheus
	// counter and histogram are). Set it before Listen and do not change it after.
	OnQuery func(rcode int, took time.Duration)

	zone string // FQDN, lowercase
	ttl  uint32 // seconds
	snap Snapshot
	log  *slog.Logger
	soa  dns.SOA // the template for every SOA record sent
	ns   string  // the NS target, ns.<zone>

	listener // the sockets, once Listen has run
}

// New returns a Server for zone (default DefaultZone; case and the trailing dot do not matter) whose records all
// carry ttl (default DefaultTTL; whole seconds), answering from snap.
func New(zone string, ttl time.Duration, snap Snapshot, log *slog.Logger) (*Server, error) {
	if zone == "" {
		zone = DefaultZone
	}
	zone = dns.CanonicalName(zone)
	if zone == "." {
		return nil, errors.New(`dns: zone "." is the root; use a zone of its own, such as "baton." or "ha.example.com."`)
	}
	if _, ok := dns.IsDomainName(zone); !ok || strings.ContainsAny(zone, "\\ ") || strings.Contains(zone, "..") {
		return nil, fmt.Errorf("dns: zone %q is not a domain name (e.g. baton. or ha.example.com.)", zone)
	}
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < 0:
		return nil, fmt.Errorf("dns: ttl %v is negative; use e.g. 1s", ttl)
	case ttl%time.Second != 0:
		return nil, fmt.Errorf("dns: ttl %v is not a whole number of seconds (DNS TTLs count seconds); use e.g. 1s", ttl)
	case ttl/time.Second > math.MaxInt32:
		return nil, fmt.Errorf("dns: ttl %v is longer than DNS allows (2^31-1 seconds); use e.g. 1s", ttl)
	}
	if snap == nil {
		return nil, errors.New("dns: no snapshot function")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		zone: zone,
		ttl:  uint32(ttl / time.Second),
		snap: snap,
		log:  log,
		ns:   nsLabel + "." + zone,
	}
	s.soa = dns.SOA{
		Hdr:  dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:   s.ns,
		Mbox: "hostmaster." + zone,
		// Every agent answers from the replicated state and nothing transfers the zone, so the serial and the
		// timers are for tools that insist on reading them; Minttl (the negative-caching TTL) is the one that counts.
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.ttl,
	}
	return s, nil
}

// Zone returns the zone the server answers for, as a lowercase FQDN.
func (s *Server) Zone() string { return s.zone }
