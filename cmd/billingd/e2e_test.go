package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// TestDashboardInBrowser drives the dashboard (httpapi/ui) in Debian's headless Chromium against
// a real billingd (real PostgreSQL and Redis, test clock on), the way a person would: a wrong
// key, the right one, the empty state, the overview's MRR against the API's, the subscription
// list and its filter, a subscription's replay slider moved with the keyboard, a command run
// elsewhere appearing without a reload, the live feed, and the API going down. It writes a
// screenshot of each page at 1280 and 390 pixels wide to $E2E_ARTIFACTS (default
// .data/e2e-artifacts/ at the repository's root).
//
// Without Chromium the test is skipped, unless BILLING_E2E_REQUIRED=1 (make test sets it, after
// .ci/services --ensure-chromium installed it).
func TestDashboardInBrowser(t *testing.T) {
	chromium := findChromium(t)
	artifacts := artifactsDir(t)
	os.Remove(filepath.Join(artifacts, "failure.png")) // from an earlier run
	ctx := context.Background()

	// billingd, as main runs it.
	dbURL, redisURL := testenv.DatabaseURL(t), testenv.RedisURL(t)
	_, prefix := testenv.Redis(t)
	addr := freeAddr(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": redisURL, "REDIS_PREFIX": prefix,
		"STREAM_PARTITIONS": "2", "HTTP_ADDR": addr, "LOG_LEVEL": "error", "CONSUMER_NAME": "e2e",
		"BILLING_TEST_CLOCK": "true"}
	runCtx, stopServer := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, func(k string) string { return env[k] }) }()
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			stopServer()
			if err := <-done; err != nil {
				t.Errorf("billingd: %v", err)
			}
		})
	}
	defer stop()
	waitReady(t, addr)
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, adminKey, err := httpapi.CreateAPIKey(ctx, db, "e2e-admin", httpapi.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	_, readKey, err := httpapi.CreateAPIKey(ctx, db, "e2e-finance", httpapi.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	api := apiClient{t: t, base: base, key: adminKey}

	b := newBrowser(t, chromium, artifacts)

	// No key yet: the key form. A wrong key is refused with a 401 message.
	b.do(chromedp.Navigate(base + "/"))
	b.waitFor("the key form", `document.querySelector('#api-key') !== null`)
	b.do(chromedp.SendKeys(chromedp.ID("api-key"), "bk_not_a_real_key"), chromedp.Click(chromedp.CSS(".connect-form button[type=submit]")))
	b.waitFor("the wrong-key message", `(() => { const e = document.querySelector('#api-key-error');
		return e && !e.hidden && e.textContent.includes('401'); })()`)
	b.shoot("01-wrong-key")

	// The right (read-only) key, on an empty service: designed empty states.
	b.eval(`document.querySelector('#api-key').value = ''`)
	b.do(chromedp.SendKeys(chromedp.ID("api-key"), readKey),
		chromedp.Click(chromedp.CSS(".connect-form button[type=submit]")))
	b.waitFor("the empty overview", `document.querySelector('[data-state="empty"]') !== null`)
	if got := b.text(`[data-kpi="mrr"] .kpi-value`); !strings.Contains(got, "0.00") {
		t.Errorf("empty service's MRR shows %q, want $0.00", got)
	}
	if key := b.eval(`sessionStorage.getItem('billing.apiKey')`); key != readKey {
		t.Errorf("sessionStorage holds %q, want the key entered", key)
	}
	if loc := b.eval(`location.href`); strings.Contains(loc, readKey) {
		t.Errorf("the key is in the address %q", loc)
	}
	b.shoot("02-overview-empty")

	// Data, through the API: s1 goes starter × 2 → pro × 2 → pro × 5 (versions 1, 2, 3).
	// Each subscription pays with the sandbox's card that always succeeds (upgrades charge it).
	create := func(customer, plan string, seats, trialDays int) string {
		var s struct{ ID string }
		if status := api.post("/v1/subscriptions", fmt.Sprintf(`{"customer_id": %q, "plan_id": %q, "seats": %d, "trial_days": %d, "payment_method": "pm_card_ok"}`,
			customer, plan, seats, trialDays), &s); status != http.StatusCreated {
			t.Fatalf("create %s: %d", customer, status)
		}
		return s.ID
	}
	mustPost := func(path, body string) {
		if status := api.post(path, body, nil); status != http.StatusOK {
			t.Fatalf("POST %s: %d", path, status)
		}
	}
	s1 := create("cus_e2e_1", "starter_monthly", 2, 0)
	mustPost("/v1/subscriptions/"+s1+"/change-plan", `{"plan_id": "pro_monthly"}`)
	mustPost("/v1/subscriptions/"+s1+"/seats", `{"seats": 5}`)
	s2 := create("cus_e2e_2", "business_monthly", 3, 0)
	create("cus_e2e_3", "pro_monthly", 1, 14)
	s4 := create("cus_e2e_4", "pro_monthly", 2, 0)
	mustPost("/v1/subscriptions/"+s4+"/pause", "")
	waitProjected(t, api, 4)
	var summary struct {
		MRR int64 `json:"mrr"`
	}
	if api.get("/v1/dashboard/summary", &summary) != http.StatusOK {
		t.Fatal("GET /v1/dashboard/summary failed")
	}
	if want := int64(5*4900 + 3*9900); summary.MRR != want {
		t.Fatalf("the API's MRR is %d, want %d: the data above did not land", summary.MRR, want)
	}

	// The subscriptions page (the header's link), then back to the overview: its MRR is the API's.
	b.do(chromedp.Click(chromedp.CSS(`[data-nav="subscriptions"]`)))
	b.waitFor("four subscriptions listed", `document.querySelectorAll('.subs-table tbody tr').length === 4`)
	b.shoot("03-subscriptions")
	b.do(chromedp.SetValue(chromedp.ID("filter-status"), "paused"))
	b.eval(`document.querySelector('#filter-status').dispatchEvent(new Event('change')) && ''`)
	b.waitFor("the paused filter", fmt.Sprintf(`(() => { const rows = document.querySelectorAll('.subs-table tbody tr');
		return rows.length === 1 && rows[0].dataset.id === %q; })()`, s4))
	if got := b.eval(`location.hash`); !strings.Contains(got, "status=paused") {
		t.Errorf("the filter is not in the address: %q", got)
	}

	b.do(chromedp.Click(chromedp.CSS(`[data-nav="overview"]`)))
	b.waitFor("the overview's MRR", `document.querySelector('[data-kpi="mrr"] .kpi-value')?.dataset.value > 0`)
	if got := b.eval(`document.querySelector('[data-kpi="mrr"] .kpi-value').dataset.value`); got != fmt.Sprint(summary.MRR) {
		t.Errorf("the overview's MRR is %s minor units, the API's %d", got, summary.MRR)
	}
	if got, want := b.text(`[data-kpi="mrr"] .kpi-value`), "$542.00"; got != want {
		t.Errorf("the overview shows MRR %q, want %q", got, want)
	}
	b.waitFor("the chart", `document.querySelector('.chart canvas') !== null && document.querySelectorAll('.u-legend tr').length === 7`)
	b.waitFor("the plan breakdown", `document.querySelectorAll('.plans-table tbody tr').length === 2`)
	b.shoot("04-overview")

	// One subscription: its state now, and its history replayed with the keyboard.
	b.do(chromedp.Navigate(base + "/#/subscriptions/" + s1))
	b.waitFor("the replay at the latest version", `document.querySelector('.state-table')?.dataset.version === '3'`)
	assertField := func(field, want string, changed bool) {
		t.Helper()
		sel := fmt.Sprintf(`.state-table tr[data-field=%q]`, field)
		if got := b.text(sel + ` td.value`); got != want {
			t.Errorf("replay: %s shows %q, want %q", field, got, want)
		}
		if got := b.eval(`document.querySelector('` + sel + `').dataset.changed`); got != fmt.Sprint(changed) {
			t.Errorf("replay: %s highlighted as changed = %s, want %v", field, got, changed)
		}
	}
	assertField("plan_id", "pro_monthly", false)
	assertField("seats", "5", true)
	for _, panel := range []string{"invoices", "entitlements"} {
		// Until main serves them, these panels say "not available"; once it does, they show data.
		// Either way they must not be stuck loading or failed.
		sel := fmt.Sprintf(`[data-panel=%q]`, panel)
		b.waitFor(panel+" panel settled", `!document.querySelector('`+sel+` .state-loading')`)
		if b.eval(`String(document.querySelector('`+sel+` [data-state="error"]') !== null)`) == "true" {
			t.Errorf("the %s panel shows an error: %s", panel, b.text(sel))
		}
	}
	b.do(chromedp.Focus(chromedp.ID("replay-version")), chromedp.KeyEvent(kb.Home))
	b.waitFor("the replay at version 1", `document.querySelector('.state-table')?.dataset.version === '1'`)
	assertField("plan_id", "starter_monthly", false)
	assertField("seats", "2", false)
	b.do(chromedp.KeyEvent(kb.ArrowRight))
	b.waitFor("the replay at version 2", `document.querySelector('.state-table')?.dataset.version === '2'`)
	assertField("plan_id", "pro_monthly", true)
	assertField("seats", "2", false)
	if got := b.eval(`document.querySelector('.timeline li[aria-current="step"]')?.dataset.version ?? ''`); got != "2" {
		t.Errorf("the timeline marks version %q as shown, want 2", got)
	}
	if got := b.text(`#event-v2 .event-meta`); !strings.Contains(got, "e2e-admin") {
		t.Errorf("event 2's metadata %q does not name its actor e2e-admin", got)
	}
	b.shoot("05-subscription-replay")

	// A command from elsewhere: its event appears without a reload.
	b.eval(`window.e2eNoReload = 'yes'`)
	mustPost("/v1/subscriptions/"+s1+"/seats", `{"seats": 7}`)
	b.waitFor("the new event in the timeline", `document.querySelector('#event-v4[data-type="subscription.seats_changed"]') !== null`)
	b.waitFor("the current state updated", `[...document.querySelectorAll('[data-current] > div')]
		.some((d) => d.querySelector('dt').textContent === 'Seats' && d.querySelector('dd').textContent === '7')`)
	if b.eval(`window.e2eNoReload`) != "yes" {
		t.Error("the page reloaded to show the new event")
	}
	if got := b.eval(`document.querySelector('#replay-version').max`); got != "4" {
		t.Errorf("the slider's max is %s after the new event, want 4", got)
	}
	b.shoot("06-subscription-live")

	// The live page: the pipeline is up to date, and a command's event arrives.
	b.do(chromedp.Click(chromedp.CSS(`[data-nav="live"]`)))
	b.waitFor("the live page waiting", `document.querySelector('.projectors') !== null && document.querySelector('.state-empty') !== null`)
	mustPost("/v1/subscriptions/"+s2+"/pause", "")
	b.waitFor("the pause in the feed", `document.querySelector('.feed li[data-type="subscription.paused"]') !== null`)
	b.waitFor("the pipeline indicator up to date", `document.querySelector('#pipeline')?.dataset.state === 'ok'`)
	b.shoot("07-live")

	// Every request stayed on billingd's origin, and the page broke no rule of its CSP.
	resources := b.eval(`JSON.stringify(performance.getEntriesByType('resource').map((e) => e.name))`)
	var urls []string
	if err := json.Unmarshal([]byte(resources), &urls); err != nil || len(urls) == 0 {
		t.Errorf("resource timing: %v %s", err, resources)
	}
	for _, u := range urls {
		if !strings.HasPrefix(u, base+"/") {
			t.Errorf("the page fetched %s, outside %s", u, base)
		}
	}

	// The API goes down: the page says so.
	stop()
	b.waitFor("the API-down indicator", `document.querySelector('#pipeline')?.dataset.state === 'down'`)
	b.shoot("08-api-down")
	b.checkConsole()
}

// TestDashboardShowsReadModelLag serves the API with nothing feeding the read models (no relay,
// no projector), so every event stays unapplied: the dashboard must say that its lists and
// figures are behind, on every page, rather than show them as current.
func TestDashboardShowsReadModelLag(t *testing.T) {
	chromium := findChromium(t)
	artifacts := artifactsDir(t)
	ctx := context.Background()
	db := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	clock := httpapi.NewTestClock(time.Now())
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: db, Redis: redisPinger{rdb}, Catalog: domain.DefaultCatalog(),
		Clock: clock, TestClock: clock, Logger: slog.New(slog.DiscardHandler),
		Pipeline: &httpapi.Pipeline{Redis: rdb, Streams: projections.Streams{Prefix: prefix, Partitions: 2}}}))
	defer srv.Close()
	_, key, err := httpapi.CreateAPIKey(ctx, db, "e2e-lag", httpapi.ScopeWrite)
	if err != nil {
		t.Fatal(err)
	}
	api := apiClient{t: t, base: srv.URL, key: key}
	for i := range 2 {
		if status := api.post("/v1/subscriptions", fmt.Sprintf(`{"customer_id": "cus_lag_%d", "plan_id": "pro_monthly", "seats": 1, "trial_days": 0}`, i), nil); status != http.StatusCreated {
			t.Fatalf("create: %d", status)
		}
	}

	b := newBrowser(t, chromium, artifacts)
	b.do(chromedp.Navigate(srv.URL+"/#/subscriptions"), chromedp.SendKeys(chromedp.ID("api-key"), key),
		chromedp.Click(chromedp.CSS(".connect-form button[type=submit]")))
	// Nothing applies them, so the lag stays what the API measures now: every event appended.
	var status struct {
		Projectors []struct {
			LagEvents int64 `json:"lag_events"`
		} `json:"projectors"`
	}
	if api.get("/v1/pipeline/status", &status) != http.StatusOK || len(status.Projectors) == 0 || status.Projectors[0].LagEvents < 2 {
		t.Fatalf("GET /v1/pipeline/status: %+v, want the 2 creations' events unapplied", status)
	}
	behind := fmt.Sprintf("%d events behind", status.Projectors[0].LagEvents)
	b.waitFor("the lag indicator", `document.querySelector('#pipeline')?.dataset.state === 'behind'`)
	if got := b.text("#pipeline-text"); got != behind {
		t.Errorf("the indicator says %q, want %q", got, behind)
	}
	b.waitFor("the lag notice", `!document.querySelector('#lag-banner').hidden`)
	if got := b.text("#lag-banner"); !strings.Contains(got, behind) {
		t.Errorf("the notice says %q; want it to say %q", got, behind)
	}
	b.waitFor("the (behind) empty list", `document.querySelector('[data-state="empty"]') !== null`)
	b.shoot("09-read-models-behind")
	b.checkConsole()
}

// waitProjected waits until the read models hold n subscriptions and the pipeline has no lag.
func waitProjected(t *testing.T, api apiClient, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var status struct {
			Projectors []struct {
				LagEvents int64 `json:"lag_events"`
			} `json:"projectors"`
		}
		if api.get("/v1/pipeline/status", &status) == http.StatusOK && len(status.Projectors) > 0 &&
			status.Projectors[0].LagEvents == 0 && len(api.listAll()) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the read models did not reach %d subscriptions: %+v", n, status)
		}
	}
}

// findChromium returns Debian's Chromium, or skips the test without it (fails it when
// BILLING_E2E_REQUIRED=1).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("BILLING_E2E_REQUIRED") == "1" {
		t.Fatal("BILLING_E2E_REQUIRED=1 but Chromium is not installed (.ci/services --ensure-chromium installs it)")
	}
	t.Skip("Chromium is not installed; the browser test needs Debian's chromium package (.ci/services --ensure-chromium)")
	return ""
}

// artifactsDir is $E2E_ARTIFACTS, or .data/e2e-artifacts at the repository's root.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		root := wd
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				t.Fatalf("no go.mod above %s", wd)
			}
			root = parent
		}
		dir = filepath.Join(root, ".data", "e2e-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium tab with a fresh profile, and what its console said.
type browser struct {
	t         *testing.T
	ctx       context.Context
	artifacts string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func newBrowser(t *testing.T, chromium, artifacts string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		// Without these Chromium keeps calling home, on a machine with no network to call.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.Env("LANGUAGE=en_US", "TZ=UTC"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, artifacts: artifacts}
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.fail("browser: %v", err)
	}
}

// eval runs a JavaScript expression and returns its value as a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expr))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// text is the trimmed text content of the first element matching a CSS selector ("" if none).
func (b *browser) text(selector string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? '').trim()`, selector))
}

// waitFor waits until a JavaScript expression is true.
func (b *browser) waitFor(what, expr string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second),
		chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		main, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('main')?.innerText.slice(0, 1500) ?? ''`))
		b.fail("waiting for %s: %v\nthe page shows:\n%s", what, err, main)
	}
}

// fail saves a screenshot of the page as it is, then fails the test.
func (b *browser) fail(format string, args ...any) {
	b.t.Helper()
	if png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)); err == nil {
		path := filepath.Join(b.artifacts, "failure.png")
		os.WriteFile(path, png, 0o644)
		args = append(args, path)
		format += "\n(screenshot: %s)"
	}
	b.t.Fatalf(format, args...)
}

// shoot writes full-page screenshots of the page at a laptop's and a phone's width.
func (b *browser) shoot(name string) {
	b.t.Helper()
	for _, width := range []int64{1280, 390} {
		height := int64(900)
		if width < 500 {
			height = 844
		}
		// The chart follows its box's width in a ResizeObserver callback: give it a frame or two.
		b.do(chromedp.EmulateViewport(width, height), chromedp.Sleep(300*time.Millisecond))
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.fail("screenshot %s: %v", name, err)
		}
		path := filepath.Join(b.artifacts, fmt.Sprintf("%s-%d.png", name, width))
		if err := os.WriteFile(path, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
		// At either width nothing may overflow sideways (wide tables scroll inside their box).
		if scroll := b.eval(`String(document.documentElement.scrollWidth)`); scroll != fmt.Sprint(width) {
			b.t.Errorf("%s at %dpx: the page is %s px wide (a horizontal scrollbar)", name, width, scroll)
		}
	}
	b.do(chromedp.EmulateViewport(1280, 900))
	b.t.Logf("screenshots: %s/%s-{1280,390}.png", b.artifacts, name)
}

// checkConsole fails on any uncaught exception and any Content-Security-Policy violation the
// page reported. Failed loads (the 401 of the wrong key, the 404s of endpoints the server does
// not have yet, the API going down) are the states under test, not faults.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		switch {
		case m.IsException():
			b.t.Errorf("uncaught exception in the page: %s", m.Text)
		case strings.Contains(m.Text, "Content Security Policy"):
			b.t.Errorf("Content-Security-Policy violation: %s", m.Text)
		case m.Type == chromedp.ConsoleError && m.Source != "network":
			b.t.Errorf("console error: %s", m.String())
		}
	}
}
