package ui

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/baton-ha/baton/internal/agent"
	"github.com/baton-ha/baton/internal/api"
	"github.com/baton-ha/baton/internal/core"
	"github.com/baton-ha/baton/internal/health"
	"github.com/baton-ha/baton/internal/quorum"
)

// fixedBackend serves one made-up status: what a real loopback cluster
// cannot easily show (a data-aware group, an active-active group's units,
// a node without a quorum leader).
type fixedBackend struct {
	st      core.Status
	ev      []quorum.Event
	stopped chan struct{}
}

func (f *fixedBackend) Status(*http.Request) (core.Status, error)    { return f.st, nil }
func (f *fixedBackend) Events(*http.Request) ([]quorum.Event, error) { return f.ev, nil }
func (f *fixedBackend) Ready() bool                                  { return false }
func (f *fixedBackend) TransferLeadership(*http.Request, string) error {
	return errors.New("not in this test")
}
func (f *fixedBackend) Token() string             { return "" }
func (f *fixedBackend) LeaderAPI() (string, bool) { return "", false }
func (f *fixedBackend) Switchover(*http.Request, string, string) (agent.SwitchoverResult, error) {
	return agent.SwitchoverResult{}, errors.New("not in this test")
}
func (f *fixedBackend) Failover(*http.Request, string, string) (agent.SwitchoverResult, error) {
	return agent.SwitchoverResult{}, errors.New("not in this test")
}
func (f *fixedBackend) Maintenance(*http.Request, string, bool) error {
	return errors.New("not in this test")
}
func (f *fixedBackend) Endpoints(*http.Request, string) (core.Endpoints, error) {
	return core.Endpoints{}, errors.New("not in this test")
}
func (f *fixedBackend) MetricsHandler() http.Handler              { return http.NotFoundHandler() }
func (f *fixedBackend) AppliedIndex() uint64                      { return 0 }
func (f *fixedBackend) WaitApplied(context.Context, uint64) error { return nil }
func (f *fixedBackend) ReadIndex(context.Context) (uint64, error) {
	return 0, errors.New("not in this test")
}
func (f *fixedBackend) Crash()                   {}
func (f *fixedBackend) Changed() <-chan struct{} { return nil }
func (f *fixedBackend) Stopped() <-chan struct{} { return f.stopped }
func (f *fixedBackend) UIEnabled() bool          { return true }
func (f *fixedBackend) RemoveVoter(*http.Request, string) (agent.NodeRemoval, error) {
	return agent.NodeRemoval{}, errors.New("the dashboard test removes no node")
}
func (f *fixedBackend) Reload(*http.Request) (agent.ReloadResult, error) {
	return agent.ReloadResult{}, errors.New("the dashboard test does not reload")
}

func TestDashboardShowsDataAwareAndActiveActiveGroups(t *testing.T) {
	ctx := browser(t)
	now := time.Now()
	b := &fixedBackend{stopped: make(chan struct{}), st: core.Status{
		Cluster: "prod", Node: "n1", Leader: "", RaftRole: "follower", Profile: "default", LeaseMs: 400, Generated: now,
		Nodes: []core.NodeStatus{
			{Name: "n1", Address: "10.0.0.11", API: "10.0.0.11:7480", Self: true, Alive: true, RaftRole: "follower"},
			{Name: "n2", Address: "10.0.0.12", API: "10.0.0.12:7480", Alive: false, LastSeenMs: 5200},
			{Name: "n3", Address: "10.0.0.13", API: "10.0.0.13:7480", Alive: false, LastSeenMs: 5100, Witness: true},
		},
		Groups: []core.GroupStatus{
			{Name: "db", Mode: "active-passive", Standby: "warm", Owner: "n1", Epoch: 7, Role: "active", LeaseMs: 300,
				SyncMode: "on", Sync: []string{"n2"}, Healthy: true, Members: []core.MemberStatus{
					{Node: "n1", Priority: 150, Alive: true, Healthy: true, Role: "active", DB: "primary", Pos: 50331744},
					{Node: "n2", Priority: 100, Alive: false, Healthy: true, Role: "standby", DB: "standby", Pos: 49283072, LagB: 1048672, SyncRec: true},
				},
				Checks: []health.CheckState{{Name: "tcp[0]", Type: "tcp", Healthy: false,
					Last: health.Result{Detail: "dial tcp 127.0.0.1:5432: connect: connection refused", At: now}}}},
			{Name: "edge", Mode: "active-active", Standby: "hot", Epoch: 3, Role: "active", Owners: []string{"n1", "n2"},
				Members: []core.MemberStatus{{Node: "n1", Priority: 100, Alive: true, Healthy: true, Role: "active"},
					{Node: "n2", Priority: 100, Role: "active"}},
				Units: []core.UnitStatus{
					{Name: "edge[0]", VIP: "10.0.0.101/24", Owner: "n1", Epoch: 2, Role: "active", LeaseMs: 350},
					{Name: "edge[1]", VIP: "10.0.0.102/24", Owner: "n2", Epoch: 1, Role: "standby"},
				}},
		},
	}}
	b.ev = []quorum.Event{{Seq: 1, TimeUnixMs: now.Add(-time.Hour).UnixMilli(), Group: "db", Epoch: 7, From: "n2", To: "n1",
		Reason: quorum.ReasonFailure, DetectMs: 420, DecideMs: 12, TakeoverMs: 180, TakeoverRecorded: true, LostBytes: 4096}}
	srv := httptest.NewServer(api.New(b, slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { close(b.stopped); srv.Close() })

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/ui/")); err != nil {
		t.Fatal(err)
	}
	row := func(group, member string) string {
		return `document.querySelector('article[data-group="` + group + `"] tr[data-member="` + member + `"]')?.innerText ?? ""`
	}
	poll(t, ctx, 5*time.Second, "the database roles and positions",
		`(() => { const r = `+row("db", "n1")+`; return r.includes("primary") && r.includes("50331744"); })()`)
	poll(t, ctx, 5*time.Second, "the standby's lag and sync flag",
		`(() => { const r = `+row("db", "n2")+`; return r.includes("1.0 MiB") && r.includes("sync standby") && r.includes("✕ no"); })()`)
	poll(t, ctx, 5*time.Second, "the synchronous standby", `document.querySelector('article[data-group="db"]').innerText.includes("Synchronous standby: n2")`)
	poll(t, ctx, 5*time.Second, "the failing check's detail",
		`document.querySelector('article[data-group="db"] .checks').innerText.includes("✗ fail tcp[0] — dial tcp 127.0.0.1:5432: connect: connection refused")`)
	poll(t, ctx, 5*time.Second, "each unit's owner", `document.getElementById("owner-edge[0]")?.textContent === "n1" && document.getElementById("owner-edge[1]")?.textContent === "n2"`)
	poll(t, ctx, 5*time.Second, "the group's owners", `document.getElementById("owner-edge")?.textContent === "n1, n2"`)
	poll(t, ctx, 5*time.Second, "a lease bar for the unit this node owns", `document.querySelector('.lease[data-lease="edge[0]"]') !== null`)
	poll(t, ctx, 5*time.Second, "the no-leader and partition banners",
		`document.getElementById("banner-leader") !== null && document.getElementById("banner-partition")?.innerText.includes("hears 1 of 3 nodes")`)
	poll(t, ctx, 5*time.Second, "the timeline entry's phases and possible loss",
		`(() => { const e = document.querySelector('#timeline .timeline-entry[data-seq="1"]')?.innerText ?? ""; return e.includes("detect 420 ms · decide 12 ms · takeover 180 ms") && e.includes("may have lost 4.0 KiB"); })()`)

	// A refused action shows the API's error as it came.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token-input"), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the switchover button", `document.querySelector('button[data-action="switchover"][data-group="db"]') !== null`)
	// An active-active group moves unit by unit: a button per unit, none for the group.
	poll(t, ctx, 5*time.Second, "a switchover button per unit",
		`document.querySelector('button[data-action="switchover"][data-group="edge[1]"]') !== null && document.querySelector('button[data-action="switchover"][data-group="edge"]') === null`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[data-action="switchover"][data-group="db"]`))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the confirmation", `document.getElementById("confirm").open`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("confirm-ok"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the API's refusal", `document.querySelector(".result.error #result-body")?.textContent.startsWith("403") && document.getElementById("result-body").textContent.includes("mutations are disabled")`)
	screenshot(t, ctx, filepath.Join(shotsDir(t), "refused-action.png"))
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("result-close")), chromedp.Click(chromedp.ID("token-clear"))); err != nil {
		t.Fatal(err)
	}

	// Dark mode follows the system.
	light := eval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	dark := eval[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
	if light == dark {
		t.Errorf("background %s in both light and dark mode", light)
	}
	screenshot(t, ctx, filepath.Join(shotsDir(t), "data-aware-dark.png"))
}
