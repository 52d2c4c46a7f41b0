// Package metrics holds Baton's Prometheus metrics.
//
// Everything lives on a registry owned by a Metrics value, never on the
// process-global default registry, so several nodes of an in-process cluster
// (tests, the simulator) each keep their own numbers. The Go runtime and
// process collectors are registered on the same registry.
//
// Every observation method is safe for concurrent use and cheap: it updates
// in-memory values and never does I/O, so callers on the failover path may
// call it inline. The names, types, labels and help texts of all baton_*
// metrics are listed by Describe and documented in README.md.
package metrics

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bucket layouts. Failover phases are expected in the tens to hundreds of
// milliseconds with a tail of seconds when something is wrong; heartbeat round
// trips are sub-millisecond on a LAN; checks and hooks run external probes and
// scripts.
var (
	failoverBuckets  = []float64{.005, .01, .025, .05, .1, .15, .2, .3, .4, .5, .6, .8, 1, 1.5, 2, 3, 5, 10}
	rttBuckets       = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	execBuckets      = []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10}
	groupRoles       = []string{"active", "standby", "none"}
	quorumRoles      = []string{"leader", "follower", "candidate", "shutdown"}
	checkResultNames = [2]string{"fail", "pass"} // indexed by ok
	hookResultNames  = [2]string{"error", "ok"}  // indexed by ok
)

// failoverReasons mirrors the reasons in internal/quorum (not imported, to
// keep this package free of the Raft dependencies). Each is created at 0 as
// soon as a group is known, so increase() sees the very first failover.
var failoverReasons = []string{
	"initial", "failure", "shutdown", "check", "switchover", "failback", "hook", "relinquish", "manual", "reload",
}

// Metrics is one node's set of Baton metrics. Create it with New.
type Metrics struct {
	// Registry holds the baton_* metrics and the Go and process collectors.
	// Register further collectors here, not on the default registry.
	Registry *prometheus.Registry

	// Log receives errors met while serving a scrape. It is read when Handler
	// is called; nil means slog.Default().
	Log *slog.Logger

	clusterMaint prometheus.Gauge

	failovers      *prometheus.CounterVec
	detection      *prometheus.HistogramVec
	decision       *prometheus.HistogramVec
	takeover       *prometheus.HistogramVec
	leaseRemaining *prometheus.GaugeVec

	heartbeatRTT *prometheus.HistogramVec
	peerUp       *prometheus.GaugeVec

	checkResults  *prometheus.CounterVec
	checkDuration *prometheus.HistogramVec
	hookRuns      *prometheus.CounterVec
	hookDuration  *prometheus.HistogramVec

	dnsQueries  *prometheus.CounterVec
	dnsDuration prometheus.Histogram
	reloads     *prometheus.CounterVec
	proxyConns  *prometheus.CounterVec

	dbPosition, dbLag, dbSync, dbRole *prometheus.GaugeVec

	buildInfo *prometheus.GaugeVec

	funcs *funcCollector

	// mu guards the state below. The group and quorum gauges are emitted from
	// it by stateCollector, so a scrape sees one consistent snapshot: never
	// two owners at 1, never an epoch from before the owner it is shown with.
	// It is held only for map and field updates.
	mu      sync.Mutex
	groups  map[string]groupView
	raft    raftView
	version string
}

// groupView is this node's last reported view of one group.
type groupView struct {
	owner       string
	epoch       uint64
	role        string
	members     []string // owned copy
	maintenance bool
	healthy     bool
}

type raftView struct {
	role    string // "" until SetRaftState is called
	leader  bool
	applied uint64
}

// New returns a Metrics on a fresh registry. cluster and node are attached as
// constant labels to every baton_* metric so that series from all nodes can
// be told apart after aggregation.
func New(cluster, node string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	r := prometheus.WrapRegistererWith(prometheus.Labels{"cluster": cluster, "node": node}, reg)

	m := &Metrics{
		Registry: reg,
		groups:   map[string]groupView{},

		clusterMaint: gauge(r, docClusterMaintenance),

		failovers:      counterVec(r, docFailovers),
		detection:      histogramVec(r, docDetection, failoverBuckets),
		decision:       histogramVec(r, docDecision, failoverBuckets),
		takeover:       histogramVec(r, docTakeover, failoverBuckets),
		leaseRemaining: gaugeVec(r, docLeaseRemaining),

		heartbeatRTT: histogramVec(r, docHeartbeatRTT, rttBuckets),
		peerUp:       gaugeVec(r, docPeerUp),

		checkResults:  counterVec(r, docCheckResults),
		checkDuration: histogramVec(r, docCheckDuration, execBuckets),
		hookRuns:      counterVec(r, docHookRuns),
		hookDuration:  histogramVec(r, docHookDuration, execBuckets),

		dnsQueries:  counterVec(r, docDNSQueries),
		reloads:     counterVec(r, docConfigReloads),
		dnsDuration: histogram(r, docDNSDuration, rttBuckets),
		proxyConns:  counterVec(r, docProxyConns),

		dbPosition: gaugeVec(r, docDBPosition),
		dbLag:      gaugeVec(r, docDBLag),
		dbSync:     gaugeVec(r, docDBSync),
		dbRole:     gaugeVec(r, docDBRole),

		buildInfo: gaugeVec(r, docBuildInfo),

		funcs: newFuncCollector(),
	}
	r.MustRegister(m.funcs, newStateCollector(m))
	for _, res := range []string{ReloadApplied, ReloadUnchanged, ReloadRefused} {
		m.reloads.WithLabelValues(res) // at 0 from the start, so increase() sees the first
	}
	return m
}

func gauge(r prometheus.Registerer, d Doc) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: d.Name, Help: d.Help})
	r.MustRegister(g)
	return g
}

func gaugeVec(r prometheus.Registerer, d Doc) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: d.Name, Help: d.Help}, d.Labels)
	r.MustRegister(g)
	return g
}

func counterVec(r prometheus.Registerer, d Doc) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.Labels)
	r.MustRegister(c)
	return c
}

func histogram(r prometheus.Registerer, d Doc, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: buckets})
	r.MustRegister(h)
	return h
}

func histogramVec(r prometheus.Registerer, d Doc, buckets []float64) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: buckets}, d.Labels)
	r.MustRegister(h)
	return h
}

// Handler serves the registry in the Prometheus exposition formats. Errors
// while gathering are logged to m.Log and the metrics that could be gathered
// are still served; a bad collector never panics the daemon.
func (m *Metrics) Handler() http.Handler {
	log := m.Log
	if log == nil {
		log = slog.Default()
	}
	h := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorLog:      printlnLogger{log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.Registry, // exposes promhttp_metric_handler_errors_total
		// A scrape storm must not take CPU from the failover loop; a few
		// concurrent scrapes are plenty for any sane setup.
		MaxRequestsInFlight: 4,
	})
	return promhttp.InstrumentMetricHandler(m.Registry, h)
}

// printlnLogger adapts slog to promhttp.Logger.
type printlnLogger struct{ l *slog.Logger }

func (p printlnLogger) Println(v ...any) {
	p.l.Error("metrics: serving scrape", "error", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// SetGroup records this node's view of a group. members is every member of
// the group; owner is "" when nobody owns it. role is this node's role
// (active, standby or none; case is ignored, "" means none).
func (m *Metrics) SetGroup(group, owner string, epoch uint64, role string, members []string, maintenance bool, healthy bool) {
	role = strings.ToLower(role)
	if role == "" {
		role = "none"
	}
	v := groupView{owner: owner, epoch: epoch, role: role, members: slices.Clone(members),
		maintenance: maintenance, healthy: healthy}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, known := m.groups[group]; !known {
		for _, r := range failoverReasons {
			m.failovers.WithLabelValues(group, r)
		}
	}
	m.groups[group] = v
}

// ForgetGroup deletes every series of a group that left the configuration,
// including its counters and histograms.
func (m *Metrics) ForgetGroup(group string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.groups, group)
	l := prometheus.Labels{"group": group}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.failovers, m.detection, m.decision, m.takeover, m.leaseRemaining,
		m.checkResults, m.checkDuration, m.hookRuns, m.hookDuration, m.proxyConns,
		m.dbPosition, m.dbLag, m.dbSync, m.dbRole,
	} {
		v.DeletePartialMatch(l)
	}
}

// ForgetPeer deletes the series of a peer that left the configuration.
func (m *Metrics) ForgetPeer(peer string) {
	m.heartbeatRTT.DeleteLabelValues(peer)
	m.peerUp.DeleteLabelValues(peer)
}

// SetClusterMaintenance records whether automatic failover is paused
// cluster-wide.
func (m *Metrics) SetClusterMaintenance(on bool) { m.clusterMaint.Set(b2f(on)) }

// Failover counts one change of owner of group for reason (one of the
// quorum.Reason* values).
func (m *Metrics) Failover(group, reason string) { m.failovers.WithLabelValues(group, reason).Inc() }

// ObserveDetection records how long the cluster took to notice a failed owner.
func (m *Metrics) ObserveDetection(group string, d time.Duration) {
	m.detection.WithLabelValues(group).Observe(seconds(d))
}

// ObserveDecision records the time from a quorum of lease releases to the
// proposal of a new owner.
func (m *Metrics) ObserveDecision(group string, d time.Duration) {
	m.decision.WithLabelValues(group).Observe(seconds(d))
}

// ObserveTakeover records how long a new owner took to act after its election.
func (m *Metrics) ObserveTakeover(group string, d time.Duration) {
	m.takeover.WithLabelValues(group).Observe(seconds(d))
}

// ObserveHeartbeatRTT records one heartbeat round trip to peer.
func (m *Metrics) ObserveHeartbeatRTT(peer string, d time.Duration) {
	m.heartbeatRTT.WithLabelValues(peer).Observe(seconds(d))
}

// SetPeerAlive records whether this node considers peer alive.
func (m *Metrics) SetPeerAlive(peer string, alive bool) {
	m.peerUp.WithLabelValues(peer).Set(b2f(alive))
}

// SetRaftState records this node's quorum store state. role is the Raft
// state (leader, follower, candidate or shutdown); case is ignored, so
// raft.RaftState.String() ("Leader", ...) can be passed as is.
func (m *Metrics) SetRaftState(role string, leader bool, applied uint64) {
	role = strings.ToLower(role)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.raft = raftView{role: role, leader: leader, applied: applied}
}

// SetLeaseRemaining records how long this node's lease on group has left;
// pass 0 when this node does not own the group. Negative values read as 0.
func (m *Metrics) SetLeaseRemaining(group string, d time.Duration) {
	m.leaseRemaining.WithLabelValues(group).Set(seconds(d))
}

// CheckResult records one run of a health check.
func (m *Metrics) CheckResult(group, check string, ok bool, took time.Duration) {
	countResult(m.checkResults, group, check, checkResultNames, ok)
	m.checkDuration.WithLabelValues(group, check).Observe(seconds(took))
}

// Reload results (baton_config_reloads_total).
const (
	ReloadApplied   = "applied"
	ReloadUnchanged = "unchanged"
	ReloadRefused   = "refused"
)

// ConfigReload records one config reload by its result (Reload*).
func (m *Metrics) ConfigReload(result string) { m.reloads.WithLabelValues(result).Inc() }

// HookRun records one run of a hook.
func (m *Metrics) HookRun(group, hook string, ok bool, took time.Duration) {
	countResult(m.hookRuns, group, hook, hookResultNames, ok)
	m.hookDuration.WithLabelValues(group, hook).Observe(seconds(took))
}

// DNSQuery records one query answered by the built-in DNS server.
func (m *Metrics) DNSQuery(rcode int, took time.Duration) {
	name, ok := dns.RcodeToString[rcode]
	if !ok {
		name = strconv.Itoa(rcode)
	}
	m.dnsQueries.WithLabelValues(name).Inc()
	m.dnsDuration.Observe(seconds(took))
}

// DBMember is one member's database as a data-aware group's status shows it.
type DBMember struct {
	Member, Role string
	Pos, Lag     uint64
	Sync         bool
}

// SetDB replaces the database series of a data-aware group.
func (m *Metrics) SetDB(group string, members []DBMember) {
	l := prometheus.Labels{"group": group}
	for _, v := range []*prometheus.GaugeVec{m.dbPosition, m.dbLag, m.dbSync, m.dbRole} {
		v.DeletePartialMatch(l)
	}
	for _, mb := range members {
		if mb.Role == "" {
			continue
		}
		m.dbPosition.WithLabelValues(group, mb.Member).Set(float64(mb.Pos))
		m.dbLag.WithLabelValues(group, mb.Member).Set(float64(mb.Lag))
		sync := 0.0
		if mb.Sync {
			sync = 1
		}
		m.dbSync.WithLabelValues(group, mb.Member).Set(sync)
		for _, r := range []string{"primary", "standby", "stopped", "unknown"} {
			v := 0.0
			if r == mb.Role {
				v = 1
			}
			m.dbRole.WithLabelValues(group, mb.Member, r).Set(v)
		}
	}
}

// ProxyConn records one client connection the group's proxy connected to target.
func (m *Metrics) ProxyConn(group, target string) { m.proxyConns.WithLabelValues(group, target).Inc() }

// countResult increments the series of the outcome and makes sure the other
// outcome exists at 0, so that increase() catches its first occurrence.
func countResult(c *prometheus.CounterVec, group, name string, results [2]string, ok bool) {
	i := 0
	if ok {
		i = 1
	}
	c.WithLabelValues(group, name, results[1-i])
	c.WithLabelValues(group, name, results[i]).Inc()
}

// SetBuildInfo records the version of the running build.
func (m *Metrics) SetBuildInfo(version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buildInfo.WithLabelValues(version).Set(1)
	if m.version != version {
		m.buildInfo.DeleteLabelValues(m.version)
		m.version = version
	}
}

// RegisterPacketCounters exposes the heartbeat transport's packet counters.
// The functions are called at scrape time, possibly concurrently, and must be
// cheap and non-blocking (atomic loads). rejected maps a reason (auth, replay,
// malformed, unknown_peer, misdirected, version) to its count; return every known reason, zeros
// included, so the first rejection shows in increase(). A nil function leaves
// its metric out. A later call replaces the functions of an earlier one.
func (m *Metrics) RegisterPacketCounters(sent, received func() uint64, rejected func() map[string]uint64) {
	m.funcs.packets.Store(&packetFuncs{sent: sent, received: received, rejected: rejected})
}

// RegisterSendErrors exposes the transport's count of heartbeats it could
// not send. f follows the rules of RegisterPacketCounters.
func (m *Metrics) RegisterSendErrors(f func() uint64) {
	m.funcs.sendErrors.Store(&f)
}

// RegisterQuorumRejected exposes the quorum transport's count of refused
// connections. f follows the rules of RegisterPacketCounters.
func (m *Metrics) RegisterQuorumRejected(f func() uint64) {
	m.funcs.quorumRejected.Store(&f)
}

// funcCollector exposes counters kept by other packages, read at scrape time.
// It is registered once in New; the Register* methods only swap the functions,
// so they may be called again (a restarted transport) without a registration
// conflict.
type funcCollector struct {
	packets        atomic.Pointer[packetFuncs]
	quorumRejected atomic.Pointer[func() uint64]
	sendErrors     atomic.Pointer[func() uint64]

	sent, received, rejected, quorum, sendErr *prometheus.Desc
}

type packetFuncs struct {
	sent, received func() uint64
	rejected       func() map[string]uint64
}

func newFuncCollector() *funcCollector {
	return &funcCollector{
		sent:     newDesc(docPacketsSent),
		received: newDesc(docPacketsReceived),
		rejected: newDesc(docPacketsRejected),
		quorum:   newDesc(docQuorumRejected),
		sendErr:  newDesc(docSendErrors),
	}
}

func (c *funcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.received
	ch <- c.rejected
	ch <- c.quorum
	ch <- c.sendErr
}

func (c *funcCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- constMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if p := c.packets.Load(); p != nil {
		if p.sent != nil {
			counter(c.sent, p.sent())
		}
		if p.received != nil {
			counter(c.received, p.received())
		}
		if p.rejected != nil {
			for reason, n := range p.rejected() {
				counter(c.rejected, n, reason)
			}
		}
	}
	if f := c.quorumRejected.Load(); f != nil && *f != nil {
		counter(c.quorum, (*f)())
	}
	if f := c.sendErrors.Load(); f != nil && *f != nil {
		counter(c.sendErr, (*f)())
	}
}

// stateCollector emits the group and quorum gauges from a snapshot of the
// state kept by SetGroup and SetRaftState.
type stateCollector struct {
	m *Metrics

	epoch, owner, role, maintenance, healthy *prometheus.Desc
	qLeader, qApplied, qRole                 *prometheus.Desc
}

func newStateCollector(m *Metrics) *stateCollector {
	return &stateCollector{
		m:           m,
		epoch:       newDesc(docGroupEpoch),
		owner:       newDesc(docGroupOwner),
		role:        newDesc(docGroupRole),
		maintenance: newDesc(docGroupMaintenance),
		healthy:     newDesc(docGroupHealthy),
		qLeader:     newDesc(docQuorumLeader),
		qApplied:    newDesc(docQuorumApplied),
		qRole:       newDesc(docQuorumRole),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.epoch, c.owner, c.role, c.maintenance, c.healthy, c.qLeader, c.qApplied, c.qRole} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	// Copy under the lock, build metrics outside it: observers never wait on
	// a scrape for longer than a map copy. Views are replaced, never mutated,
	// so the copies stay valid.
	c.m.mu.Lock()
	groups := maps.Clone(c.m.groups)
	raft := c.m.raft
	c.m.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, g := range groups {
		gauge(c.epoch, float64(g.epoch), name)
		for _, o := range oneHot(g.members, g.owner) {
			gauge(c.owner, b2f(o == g.owner), name, o)
		}
		for _, r := range oneHot(groupRoles, g.role) {
			gauge(c.role, b2f(r == g.role), name, r)
		}
		gauge(c.maintenance, b2f(g.maintenance), name)
		gauge(c.healthy, b2f(g.healthy), name)
	}
	gauge(c.qLeader, b2f(raft.leader))
	gauge(c.qApplied, float64(raft.applied))
	if raft.role != "" {
		for _, r := range oneHot(quorumRoles, raft.role) {
			gauge(c.qRole, b2f(r == raft.role), r)
		}
	}
}

// oneHot returns the label values of a one-hot gauge: the given values and
// cur ("" for none), without duplicates, which would fail the scrape.
func oneHot(values []string, cur string) []string {
	out := make([]string, 0, len(values)+1)
	out = append(out, values...)
	if cur != "" {
		out = append(out, cur)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// constMetric is MustNewConstMetric without the panic: a bad label value
// (invalid UTF-8 from some caller) fails that one series, and the handler logs
// it, instead of taking the daemon down during a scrape.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

func newDesc(d Doc) *prometheus.Desc { return prometheus.NewDesc(d.Name, d.Help, d.Labels, nil) }

// seconds converts d for a histogram or gauge. Negative durations (a clock
// stepped backwards between two wall-clock readings) are recorded as 0 rather
// than pulling the histogram's sum down.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
