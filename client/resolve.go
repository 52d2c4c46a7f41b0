package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// maxBody bounds an agent's answer; a group's endpoint list is a few hundred bytes.
const maxBody = 1 << 20

// agentURL turns an Options.Agents entry into the API's base URL.
func agentURL(agent string) (*url.URL, error) {
	raw := agent
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", agent, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", agent)
	}
	if u.Port() == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q: want host:port", agent)
	}
	return u, nil
}

// apiResolver asks agents' HTTP APIs, sticking to the last one that answered.
type apiResolver struct {
	agents  []*url.URL
	http    *http.Client
	timeout time.Duration
	log     *slog.Logger
	sticky  atomic.Int64 // index into agents
}

func newAPIResolver(agents []string, hc *http.Client, timeout time.Duration, log *slog.Logger) *apiResolver {
	r := &apiResolver{http: hc, timeout: timeout, log: log}
	for _, a := range agents {
		u, _ := agentURL(a) // validated by New
		r.agents = append(r.agents, u)
	}
	return r
}

func (r *apiResolver) resolve(ctx context.Context, group string) (Endpoints, error) {
	first := int(r.sticky.Load())
	var errs []error
	for i := range r.agents {
		idx := (first + i) % len(r.agents)
		eps, err := r.get(ctx, r.agents[idx], group)
		if err == nil {
			if idx != first && r.sticky.CompareAndSwap(int64(first), int64(idx)) {
				r.log.Info("switched agent", "agent", r.agents[idx].Host, "after", errors.Join(errs...))
			}
			return eps, nil
		}
		// Every agent serves the same replicated state: one that knows the
		// group is missing speaks for all of them.
		if errors.Is(err, ErrUnknownGroup) || ctx.Err() != nil {
			return Endpoints{}, err
		}
		errs = append(errs, err)
	}
	return Endpoints{}, fmt.Errorf("no agent answered for group %q: %w", group, errors.Join(errs...))
}

func (r *apiResolver) get(ctx context.Context, agent *url.URL, group string) (Endpoints, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	u := agent.JoinPath("v1", "groups", group, "endpoints")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Endpoints{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.http.Do(req)
	if err != nil {
		return Endpoints{}, fmt.Errorf("agent %s: %w", agent.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Endpoints{}, fmt.Errorf("agent %s: reading answer: %w", agent.Host, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return Endpoints{}, fmt.Errorf("%w %q (agent %s: %s)", ErrUnknownGroup, group, agent.Host, errorText(body))
	default:
		return Endpoints{}, fmt.Errorf("agent %s: %s: %s", agent.Host, resp.Status, errorText(body))
	}
	var eps Endpoints
	if err := json.Unmarshal(body, &eps); err != nil {
		return Endpoints{}, fmt.Errorf("agent %s: decoding endpoints of group %q: %w", agent.Host, group, err)
	}
	valid := eps.Endpoints[:0]
	for _, ep := range eps.Endpoints {
		if ep.Address == "" || ep.Port < 1 || ep.Port > 65535 {
			r.log.Warn("agent listed an endpoint that cannot be dialled; skipping it",
				"agent", agent.Host, "group", group, "node", ep.Node, "address", ep.Address, "port", ep.Port)
			continue
		}
		valid = append(valid, ep)
	}
	eps.Endpoints = valid
	return eps, nil
}

// errorText is the "error" field of an agent's JSON error, or the raw body.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// dnsResolver asks Baton's authoritative DNS server directly, bypassing the
// system resolver and its caches, which would hide a failover for a TTL.
type dnsResolver struct {
	server  string
	zone    string
	port    int
	timeout time.Duration
}

func newDNSResolver(server, zone string, port int, timeout time.Duration) *dnsResolver {
	return &dnsResolver{server: server, zone: dns.Fqdn(zone), port: port, timeout: timeout}
}

func (r *dnsResolver) resolve(ctx context.Context, group string) (Endpoints, error) {
	name := dns.Fqdn(group + "." + strings.TrimPrefix(r.zone, "."))
	if _, ok := dns.IsDomainName(name); !ok {
		return Endpoints{}, fmt.Errorf("group %q: %q is not a DNS name", group, name)
	}
	var addrs []netip.Addr
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		in, err := r.exchange(ctx, name, qtype)
		if err != nil {
			return Endpoints{}, err
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return Endpoints{}, fmt.Errorf("%w %q (dns server %s: NXDOMAIN for %s)", ErrUnknownGroup, group, r.server, name)
		default:
			return Endpoints{}, fmt.Errorf("dns server %s: %s for %s %s",
				r.server, dns.RcodeToString[in.Rcode], dns.TypeToString[qtype], name)
		}
		for _, rr := range in.Answer {
			if !strings.EqualFold(rr.Header().Name, name) {
				continue
			}
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)

	eps := Endpoints{Group: group, Endpoints: []Endpoint{}}
	h := fnv.New64a()
	for _, a := range addrs {
		b := a.AsSlice()
		h.Write(append([]byte{byte(len(b))}, b...))
		eps.Endpoints = append(eps.Endpoints, Endpoint{Address: a.String(), Port: r.port})
	}
	eps.Generation = h.Sum64()
	return eps, nil
}

// exchange sends one query over UDP, and again over TCP if the answer was truncated.
func (r *dnsResolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: r.timeout}
		in, _, err := c.ExchangeContext(ctx, m, r.server)
		if err != nil {
			return nil, fmt.Errorf("dns server %s: %s %s: %w", r.server, dns.TypeToString[qtype], name, err)
		}
		if !in.Truncated {
			return in, nil
		}
	}
	return nil, fmt.Errorf("dns server %s: %s %s: answer truncated even over TCP", r.server, dns.TypeToString[qtype], name)
}
