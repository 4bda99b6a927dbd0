package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/internal/billing"
	"github.com/billing-oss/billing/internal/payments"
	"github.com/billing-oss/billing/internal/testenv"
)

// testAPI is a real server over a fresh database and Redis prefix, with a test clock and one
// API key per scope. Every exchange is checked against openapi.yaml.
type testAPI struct {
	t     *testing.T
	db    *pgxpool.Pool
	url   string
	clock *httpapi.TestClock
	keys  map[httpapi.Scope]string
	names map[httpapi.Scope]string
}

// testStart is a Saturday 31 January 2026: a month-end anchor, on purpose.
var testStart = time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)

func newTestAPI(t *testing.T) *testAPI {
	t.Helper()
	return newTestAPIWith(t, func(*httpapi.Config) {})
}

// newTestAPIWith is newTestAPI with the configuration changed by configure.
func newTestAPIWith(t *testing.T, configure func(*httpapi.Config)) *testAPI {
	t.Helper()
	clock := httpapi.NewTestClock(testStart)
	api := startTestAPI(t, clock, configure)
	api.t, api.clock = t, clock
	return api
}

// startTestAPI starts newTestAPI's server on clock, for tb, with the configuration changed by
// configure. A fuzz target's server outlives each input's *testing.T, so the returned API has
// none: set it (forInput) before use.
func startTestAPI(tb testing.TB, clock httpapi.SettableClock, configure func(*httpapi.Config)) *testAPI {
	tb.Helper()
	// The API's pool, as billingd's (20): many parallel tests each holding 40 connections,
	// beside another package's tests, exhausted the server's connections (503s in make test).
	db := testenv.PostgresWithConns(tb, 20)
	rdb, _ := testenv.Redis(tb)
	cfg := httpapi.Config{
		DB: db, Redis: redisPinger{rdb}, Catalog: domain.DefaultCatalog(),
		Clock: clock, TestClock: clock, Logger: slog.New(slog.DiscardHandler),
		Metrics: httpapi.NewMetrics(prometheus.NewRegistry()),
		Billing: billing.New(billing.Config{DB: db, Gateway: payments.NewSandbox(db), Clock: clock}),
	}
	configure(&cfg)
	srv := httptest.NewServer(httpapi.New(cfg))
	tb.Cleanup(srv.Close)
	api := &testAPI{db: db, url: srv.URL,
		keys: map[httpapi.Scope]string{}, names: map[httpapi.Scope]string{}}
	for _, scope := range []httpapi.Scope{httpapi.ScopeRead, httpapi.ScopeWrite, httpapi.ScopeAdmin} {
		key, secret, err := httpapi.CreateAPIKey(context.Background(), db, "test-"+string(scope), scope)
		if err != nil {
			tb.Fatalf("create %s key: %v", scope, err)
		}
		api.keys[scope], api.names[scope] = secret, key.Name
	}
	return api
}

type redisPinger struct{ client *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.client.Ping(ctx).Err() }

type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the response body into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem returns the response as a problem, failing the test if it is not one.
func (r response) problem(t *testing.T) httpapi.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json (status %d, body %s)", ct, r.status, r.body)
	}
	var p httpapi.Problem
	r.decode(t, &p)
	if p.Status != r.status || p.Title == "" || p.Type == "" {
		t.Errorf("problem %+v does not match status %d or lacks type/title", p, r.status)
	}
	return p
}

type requestOption func(*http.Request)

func withKey(secret string) requestOption {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
}

func withHeader(name, value string) requestOption {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

func withoutHeader(name string) requestOption { return func(r *http.Request) { r.Header.Del(name) } }

// do sends a request with the write key. body is sent as is when it is a string or []byte, and
// as JSON otherwise.
func (api *testAPI) do(method, path string, body any, opts ...requestOption) response {
	api.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			api.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, api.url+path, bytes.NewReader(raw))
	if err != nil {
		api.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+api.keys[httpapi.ScopeWrite])
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, opt := range opts {
		opt(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		api.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		api.t.Fatal(err)
	}
	checkSpec(api.t, req, raw, resp, respBody)
	return response{status: resp.StatusCode, header: resp.Header, body: respBody}
}

// must sends a request and fails the test unless it answers with status want.
func (api *testAPI) must(want int, method, path string, body any, opts ...requestOption) response {
	api.t.Helper()
	r := api.do(method, path, body, opts...)
	if r.status != want {
		api.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// subscription is the JSON a subscription is returned as.
type subscription struct {
	ID                 string     `json:"id"`
	CustomerID         string     `json:"customer_id"`
	PlanID             string     `json:"plan_id"`
	Status             string     `json:"status"`
	Seats              int64      `json:"seats"`
	Currency           string     `json:"currency"`
	UnitAmount         int64      `json:"unit_amount"`
	Interval           string     `json:"interval"`
	MRR                int64      `json:"mrr"`
	Features           []string   `json:"features"`
	CurrentPeriodStart time.Time  `json:"current_period_start"`
	CurrentPeriodEnd   time.Time  `json:"current_period_end"`
	TrialEnd           *time.Time `json:"trial_end"`
	CancelAtPeriodEnd  bool       `json:"cancel_at_period_end"`
	CanceledAt         *time.Time `json:"canceled_at"`
	PausedAt           *time.Time `json:"paused_at"`
	ScheduledChange    *struct {
		PlanID      string    `json:"plan_id"`
		Seats       int64     `json:"seats"`
		EffectiveAt time.Time `json:"effective_at"`
	} `json:"scheduled_change"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type changeResult struct {
	Subscription subscription `json:"subscription"`
	Proration    struct {
		Lines    []domain.ProrationLine `json:"lines"`
		Total    int64                  `json:"total"`
		Currency string                 `json:"currency"`
	} `json:"proration"`
}

// create makes a subscription without a trial, paid by a card that succeeds, and returns it.
func (api *testAPI) create(plan string, seats int64) subscription {
	api.t.Helper()
	var s subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_test", "plan_id": plan, "seats": seats, "trial_days": 0,
			"payment_method": "pm_card_ok"}).decode(api.t, &s)
	return s
}

// setClock moves the service clock.
func (api *testAPI) setClock(at time.Time) {
	api.t.Helper()
	api.must(http.StatusOK, "POST", "/v1/test/clock", map[string]any{"now": at}, withKey(api.keys[httpapi.ScopeAdmin]))
}

// eventCount is the number of events in the store.
func (api *testAPI) eventCount() int {
	api.t.Helper()
	var n int
	if err := api.db.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		api.t.Fatal(err)
	}
	return n
}
