package dns

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ServeDNS answers one query; it is the handler Listen serves, and may be used in another dns.Server or mux.
// It writes exactly one response to w for any request (nothing for a nil one) and never panics: a panic while
// answering (say, in the Snapshot function) is logged and answered with SERVFAIL.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if r == nil || w == nil {
		return
	}
	start := time.Now()
	udp := isUDP(w)
	m := s.safeAnswer(r, udp)
	if err := w.WriteMsg(m); err != nil {
		// The client is gone or the message did not pack; the client retries either way.
		s.log.Debug("writing DNS response", "remote", remote(w), "err", err)
	}
	if s.OnQuery != nil {
		s.OnQuery(m.Rcode, time.Since(start))
	}
}

func (s *Server) safeAnswer(r *dns.Msg, udp bool) (m *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("answering a DNS query panicked; answered SERVFAIL", "question", r.Question, "panic", p)
			m = new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			m.Compress = true
		}
	}()
	m = s.answer(r)
	if udp {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
		m.Truncate(size) // drops what does not fit and sets TC; the client then asks again over TCP
	} else {
		m.Compress = true
	}
	return m
}

// answer builds the response to r, before truncation.
func (s *Server) answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}

	// EDNS(0), RFC 6891: at most one OPT record; a response to a query with one carries one too.
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				m.Rcode = dns.RcodeFormatError
				return m
			}
			opt = o
		}
	}
	if opt != nil {
		ropt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ropt.SetUDPSize(maxUDPSize)
		if opt.Do() {
			ropt.SetDo() // RFC 3225: copied back, though nothing here is signed
		}
		m.Extra = append(m.Extra, ropt)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}

	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	rel, ok := s.relative(q.Name)
	if !ok {
		m.Rcode = dns.RcodeRefused // not our zone, and we do not recurse
		return m
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused // every agent is a primary; nothing transfers the zone
		return m
	}

	m.Authoritative = true
	snap := s.snap()
	f := find(snap, rel)
	switch f.kind {
	case notFound:
		m.Rcode = dns.RcodeNameError
	case apex:
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = append(m.Answer, s.newSOA())
		case dns.TypeNS:
			m.Answer = append(m.Answer, s.newNS(q.Name))
			if rec, ok := snap[nsLabel]; ok {
				m.Extra = s.appendAddrs(m.Extra, s.ns, rec.Addrs, dns.TypeANY)
			}
		case dns.TypeANY:
			m.Answer = append(m.Answer, s.newSOA(), s.newNS(q.Name))
		}
	case name:
		switch q.Qtype {
		case dns.TypeA, dns.TypeAAAA:
			m.Answer = s.appendAddrs(m.Answer, q.Name, f.rec.Addrs, q.Qtype)
		case dns.TypeSRV:
			m.Answer, m.Extra = s.appendSRV(m.Answer, m.Extra, q.Name, f.key, f.rec)
		}
	case service:
		if q.Qtype == dns.TypeSRV {
			m.Answer, m.Extra = s.appendSRV(m.Answer, m.Extra, q.Name, f.key, f.rec)
		}
	case addrName:
		if q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA {
			m.Answer = s.appendAddrs(m.Answer, q.Name, []netip.Addr{f.addr}, q.Qtype)
		}
	case emptyNonTerminal:
	}
	if m.Rcode == dns.RcodeNameError || len(m.Answer) == 0 {
		// RFC 2308: the SOA tells resolvers how long to cache the negative answer (its TTL and MINIMUM, both ttl).
		m.Ns = append(m.Ns, s.newSOA())
	}
	return m
}

// relative returns qname relative to the zone, lowercase and without dots at either end ("" for the apex), and
// whether qname is in the zone at all.
func (s *Server) relative(qname string) (string, bool) {
	qname = dns.CanonicalName(qname)
	if strings.IndexByte(qname, '\\') >= 0 {
		// An escaped character (\. inside a label, \065): no snapshot key has one, so the name is either outside
		// the zone or a name that does not exist in it; let the library's label-aware comparison say which.
		if dns.IsSubDomain(s.zone, qname) {
			return "\\", true
		}
		return "", false
	}
	if qname == s.zone {
		return "", true
	}
	rel, ok := strings.CutSuffix(qname, "."+s.zone)
	if !ok || rel == "" || strings.HasSuffix(rel, ".") {
		return "", false
	}
	return rel, true
}

type kind int

const (
	notFound         kind = iota
	apex                  // the zone itself: SOA, NS
	name                  // a key of the snapshot: A, AAAA, SRV
	service               // _<service>._tcp.<key>: SRV
	addrName              // <address label>.<key>, one of key's addresses: its A or AAAA
	emptyNonTerminal      // exists only because names below it do: NOERROR, no records
)

type found struct {
	kind kind
	key  string
	rec  Record
	addr netip.Addr
}

// find looks rel (see relative) up in snap.
func find(snap map[string]Record, rel string) found {
	if rel == "" {
		return found{kind: apex}
	}
	if rec, ok := snap[rel]; ok {
		return found{kind: name, key: rel, rec: rec}
	}
	first, rest, _ := strings.Cut(rel, ".")
	if rest != "" {
		if len(first) > 1 && first[0] == '_' {
			if proto, key, ok := strings.Cut(rest, "."); ok && proto == "_tcp" {
				if rec, ok := snap[key]; ok && validPort(rec.Port) {
					return found{kind: service, key: key, rec: rec}
				}
			}
		} else if a, ok := parseAddrLabel(first); ok {
			if rec, ok := snap[rest]; ok && serves(rec, a) {
				return found{kind: addrName, key: rest, rec: rec, addr: a}
			}
		}
		if first == "_tcp" {
			if rec, ok := snap[rest]; ok && validPort(rec.Port) {
				return found{kind: emptyNonTerminal}
			}
		}
	}
	// A key with dots in it ("web.eu") makes every name above it exist ("eu"). Only a miss pays for the scan.
	for k := range snap {
		if len(k) > len(rel) && strings.HasSuffix(k, rel) && k[len(k)-len(rel)-1] == '.' {
			return found{kind: emptyNonTerminal}
		}
	}
	return found{kind: notFound}
}

func validPort(p int) bool { return p > 0 && p <= 65535 }

// norm returns a as it goes into an A or AAAA record (IPv4-mapped IPv6 addresses are IPv4, zones are dropped),
// and false for the zero Addr.
func norm(a netip.Addr) (netip.Addr, bool) {
	if !a.IsValid() {
		return a, false
	}
	return a.Unmap().WithZone(""), true
}

func serves(rec Record, a netip.Addr) bool {
	for _, x := range rec.Addrs {
		if x, ok := norm(x); ok && x == a {
			return true
		}
	}
	return false
}

// addrLabel is the DNS label for a: 10-0-0-5 for 10.0.0.5, and the fully expanded form with dashes for IPv6
// (fd00-0000-…-0005), so that every address has exactly one label, and none starts with a dash.
func addrLabel(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.StringExpanded(), ":", "-")
}

// parseAddrLabel is the inverse of addrLabel; it accepts only labels addrLabel produces.
func parseAddrLabel(l string) (netip.Addr, bool) {
	var a netip.Addr
	var err error
	switch strings.Count(l, "-") {
	case 3:
		a, err = netip.ParseAddr(strings.ReplaceAll(l, "-", "."))
	case 7:
		a, err = netip.ParseAddr(strings.ReplaceAll(l, "-", ":"))
	default:
		return a, false
	}
	if err != nil || addrLabel(a) != l {
		return netip.Addr{}, false
	}
	return a, true
}

func (s *Server) hdr(owner string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: s.ttl}
}

func (s *Server) newSOA() *dns.SOA {
	soa := s.soa
	return &soa
}

func (s *Server) newNS(owner string) *dns.NS {
	return &dns.NS{Hdr: s.hdr(owner, dns.TypeNS), Ns: s.ns}
}

// appendAddrs appends to rrs an A or AAAA record named owner for each of addrs of type qtype (A or AAAA; ANY for
// both).
func (s *Server) appendAddrs(rrs []dns.RR, owner string, addrs []netip.Addr, qtype uint16) []dns.RR {
	for _, a := range addrs {
		a, ok := norm(a)
		switch {
		case !ok:
		case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
			rrs = append(rrs, &dns.A{Hdr: s.hdr(owner, dns.TypeA), A: net.IP(a.AsSlice())})
		case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
			rrs = append(rrs, &dns.AAAA{Hdr: s.hdr(owner, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	}
	return rrs
}

// appendSRV appends rec's SRV records, named owner, to answer, and their targets' addresses to extra. With
// Targets, there is one SRV record per node, pointing at <node>.<zone>, with the node's addresses of this record
// as glue; without, one per address, pointing at <address label>.<key>.<zone>, which resolves to that address.
func (s *Server) appendSRV(answer, extra []dns.RR, owner, key string, rec Record) ([]dns.RR, []dns.RR) {
	if !validPort(rec.Port) {
		return answer, extra
	}
	srv := func(target string) *dns.SRV {
		return &dns.SRV{Hdr: s.hdr(owner, dns.TypeSRV), Priority: srvPriority, Weight: srvWeight,
			Port: uint16(rec.Port), Target: target}
	}
	if len(rec.Targets) == 0 {
		for _, a := range rec.Addrs {
			a, ok := norm(a)
			if !ok {
				continue
			}
			target := addrLabel(a) + "." + key + "." + s.zone
			answer = append(answer, srv(target))
			extra = s.appendAddrs(extra, target, []netip.Addr{a}, dns.TypeANY)
		}
		return answer, extra
	}
	seen := make(map[string]bool, len(rec.Targets))
	for i, t := range rec.Targets {
		node := strings.ToLower(t.Node)
		if seen[node] {
			continue
		}
		seen[node] = true
		target := node + "." + s.zone
		if _, ok := dns.IsDomainName(target); !ok || node == "" || strings.ContainsAny(node, "\\ ") {
			s.log.Warn("skipping an SRV target that is not a domain name", "name", key, "node", t.Node)
			continue
		}
		answer = append(answer, srv(target))
		for _, u := range rec.Targets[i:] {
			if strings.EqualFold(u.Node, t.Node) {
				extra = s.appendAddrs(extra, target, []netip.Addr{u.Addr}, dns.TypeANY)
			}
		}
	}
	return answer, extra
}

// isUDP reports whether w is a UDP exchange, where the answer must fit the client's buffer. Anything that is not
// known to be TCP counts as UDP, the stricter case.
func isUDP(w dns.ResponseWriter) (udp bool) {
	defer func() {
		if recover() != nil {
			udp = true
		}
	}()
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	return !tcp
}

func remote(w dns.ResponseWriter) (s string) {
	defer func() {
		if recover() != nil {
			s = "?"
		}
	}()
	if a := w.RemoteAddr(); a != nil {
		return a.String()
	}
	return "?"
}
