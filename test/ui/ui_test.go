// Package ui tests the dashboard (/ui/) and its event stream against a real
// three-agent loopback cluster: the page in headless Chromium, driven with
// chromedp, must follow a kill -9 failover live and run a switchover with
// the API token; many streams must not slow the heartbeats.
//
// go test ./test/ui -run Dashboard -ui.docs   also writes docs/dashboard.png
package ui

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/baton-ha/baton/internal/proctest"
)

var (
	bin   string
	docs  = flag.Bool("ui.docs", false, "also write the owner's view after the failover and switchover to docs/dashboard.png")
	shots = flag.String("ui.shots", "", "keep the screenshots in this directory (default: the test's temporary directory)")
)

// shotsDir is where a test's screenshots go.
func shotsDir(t *testing.T) string {
	if *shots != "" {
		return *shots
	}
	return t.TempDir()
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(proctest.RunWithBinary(m, &bin))
}

// liveness bounds what takes well under a second: a correctness test on a
// shared machine, not a benchmark.
const liveness = 15 * time.Second

// startCluster starts n1, n2 (members of group web) and the witness w1. The
// group's check fails on a node while flags/fail-<node> exists.
func startCluster(t *testing.T) (c *proctest.Cluster, flags string) {
	t.Helper()
	flags = t.TempDir()
	script := fmt.Sprintf(`if [ -e %s/fail-$BATON_NODE ]; then echo "flag file says fail"; exit 1; fi`, flags)
	c = proctest.Start(t, bin, proctest.Spec{Members: []string{"n1", "n2"}, Witness: "w1",
		GroupExtra: fmt.Sprintf("    checks: [{type: exec, command: [/bin/sh, -c, %q], interval: 100ms, rise: 1}]\n", script)})
	if owner, epoch, err := c.WaitOwner("w1", liveness); err != nil || owner != "n1" || epoch != 1 {
		t.Fatalf("initial owner %s@%d (%v), want n1@1", owner, epoch, err)
	}
	return c, flags
}

// browser starts headless Chromium with the flags a closed network needs
// (no QUIC, no component or sync traffic, or it hangs) and a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIP: chromium is not installed (Debian: apt-get install chromium; scripts/test installs it as root): the dashboard is not tested in a browser")
	}
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-extensions", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, whose life is then that of ctx (a
	// shorter context would end it): bound the wait here, so a hang fails loudly.
	started := make(chan error, 1)
	go func() { _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`)); started <- err }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", path, err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start within 30s (a closed network without --disable-quic etc. makes it hang)", path)
	}
	return ctx
}

// eval runs a JavaScript expression on the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// poll waits until the JavaScript expression is truthy on the page, up to d,
// and returns how long that took.
func poll(t *testing.T, ctx context.Context, d time.Duration, what, js string) time.Duration {
	t.Helper()
	t0 := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(d))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText.slice(0, 1500)`))
		t.Fatalf("the page did not show %s within %v: %v\npage text:\n%s", what, d, err, body)
	}
	return time.Since(t0)
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

func TestDashboardFollowsFailoverAndSwitchesOver(t *testing.T) {
	ctx := browser(t) // skips without chromium, before starting a cluster
	c, flags := startCluster(t)
	shots := shotsDir(t)

	// The page is served by the witness, which survives the owner's death.
	url := "http://" + c.APIs["w1"] + "/ui/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	st, err := c.Status("w1")
	if err != nil {
		t.Fatal(err)
	}
	want := st.Groups[0].Owner
	poll(t, ctx, 5*time.Second, "the owner from /v1/status ("+want+")",
		fmt.Sprintf(`document.getElementById("owner-web")?.textContent === %q`, want))
	if got := eval[string](t, ctx, `document.getElementById("served-by").textContent`); got != "w1" {
		t.Errorf("served-by shows %q, want w1", got)
	}
	poll(t, ctx, 5*time.Second, "the initial timeline entry", `document.querySelector('#timeline .timeline-entry[data-to="n1"]') !== null`)
	// Read-only without a token: no action buttons at all.
	if n := eval[int](t, ctx, `document.querySelectorAll("[data-action]").length`); n != 0 {
		t.Fatalf("%d switchover/maintenance buttons in the page without a token, want none", n)
	}
	screenshot(t, ctx, filepath.Join(shots, "before-failover.png"))
	entries := eval[int](t, ctx, `document.querySelectorAll("#timeline .timeline-entry").length`)

	// kill -9 the owner: the open page must show the new owner and the new
	// timeline entry by itself (no reload) within 2 s.
	killed := time.Now()
	if err := c.Kill("n1"); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 10*time.Second, "n2 as the new owner", `document.getElementById("owner-web")?.textContent === "n2"`)
	ownerAfter := time.Since(killed)
	poll(t, ctx, 10*time.Second, "a new timeline entry n1 → n2",
		fmt.Sprintf(`document.querySelectorAll("#timeline .timeline-entry").length > %d && document.querySelector('#timeline .timeline-entry[data-to="n2"]') !== null`, entries))
	entryAfter := time.Since(killed)
	t.Logf("kill -9 of n1 → page shows owner n2 after %v, the timeline entry after %v",
		ownerAfter.Round(time.Millisecond), entryAfter.Round(time.Millisecond))
	if entryAfter > 2*time.Second {
		t.Errorf("the page took %v after kill -9 to show the new owner and timeline entry, want within 2s", entryAfter.Round(time.Millisecond))
	}
	if st, err := c.Status("w1"); err != nil || st.Groups[0].Owner != "n2" {
		t.Errorf("/v1/status on w1 after the failover: %+v (%v), the page shows n2", st.Groups, err)
	}
	poll(t, ctx, 5*time.Second, "n1 dead in the nodes table", `document.querySelector('#nodes tr[data-node="n1"]').innerText.includes("✕ dead")`)
	// The new entry's phases (detection is measured for a failure).
	poll(t, ctx, 5*time.Second, "the failover's detection time", `document.querySelector('#timeline .timeline-entry.failure .phase-text')?.textContent.includes("detect")`)
	screenshot(t, ctx, filepath.Join(shots, "after-failover.png"))

	// n1 comes back as a standby; the page sees it alive.
	if err := c.Start("n1"); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, liveness, "n1 alive and healthy again",
		`(() => { const r = document.querySelector('tr[data-member="n1"]'); return r && r.innerText.includes("● yes") && r.innerText.includes("✓ yes"); })()`)

	// With the token the buttons appear; a confirmed switchover to n1 shows
	// the API's answer and the page follows.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token-input"), proctest.Token),
		// A click, as a person would: form.submit() skips the submit handler.
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the switchover button after pasting the token", `document.querySelector('button[data-action="switchover"][data-group="web"]') !== null`)
	if eval[string](t, ctx, `sessionStorage.getItem("baton.apiToken")`) != proctest.Token {
		t.Errorf("the token is not in session storage")
	}
	if strings.Contains(eval[string](t, ctx, `location.href`), proctest.Token) {
		t.Errorf("the token is in the URL")
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("to-web"), "n1"),
		chromedp.Click(chromedp.CSS(`button[data-action="switchover"][data-group="web"]`)),
	); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the confirmation dialog", `document.getElementById("confirm").open && document.getElementById("confirm-text").textContent.includes("n1")`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("confirm-ok"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, liveness, "the API's answer to the switchover", `document.getElementById("result-body")?.textContent.startsWith("200")`)
	answer := eval[string](t, ctx, `document.getElementById("result-body").textContent`)
	if !strings.Contains(answer, `"to": "n1"`) {
		t.Errorf("switchover answer %q, want it to name n1 as the new owner", answer)
	}
	poll(t, ctx, 5*time.Second, "n1 as owner after the switchover", `document.getElementById("owner-web")?.textContent === "n1"`)
	poll(t, ctx, 5*time.Second, "the switchover in the timeline", `document.querySelector('#timeline .timeline-entry.switchover[data-to="n1"]') !== null`)
	if st, err := c.Status("w1"); err != nil || st.Groups[0].Owner != "n1" {
		t.Errorf("/v1/status after the switchover: owner %v (%v), want n1", st.Groups, err)
	}

	// Maintenance on and off for the group, each confirmed, each answered.
	for _, on := range []bool{true, false} {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("result-close")),
			chromedp.Click(chromedp.CSS(`button[data-action="maintenance"][data-group="web"]`))); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, 5*time.Second, "the maintenance confirmation", `document.getElementById("confirm").open`)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("confirm-ok"))); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, liveness, "the API's answer to maintenance", fmt.Sprintf(
			`document.getElementById("result-body")?.textContent.startsWith("200") && document.getElementById("result-body").textContent.includes('"maintenance": %v')`, on))
		poll(t, ctx, 5*time.Second, fmt.Sprintf("the group's maintenance badge %v", on), fmt.Sprintf(
			`document.querySelector('article[data-group="web"]').innerText.includes("⚙ maintenance") === %v`, on))
	}

	// Locking again removes the buttons.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("token-clear"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "no action buttons after locking", `document.querySelectorAll("[data-action]").length === 0`)

	// The owner's own page counts its lease down; this is the picture for the docs.
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+c.APIs["n1"]+"/ui/")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "a lease countdown on the owner's page",
		`(() => { const e = document.querySelector('.lease[data-lease="web"] .lease-text'); return e && / ms left/.test(e.textContent); })()`)
	poll(t, ctx, 5*time.Second, "three timeline entries", `document.querySelectorAll("#timeline .timeline-entry").length >= 3`)
	// Zoomed to fit, the three changes are spread over the strip, not
	// squeezed against "now" at its right end.
	eval[chromedp.Void](t, ctx, `setWindow("fit")`)
	poll(t, ctx, 5*time.Second, "the entries spread over the zoomed strip",
		`(() => { const m = [...document.querySelectorAll("#strip .mark")].map((e) => parseFloat(e.style.left)); return m.length >= 3 && Math.min(...m) < 50; })()`)
	docsShot := filepath.Join(shots, "owner-view.png")
	screenshot(t, ctx, docsShot)
	if *docs {
		root, err := proctest.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		png, _ := os.ReadFile(docsShot)
		if err := os.WriteFile(filepath.Join(root, "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote docs/dashboard.png")
	}

	// The standby's own page shows its check failing; the probe's output
	// only once the token is pasted (it may hold credentials), and it keeps
	// that detail once the check passes again.
	fail := filepath.Join(flags, "fail-n2")
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+c.APIs["n2"]+"/ui/")); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, liveness, "n2's check failing with its output hidden (no token on this page)",
		`(() => { const c = document.querySelector('article[data-group="web"] .checks'); return c && c.innerText.includes("✗ fail") && c.innerText.includes("output hidden") && !c.innerText.includes("flag file says fail"); })()`)
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token-input"), proctest.Token),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, liveness, "n2's check failing with its detail",
		`(() => { const c = document.querySelector('article[data-group="web"] .checks'); return c && c.innerText.includes("✗ fail") && c.innerText.includes("flag file says fail"); })()`)
	os.Remove(fail)
	poll(t, ctx, liveness, "n2's check passing with the last failure kept",
		`(() => { const c = document.querySelector('article[data-group="web"] .checks'); return c && c.innerText.includes("✓ pass") && c.innerText.includes("last failure") && c.innerText.includes("flag file says fail"); })()`)

	// On a phone-sized screen nothing sticks out sideways (tables scroll in
	// their own boxes).
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+c.APIs["n1"]+"/ui/"),
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, 5*time.Second, "the group on the phone", `document.getElementById("owner-web")?.textContent === "n1"`)
	poll(t, ctx, 5*time.Second, "a page no wider than a 390 px phone", `document.documentElement.scrollWidth <= window.innerWidth + 1`)
	screenshot(t, ctx, filepath.Join(shots, "phone.png"))

	// Cut the served node off: kill the others. Its page must say that its
	// view may be stale.
	for _, n := range []string{"n2", "w1"} {
		if err := c.Kill(n); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, ctx, liveness, "the partition banner on n1", `document.getElementById("banner-partition") !== null`)
	poll(t, ctx, liveness, "the no-leader banner on n1", `document.getElementById("banner-leader") !== null`)
	screenshot(t, ctx, filepath.Join(shots, "partitioned-phone.png"))
}

// heartbeatRTT reads the mean heartbeat round-trip time a node measured
// (all peers) from its /metrics, as a running sum and count.
func heartbeatRTT(t *testing.T, api string) (sum float64, count float64) {
	t.Helper()
	resp, err := http.Get("http://" + api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	re := regexp.MustCompile(`^baton_heartbeat_rtt_seconds_(sum|count)\{.*\} (\S+)$`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			if m[1] == "sum" {
				sum += v
			} else {
				count += v
			}
		}
	}
	return sum, count
}

func meanRTT(t *testing.T, api string, d time.Duration) time.Duration {
	s0, c0 := heartbeatRTT(t, api)
	time.Sleep(d)
	s1, c1 := heartbeatRTT(t, api)
	if c1 == c0 {
		t.Fatalf("no heartbeat round trip measured on %s in %v", api, d)
	}
	return time.Duration((s1 - s0) / (c1 - c0) * float64(time.Second))
}

// 100 browsers watching the owner must not slow its heartbeats: the loop
// signals one hub, which snapshots at most every 100 ms whatever the number
// of streams.
func TestManyStreamsCostNoHeartbeatDelay(t *testing.T) {
	c, _ := startCluster(t)
	api := c.APIs["n1"] // the owner: it streams the most (lease renewals)
	const window = 3 * time.Second
	base := meanRTT(t, api, window)

	const streams = 100
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := 0
	// 100 browsers come from many addresses: spread the streams over four
	// loopback sources, as an agent may cap the connections of one address.
	var clients []*http.Client
	for i := range 4 {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src}).DialContext, MaxConnsPerHost: 0}
		t.Cleanup(tr.CloseIdleConnections)
		clients = append(clients, &http.Client{Transport: tr})
	}
	for i := range streams {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+api+"/v1/events/stream", nil)
		resp, err := clients[i%len(clients)].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				if sc.Text() == "event: status" {
					mu.Lock()
					statuses++
					mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	loaded := meanRTT(t, api, window)
	mu.Lock()
	got := statuses
	mu.Unlock()
	t.Logf("heartbeat RTT on n1: %v without streams, %v with %d streams (%d status frames received in %v)",
		base.Round(time.Microsecond), loaded.Round(time.Microsecond), streams, got, window)
	if got < streams {
		t.Fatalf("%d status frames over %d streams, want at least one each", got, streams)
	}
	// Generous: the machine is shared. A loop that did per-client work
	// would add milliseconds per heartbeat with 100 clients.
	if limit := time.Duration(math.Max(float64(3*base), float64(base+5*time.Millisecond))); loaded > limit {
		t.Errorf("heartbeat RTT %v with %d streams, want at most %v (baseline %v)", loaded, streams, limit, base)
	}
	if st, err := c.Status("w1"); err != nil || st.Groups[0].Owner != "n1" || st.Groups[0].Epoch != 1 {
		t.Errorf("ownership changed while streaming: %+v (%v)", st.Groups, err)
	}
}
