package metrics

import (
	"bytes"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exercise calls every observation method once, so every baton_* family has
// at least one series.
func exercise(m *Metrics) {
	m.SetBuildInfo("v1.2.3")
	m.SetGroup("web", "a", 7, "standby", []string{"a", "b", "c"}, false, true)
	m.SetClusterMaintenance(false)
	m.Failover("web", "failure")
	m.ObserveDetection("web", 180*time.Millisecond)
	m.ObserveDecision("web", 4*time.Millisecond)
	m.ObserveTakeover("web", 35*time.Millisecond)
	m.ObserveHeartbeatRTT("b", 300*time.Microsecond)
	m.SetPeerAlive("b", true)
	m.SetRaftState("Follower", false, 42)
	m.SetLeaseRemaining("web", 0)
	m.RegisterPacketCounters(
		func() uint64 { return 10 },
		func() uint64 { return 9 },
		func() map[string]uint64 {
			return map[string]uint64{"auth": 1, "replay": 0, "malformed": 0, "unknown_peer": 0}
		},
	)
	m.RegisterQuorumRejected(func() uint64 { return 2 })
	m.RegisterSendErrors(func() uint64 { return 1 })
	m.CheckResult("web", "http", true, 12*time.Millisecond)
	m.HookRun("web", "active", false, 1500*time.Millisecond)
	m.DNSQuery(0, 40*time.Microsecond)
	m.DNSQuery(3, 30*time.Microsecond)
	m.ProxyConn("web", "a")
	m.SetDB("web", []DBMember{{Member: "a", Role: "primary", Pos: 5000}, {Member: "b", Role: "standby", Pos: 4990, Lag: 10, Sync: true}})
}

func gather(t *testing.T, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return mfs
}

// scrape serves one request through the handler, as Prometheus would.
func scrape(t *testing.T, h http.Handler) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
}

// series returns the values of one family keyed by its variable labels
// ("group=web,owner=a"; cluster and node left out).
func series(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, mf := range gather(t, m) {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			var kv []string
			for _, l := range s.GetLabel() {
				if l.GetName() != "cluster" && l.GetName() != "node" {
					kv = append(kv, l.GetName()+"="+l.GetValue())
				}
			}
			var v float64
			switch {
			case s.Gauge != nil:
				v = s.GetGauge().GetValue()
			case s.Counter != nil:
				v = s.GetCounter().GetValue()
			case s.Histogram != nil:
				v = float64(s.GetHistogram().GetSampleCount())
			}
			out[strings.Join(kv, ",")] = v
		}
	}
	return out
}

func TestPromlint(t *testing.T) {
	m := New("c1", "n1")
	exercise(m)
	scrape(t, m.Handler()) // so promhttp_* families exist and are linted too
	problems, err := promlint.NewWithMetricFamilies(gather(t, m)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestDescribeMatchesRegistry(t *testing.T) {
	m := New("c1", "n1")
	exercise(m)
	docs := map[string]Doc{}
	for _, d := range Describe() {
		if _, dup := docs[d.Name]; dup {
			t.Errorf("Describe lists %s twice", d.Name)
		}
		docs[d.Name] = d
	}
	seen := map[string]bool{}
	for _, mf := range gather(t, m) {
		name := mf.GetName()
		if !strings.HasPrefix(name, "baton_") {
			continue
		}
		seen[name] = true
		d, ok := docs[name]
		if !ok {
			t.Errorf("registered %s is missing from Describe()", name)
			continue
		}
		if got := strings.ToLower(mf.GetType().String()); got != d.Type {
			t.Errorf("%s: registered type %s, Describe says %s", name, got, d.Type)
		}
		if mf.GetHelp() != d.Help {
			t.Errorf("%s: registered help %q, Describe says %q", name, mf.GetHelp(), d.Help)
		}
		for _, s := range mf.GetMetric() {
			var labels []string
			consts := map[string]string{}
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "cluster", "node":
					consts[l.GetName()] = l.GetValue()
				default:
					labels = append(labels, l.GetName())
				}
			}
			want := slices.Sorted(slices.Values(d.Labels))
			if !slices.Equal(labels, want) { // the registry sorts label pairs by name
				t.Errorf("%s: series has labels %v, Describe says %v", name, labels, d.Labels)
			}
			if consts["cluster"] != "c1" || consts["node"] != "n1" {
				t.Errorf("%s: const labels %v, want cluster=c1 node=n1", name, consts)
			}
		}
	}
	for name := range docs {
		if !seen[name] {
			t.Errorf("Describe() lists %s, which is not registered (or exercise() misses it)", name)
		}
	}
}

var readmeRow = regexp.MustCompile("^\\| `(baton_[a-z_]+)` \\| ([a-z]+) \\| ([^|]*) \\| [^|]*[^ |][^|]* \\|$")

func TestREADMEDocumentsEveryMetric(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for line := range strings.Lines(string(raw)) {
		line = strings.TrimRight(line, "\n")
		if !strings.HasPrefix(line, "| `baton_") {
			continue
		}
		f := readmeRow.FindStringSubmatch(line)
		if f == nil {
			t.Errorf("README: malformed metric row (want | `name` | type | labels | meaning |): %s", line)
			continue
		}
		if _, dup := rows[f[1]]; dup {
			t.Errorf("README: %s has two rows", f[1])
		}
		rows[f[1]] = f[2:]
	}
	docs := map[string]bool{}
	for _, d := range Describe() {
		docs[d.Name] = true
		row, ok := rows[d.Name]
		if !ok {
			t.Errorf("README has no table row for %s", d.Name)
			continue
		}
		if row[0] != d.Type {
			t.Errorf("README: %s is a %s, the row says %s", d.Name, d.Type, row[0])
		}
		labels := "—"
		if len(d.Labels) > 0 {
			labels = "`" + strings.Join(d.Labels, "`, `") + "`"
		}
		if row[1] != labels {
			t.Errorf("README: %s labels are %s, the row says %s", d.Name, labels, row[1])
		}
	}
	for name := range rows {
		if !docs[name] {
			t.Errorf("README documents %s, which Describe() does not know", name)
		}
	}
	for _, want := range []string{
		`baton_group_owner{group="web"} == 1`,
		`increase(baton_failovers_total[5m]) > 0`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("README lacks the example %s", want)
		}
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	m := New("c1", "n1")
	exercise(m)
	h := m.Handler()
	code, ctype, body := scrape(t, h)
	if code != http.StatusOK {
		t.Fatalf("status %d, body:\n%s", code, body)
	}
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("content type %q, want text/plain", ctype)
	}
	for _, want := range []string{
		"# TYPE baton_group_epoch gauge",
		`baton_group_epoch{cluster="c1",group="web",node="n1"} 7`,
		`baton_group_owner{cluster="c1",group="web",node="n1",owner="a"} 1`,
		`baton_heartbeat_packets_rejected_total{cluster="c1",node="n1",reason="auth"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// A second handler on the same registry must not panic on re-registering
	// the promhttp metrics.
	if code, _, _ := scrape(t, m.Handler()); code != http.StatusOK {
		t.Errorf("second handler: status %d", code)
	}
}

// brokenCollector yields a metric that fails to encode, like a buggy
// collector registered later by another package.
type brokenCollector struct{ d *prometheus.Desc }

func (b brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.d }
func (b brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(b.d, os.ErrInvalid)
}

func TestHandlerLogsErrorsAndServesTheRest(t *testing.T) {
	m := New("c1", "n1")
	exercise(m)
	var logs bytes.Buffer
	m.Log = slog.New(slog.NewTextHandler(&logs, nil))
	m.Registry.MustRegister(brokenCollector{prometheus.NewDesc("broken_thing", "Always fails.", nil, nil)})
	code, _, body := scrape(t, m.Handler())
	if code != http.StatusOK {
		t.Fatalf("status %d, want 200 with the metrics that could be gathered", code)
	}
	if !strings.Contains(body, "baton_group_epoch") {
		t.Errorf("healthy metrics missing from the scrape")
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "broken_thing") {
		t.Errorf("gather error not logged; log:\n%s", logs.String())
	}
}

func TestNoGlobalRegistry(t *testing.T) {
	a, b := New("c1", "a"), New("c1", "b") // a global registration would panic here
	exercise(a)
	exercise(b)
	scrape(t, a.Handler())
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "baton_") || strings.HasPrefix(mf.GetName(), "promhttp_metric_handler_errors") {
			t.Errorf("default registry gained %s", mf.GetName())
		}
	}
	a.SetGroup("web", "x", 99, "active", []string{"x"}, false, true)
	if got := series(t, b, "baton_group_epoch")["group=web"]; got != 7 {
		t.Errorf("node b's epoch changed with node a's: %v", got)
	}
}

func TestGroupOwnerIsOneHot(t *testing.T) {
	m := New("c1", "n1")
	m.SetGroup("web", "a", 1, "standby", []string{"a", "b", "c"}, false, true)
	want := map[string]float64{"group=web,owner=a": 1, "group=web,owner=b": 0, "group=web,owner=c": 0}
	if got := series(t, m, "baton_group_owner"); !equal(got, want) {
		t.Errorf("owner a: got %v, want %v", got, want)
	}

	// c left the group: its series goes away rather than lingering at 0.
	m.SetGroup("web", "b", 2, "active", []string{"a", "b"}, false, true)
	want = map[string]float64{"group=web,owner=a": 0, "group=web,owner=b": 1}
	if got := series(t, m, "baton_group_owner"); !equal(got, want) {
		t.Errorf("owner b: got %v, want %v", got, want)
	}

	m.SetGroup("web", "", 3, "", []string{"a", "b"}, true, false)
	want = map[string]float64{"group=web,owner=a": 0, "group=web,owner=b": 0}
	if got := series(t, m, "baton_group_owner"); !equal(got, want) {
		t.Errorf("no owner: got %v, want %v", got, want)
	}
	want = map[string]float64{"group=web,role=active": 0, "group=web,role=standby": 0, "group=web,role=none": 1}
	if got := series(t, m, "baton_group_role"); !equal(got, want) {
		t.Errorf("role: got %v, want %v", got, want)
	}
	if got := series(t, m, "baton_group_maintenance")["group=web"]; got != 1 {
		t.Errorf("maintenance = %v, want 1", got)
	}
	if got := series(t, m, "baton_group_healthy")["group=web"]; got != 0 {
		t.Errorf("healthy = %v, want 0", got)
	}
	if got := series(t, m, "baton_group_epoch")["group=web"]; got != 3 {
		t.Errorf("epoch = %v, want 3", got)
	}

	// An owner that is not (or no longer) listed as a member is still shown.
	m.SetGroup("web", "z", 4, "standby", []string{"a"}, false, true)
	want = map[string]float64{"group=web,owner=a": 0, "group=web,owner=z": 1}
	if got := series(t, m, "baton_group_owner"); !equal(got, want) {
		t.Errorf("non-member owner: got %v, want %v", got, want)
	}
}

func TestRaftRoleAcceptsRaftStateStrings(t *testing.T) {
	m := New("c1", "n1")
	m.SetRaftState("Leader", true, 42) // raft.Leader.String()
	want := map[string]float64{"role=leader": 1, "role=follower": 0, "role=candidate": 0, "role=shutdown": 0}
	if got := series(t, m, "baton_quorum_role"); !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := series(t, m, "baton_quorum_leader")[""]; got != 1 {
		t.Errorf("leader = %v, want 1", got)
	}
	if got := series(t, m, "baton_quorum_applied_index")[""]; got != 42 {
		t.Errorf("applied = %v, want 42", got)
	}
}

func TestOutcomeCountersStartAtZero(t *testing.T) {
	m := New("c1", "n1")
	m.SetGroup("web", "a", 1, "active", []string{"a"}, false, true)
	f := series(t, m, "baton_failovers_total")
	if len(f) != len(failoverReasons) {
		t.Errorf("failover series after SetGroup: %v, want one per reason at 0", f)
	}
	m.Failover("web", "failure")
	if got := series(t, m, "baton_failovers_total")["group=web,reason=failure"]; got != 1 {
		t.Errorf("failovers{reason=failure} = %v, want 1", got)
	}

	m.CheckResult("web", "http", true, time.Millisecond)
	want := map[string]float64{"check=http,group=web,result=pass": 1, "check=http,group=web,result=fail": 0}
	if got := series(t, m, "baton_check_results_total"); !equal(got, want) {
		t.Errorf("checks: got %v, want %v", got, want)
	}
	m.HookRun("web", "active", false, time.Millisecond)
	want = map[string]float64{"group=web,hook=active,result=error": 1, "group=web,hook=active,result=ok": 0}
	if got := series(t, m, "baton_hook_runs_total"); !equal(got, want) {
		t.Errorf("hooks: got %v, want %v", got, want)
	}
}

func TestScrapeTimeCounters(t *testing.T) {
	m := New("c1", "n1")
	for _, name := range []string{"baton_heartbeat_packets_sent_total", "baton_quorum_connections_rejected_total"} {
		if got := series(t, m, name); len(got) != 0 {
			t.Errorf("%s exported before registration: %v", name, got)
		}
	}
	m.RegisterPacketCounters(func() uint64 { return 1 }, nil, nil)
	// A restarted transport registers again; the newest functions win.
	m.RegisterPacketCounters(func() uint64 { return 5 }, func() uint64 { return 4 },
		func() map[string]uint64 { return map[string]uint64{"replay": 3} })
	m.RegisterQuorumRejected(func() uint64 { return 2 })
	m.RegisterSendErrors(func() uint64 { return 1 })
	for name, want := range map[string]map[string]float64{
		"baton_heartbeat_packets_sent_total":      {"": 5},
		"baton_heartbeat_packets_received_total":  {"": 4},
		"baton_heartbeat_packets_rejected_total":  {"reason=replay": 3},
		"baton_quorum_connections_rejected_total": {"": 2},
	} {
		if got := series(t, m, name); !equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	m.RegisterPacketCounters(nil, nil, nil)
	if got := series(t, m, "baton_heartbeat_packets_sent_total"); len(got) != 0 {
		t.Errorf("nil function still exported: %v", got)
	}
}

func TestBuildInfoReplacesVersion(t *testing.T) {
	m := New("c1", "n1")
	m.SetBuildInfo("v1")
	m.SetBuildInfo("v2")
	want := map[string]float64{"version=v2": 1}
	if got := series(t, m, "baton_build_info"); !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDurations(t *testing.T) {
	m := New("c1", "n1")
	m.SetLeaseRemaining("web", 1500*time.Millisecond)
	if got := series(t, m, "baton_lease_remaining_seconds")["group=web"]; got != 1.5 {
		t.Errorf("lease = %v, want 1.5", got)
	}
	m.SetLeaseRemaining("web", -time.Second)
	if got := series(t, m, "baton_lease_remaining_seconds")["group=web"]; got != 0 {
		t.Errorf("negative lease = %v, want 0", got)
	}
	m.ObserveDetection("web", -time.Second) // a stepped wall clock
	for _, mf := range gather(t, m) {
		if mf.GetName() == "baton_failover_detection_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleSum() != 0 || h.GetSampleCount() != 1 {
				t.Errorf("negative duration: sum %v count %v, want 0 and 1", h.GetSampleSum(), h.GetSampleCount())
			}
			var bounds []float64
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			if !slices.Equal(bounds, failoverBuckets) {
				t.Errorf("buckets %v, want %v", bounds, failoverBuckets)
			}
		}
	}
}

func TestForget(t *testing.T) {
	m := New("c1", "n1")
	exercise(m)
	m.SetGroup("db", "a", 1, "active", []string{"a"}, false, true)
	m.ForgetGroup("web")
	m.ForgetPeer("b")
	for _, mf := range gather(t, m) {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if (l.GetName() == "group" && l.GetValue() == "web") || (l.GetName() == "peer" && l.GetValue() == "b") {
					t.Errorf("%s still has a series for %s=%s", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	if got := series(t, m, "baton_group_epoch")["group=db"]; got != 1 {
		t.Errorf("db epoch = %v, want 1 (other groups untouched)", got)
	}
	// The group comes back cleanly.
	m.SetGroup("web", "b", 9, "standby", []string{"a", "b"}, false, true)
	want := map[string]float64{"group=web,owner=a": 0, "group=web,owner=b": 1, "group=db,owner=a": 1}
	if got := series(t, m, "baton_group_owner"); !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestConcurrentUse runs every method from several goroutines while scraping;
// run with -race. It also checks that no scrape ever sees two owners.
func TestConcurrentUse(t *testing.T) {
	m := New("c1", "n1")
	h := m.Handler()
	members := []string{"a", "b", "c"}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				owner := members[(i+j)%len(members)]
				m.SetGroup("web", owner, uint64(j), []string{"active", "standby", "none"}[j%3], members, j%2 == 0, j%3 == 0)
				m.SetRaftState([]string{"leader", "follower", "candidate"}[j%3], j%3 == 0, uint64(j))
				m.Failover("web", "failure")
				m.ObserveDetection("web", time.Duration(j)*time.Millisecond)
				m.ObserveDecision("web", time.Millisecond)
				m.ObserveTakeover("web", time.Millisecond)
				m.ObserveHeartbeatRTT(owner, time.Microsecond)
				m.SetPeerAlive(owner, j%2 == 0)
				m.SetLeaseRemaining("web", time.Second)
				m.SetClusterMaintenance(j%2 == 0)
				m.CheckResult("web", "http", j%2 == 0, time.Millisecond)
				m.HookRun("web", "active", j%2 == 0, time.Millisecond)
				m.SetBuildInfo("v1")
				m.RegisterPacketCounters(func() uint64 { return 1 }, func() uint64 { return 1 }, nil)
				m.RegisterQuorumRejected(func() uint64 { return 0 })
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if code, _, _ := scrape(t, h); code != http.StatusOK {
				t.Errorf("scrape status %d", code)
			}
			var ones int
			for _, v := range series(t, m, "baton_group_owner") {
				if v == 1 {
					ones++
				}
			}
			if ones > 1 {
				t.Errorf("a scrape saw %d owners", ones)
			}
		}
	})
	wg.Wait()
}

func equal(a, b map[string]float64) bool { return maps.Equal(a, b) }
