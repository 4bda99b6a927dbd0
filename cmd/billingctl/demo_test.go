package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/eventstore/relay"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/billing"
	"github.com/billing-oss/billing/internal/payments"
	"github.com/billing-oss/billing/internal/testenv"
	"github.com/billing-oss/billing/projections"
)

// testBillingd is a billingd as cmd/billingd's run wires it (API, shared test clock, billing
// scheduler, relay and projectors) on a fresh database and Redis prefix, served over HTTP. It
// is built here because a main package cannot call another's run.
type testBillingd struct {
	url string
	key string // an admin key
	db  *pgxpool.Pool
}

func startBillingd(t *testing.T, clockStart time.Time) testBillingd {
	t.Helper()
	db := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	blocking := redis.NewClient(opts)
	log := slog.New(slog.DiscardHandler)

	ctx, cancel := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	notifier := eventstore.NewNotifier(db, log)
	workers.Go(func() { notifier.Run(ctx) })
	streams := projections.Streams{Prefix: prefix, Partitions: 4}
	workers.Go(func() { relay.New(relay.Config{DB: db, Redis: rdb, Streams: streams, Logger: log}).Run(ctx) })
	for _, p := range projections.Projectors() {
		consumer, err := projections.NewConsumer(projections.ConsumerConfig{DB: db, Redis: rdb, Blocking: blocking,
			Streams: streams, Projector: p, ConsumerName: "demo-test", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		workers.Go(func() { consumer.Run(ctx) })
	}
	clock, err := billing.NewTestClock(ctx, db, clockStart)
	if err != nil {
		t.Fatal(err)
	}
	service := billing.New(billing.Config{DB: db, Gateway: payments.NewSandbox(db), Clock: clock, Logger: log,
		Committed: notifier.Notify})
	workers.Go(func() { service.Run(ctx, time.Second) })
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: db, Redis: redisPinger{rdb}, Catalog: domain.DefaultCatalog(),
		Clock: clock, TestClock: clock, Logger: log, SnapshotEvery: eventstore.DefaultSnapshotEvery, Billing: service,
		Committed: func() { notifier.Notify(); service.Wake() }}))
	t.Cleanup(func() {
		srv.Close()
		cancel()
		workers.Wait()
		blocking.Close()
	})
	_, key, err := httpapi.CreateAPIKey(context.Background(), db, "demo", httpapi.ScopeAdmin)
	if err != nil {
		t.Fatal(err)
	}
	return testBillingd{url: srv.URL, key: key, db: db}
}

type redisPinger struct{ client *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.client.Ping(ctx).Err() }

// seed runs `billingctl demo seed` against b and returns what it printed.
func (b testBillingd) seed(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	args = append([]string{"demo", "seed", "--url", b.url, "--key", b.key}, args...)
	err := run(context.Background(), args, func(string) string { return "" }, &out)
	return out.String(), err
}

// eventCounts is the number of events of each type in the store.
func (b testBillingd) eventCounts(t *testing.T) map[string]int {
	t.Helper()
	rows, err := b.db.Query(context.Background(), `SELECT type, count(*)::int FROM events GROUP BY type`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		counts[typ] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// statuses folds every subscription in the store and counts them by status.
func (b testBillingd) statuses(t *testing.T) map[domain.Status]int {
	t.Helper()
	ctx := context.Background()
	rows, err := b.db.Query(ctx, `SELECT DISTINCT stream_id FROM events WHERE stream_type = 'subscription'`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	counts := map[domain.Status]int{}
	for _, id := range ids {
		s, _, err := eventstore.LoadSubscription(ctx, b.db, id, eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		counts[s.Status]++
	}
	return counts
}

func (b testBillingd) clock(t *testing.T) time.Time {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/test/clock", nil)
	req.Header.Set("Authorization", "Bearer "+b.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c clockJSON
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c.Now
}

// demoStart is a Wednesday morning; the year it starts has every month length.
var demoStart = time.Date(2025, 1, 1, 9, 0, 0, 0, time.UTC)

// TestDemoSeedWalksAYear runs the seed against a real billingd over HTTP and checks that the
// year it leaves has the shape the dashboard needs, that running it again replays rather than
// duplicates, and that the same seed makes the same year on another service.
func TestDemoSeedWalksAYear(t *testing.T) {
	t.Parallel()
	const customers = "24"
	first, second := startBillingd(t, demoStart), startBillingd(t, demoStart)

	// The second service walks the same year at the same time: same seed, its own history.
	var secondOut string
	var secondErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		secondOut, secondErr = second.seed(t, "--customers", customers, "--seed", "7")
	}()
	out, err := first.seed(t, "--customers", customers, "--seed", "7")
	<-done
	if err != nil {
		t.Fatalf("demo seed: %v\n%s", err, out)
	}
	if secondErr != nil {
		t.Fatalf("demo seed on the second service: %v\n%s", secondErr, secondOut)
	}
	t.Logf("demo seed printed:\n%s", out)

	if got, want := first.clock(t), demoStart.AddDate(1, 0, 0); !got.Equal(want) {
		t.Errorf("clock after the seed = %s, want a year after the start, %s", got, want)
	}
	if months := strings.Count(out, "  customers "); months != 13 {
		t.Errorf("%d monthly progress lines, want 13 (January to January)", months)
	}

	events := first.eventCounts(t)
	for _, typ := range []string{"subscription.created", "subscription.renewed", "subscription.plan_changed",
		"subscription.seats_changed", "invoice.payment_succeeded", "invoice.payment_failed", "subscription.canceled"} {
		if events[typ] == 0 {
			t.Errorf("no %s event in the store; events: %v", typ, events)
		}
	}
	if got, want := events["subscription.created"], 24; got != want {
		t.Errorf("%d subscriptions created, want one per customer, %d", got, want)
	}
	statuses := first.statuses(t)
	if statuses[domain.StatusActive] == 0 || statuses[domain.StatusCanceled] == 0 {
		t.Errorf("statuses %v: want active and canceled subscriptions", statuses)
	}
	if statuses[domain.StatusPastDue]+statuses[domain.StatusUnpaid]+events["subscription.payment_recovered"] == 0 {
		t.Errorf("statuses %v and no subscription.payment_recovered: want past-due, unpaid or recovered subscriptions", statuses)
	}
	if !strings.Contains(out, "final (GET /v1/dashboard/summary)") || !strings.Contains(out, "subscriptions created") {
		t.Errorf("no summary table in the output:\n%s", out)
	}

	if secondEvents := second.eventCounts(t); !maps.Equal(secondEvents, events) {
		t.Errorf("the same seed on another service made other events:\nfirst  %v\nsecond %v", events, secondEvents)
	}

	// Running the same year again (a resume after the last step) replays every command.
	again, err := first.seed(t, "--customers", customers, "--seed", "7", "--start", demoStart.Format(time.RFC3339))
	if err != nil {
		t.Fatalf("demo seed again: %v\n%s", err, again)
	}
	if after := first.eventCounts(t); !maps.Equal(after, events) {
		t.Errorf("running the seed again changed the store:\nbefore %v\nafter  %v", events, after)
	}
	if !strings.Contains(again, "resuming the run") || !strings.Contains(again, "replayed") {
		t.Errorf("the second run did not say it replayed:\n%s", again)
	}
}

// TestDemoSeedRefusals: the seed says clearly why it cannot run, before changing anything.
func TestDemoSeedRefusals(t *testing.T) {
	t.Parallel()
	b := startBillingd(t, demoStart)
	noClock := httptest.NewServer(httpapi.New(httpapi.Config{DB: b.db, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}))
	defer noClock.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"start before the clock", []string{"--url", b.url, "--key", b.key, "--start", "2024-12-31"}, "the clock only moves forward"},
		{"no test clock", []string{"--url", noClock.URL, "--key", b.key}, "BILLING_TEST_CLOCK=true"},
		{"wrong key", []string{"--url", b.url, "--key", "bk_nope"}, "401"},
		{"nothing listening", []string{"--url", "http://127.0.0.1:1", "--key", b.key}, "is billingd running"},
		{"bad start", []string{"--key", "k", "--start", "next week"}, "--start"},
		{"bad customers", []string{"--key", "k", "--customers", "0"}, "--customers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"demo", "seed"}, tc.args...), func(string) string { return "" }, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if n := b.eventCounts(t)["subscription.created"]; n != 0 {
		t.Errorf("a refused seed created %d subscriptions", n)
	}
}

// TestDemoSeedKey: --key, else BILLING_API_KEY, else the file make run writes.
func TestDemoSeedKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoKeyFile), []byte("bk_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "BILLING_API_KEY" {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--key", "bk_flag"}, "bk_env", "bk_flag"},
		{nil, "bk_env", "bk_env"},
		{nil, "", "bk_fromfile"},
	} {
		cfg, err := parseDemoSeed(tc.args, env(tc.env))
		if err != nil || cfg.key != tc.want {
			t.Errorf("args %v, BILLING_API_KEY=%q: key %q, %v; want %q", tc.args, tc.env, cfg.key, err, tc.want)
		}
	}
	os.Remove(filepath.Join(dir, demoKeyFile))
	if _, err := parseDemoSeed(nil, env("")); err == nil || !strings.Contains(err.Error(), "no API key") {
		t.Errorf("no key anywhere: %v, want an error saying so", err)
	}
}

func TestArrivalsGrowAndAddUp(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 7, 24, 120, 1000} {
		got := arrivals(n, 104)
		total := 0
		for _, k := range got {
			total += k
		}
		if total != n {
			t.Errorf("arrivals(%d): %d in total, want %d", n, total, n)
		}
		firstHalf := 0
		for _, k := range got[:52] {
			firstHalf += k
		}
		if n >= 24 && firstHalf*2 >= n {
			t.Errorf("arrivals(%d): %d of %d in the first half of the year, want fewer than half (growth)", n, firstHalf, n)
		}
	}
	if steps := demoSteps(demoStart); len(steps) != 106 || !slices.IsSorted(func() []int64 {
		var u []int64
		for _, s := range steps {
			u = append(u, s.Unix())
		}
		return u
	}()) || !steps[len(steps)-1].Equal(demoStart.AddDate(1, 0, 0)) {
		t.Errorf("demoSteps: %d steps ending %s", len(steps), steps[len(steps)-1])
	}
}

func TestMoney(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0.00", 5: "0.05", 123456: "1,234.56", 100000000: "1,000,000.00", -1500: "-15.00"} {
		if got := money(in); got != want {
			t.Errorf("money(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestParseProjectorLag(t *testing.T) {
	t.Parallel()
	metrics := `# HELP billing_projector_lag_events Events in the store not yet applied by the projector.
# TYPE billing_projector_lag_events gauge
billing_projector_lag_events{projector="mrr_movements"} 3
billing_projector_lag_events{projector="subscription_view"} 0
billing_projector_lag_seconds{projector="mrr_movements"} 1.5
`
	if lag, ok := parseProjectorLag(metrics); !ok || lag != 3 {
		t.Errorf("lag %v, %v; want 3, true", lag, ok)
	}
	if _, ok := parseProjectorLag("billing_relay_lag_events 0\n"); ok {
		t.Error("found a projector lag in metrics without one")
	}
}
