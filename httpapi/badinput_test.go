package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/httpapi"
)

// TestBadInputChangesNothing: every malformed or invalid request gets a clear 4xx problem and
// appends nothing.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 2)
	sub := "/v1/subscriptions/" + s.ID
	valid := `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1}`

	tests := []struct {
		name, method, path, body string
		opts                     []requestOption
		status                   int
		problemType              string
		pointer                  string
	}{
		{"malformed json", "POST", "/v1/subscriptions", `{"customer_id": "cus_1",`, nil, 400, "/problems/malformed-json", ""},
		{"not json at all", "POST", "/v1/subscriptions", `seats=1`, nil, 400, "/problems/malformed-json", ""},
		{"array body", "POST", "/v1/subscriptions", `[1, 2]`, nil, 400, "/problems/malformed-json", ""},
		{"two objects", "POST", "/v1/subscriptions", valid + valid, nil, 400, "/problems/malformed-json", ""},
		{"trailing garbage", "POST", "/v1/subscriptions", valid + ` x`, nil, 400, "/problems/malformed-json", ""},
		{"unknown field", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1, "price": 0}`, nil, 400, "/problems/unknown-field", "/price"},
		{"seats as string", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": "1"}`, nil, 400, "/problems/invalid-type", "/seats"},
		{"seats fractional", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1.5}`, nil, 400, "/problems/invalid-type", "/seats"},
		{"seats huge", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1e30}`, nil, 400, "/problems/invalid-type", "/seats"},
		{"seats zero", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 0}`, nil, 422, "/problems/invalid-fields", "/seats"},
		{"seats negative", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": -3}`, nil, 422, "/problems/invalid-fields", "/seats"},
		{"seats over max", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1000001}`, nil, 422, "/problems/invalid-fields", "/seats"},
		{"unknown plan", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "gold", "seats": 1}`, nil, 422, "/problems/invalid-fields", "/plan_id"},
		{"missing customer", "POST", "/v1/subscriptions", `{"plan_id": "pro_monthly", "seats": 1}`, nil, 422, "/problems/invalid-fields", "/customer_id"},
		{"injection in customer", "POST", "/v1/subscriptions", `{"customer_id": "x'); DROP TABLE events;--", "plan_id": "pro_monthly", "seats": 1}`, nil, 422, "/problems/invalid-fields", "/customer_id"},
		{"negative trial", "POST", "/v1/subscriptions", `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1, "trial_days": -1}`, nil, 422, "/problems/invalid-fields", "/trial_days"},
		{"empty body on create", "POST", "/v1/subscriptions", ``, nil, 422, "/problems/invalid-fields", "/customer_id"},
		{"wrong content type", "POST", "/v1/subscriptions", valid, []requestOption{withHeader("Content-Type", "text/plain")}, 415, "/problems/unsupported-media-type", ""},
		{"no content type", "POST", "/v1/subscriptions", valid, []requestOption{withoutHeader("Content-Type")}, 415, "/problems/unsupported-media-type", ""},
		{"body over 1 MiB", "POST", "/v1/subscriptions", `{"customer_id": "` + strings.Repeat("a", 1<<20) + `"}`, nil, 413, "/problems/body-too-large", ""},
		{"bad uuid", "POST", "/v1/subscriptions/123/seats", `{"seats": 3}`, nil, 400, "/problems/invalid-id", "id"},
		{"uuid without dashes", "POST", "/v1/subscriptions/" + strings.ReplaceAll(s.ID, "-", "") + "/seats", `{"seats": 3}`, nil, 400, "/problems/invalid-id", "id"},
		{"seats unchanged", "POST", sub + "/seats", `{"seats": 2}`, nil, 422, "/problems/no-change", ""},
		{"seats missing", "POST", sub + "/seats", `{}`, nil, 422, "/problems/invalid-fields", "/seats"},
		{"currency change", "POST", sub + "/change-plan", `{"plan_id": "pro_monthly_eur"}`, nil, 422, "/problems/currency-mismatch", ""},
		{"bad timing", "POST", sub + "/change-plan", `{"plan_id": "business_monthly", "timing": "tomorrow"}`, nil, 422, "/problems/invalid-fields", "/timing"},
		{"null body", "POST", sub + "/pause", `null`, nil, 400, "/problems/malformed-json", ""},
		{"null field", "POST", sub + "/cancel", `{"at_period_end": null}`, nil, 400, "/problems/invalid-type", "/at_period_end"},
		{"cancel with wrong type", "POST", sub + "/cancel", `{"at_period_end": "yes"}`, nil, 400, "/problems/invalid-type", "/at_period_end"},
		{"pause with unknown field", "POST", sub + "/pause", `{"until": "2027-01-01"}`, nil, 400, "/problems/unknown-field", "/until"},
		{"resume while active", "POST", sub + "/resume", ``, nil, 409, "/problems/invalid-transition", ""},
		{"undo without cancel", "POST", sub + "/undo-cancel", ``, nil, 409, "/problems/cancellation-not-scheduled", ""},
		{"unknown route", "GET", "/v1/nothing-here", ``, nil, 404, "/problems/route-not-found", ""},
		{"wrong method", "DELETE", sub, ``, nil, 405, "/problems/method-not-allowed", ""},
	}
	before := api.eventCount()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := api.do(tt.method, tt.path, tt.body, tt.opts...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			p := r.problem(t)
			if p.Type != tt.problemType || p.Detail == "" || p.CorrelationID == "" {
				t.Errorf("problem = %+v, want type %s with detail and correlation id", p, tt.problemType)
			}
			if tt.status == http.StatusMethodNotAllowed && r.header.Get("Allow") != "GET" {
				t.Errorf("Allow = %q, want GET", r.header.Get("Allow"))
			}
			if tt.pointer != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != tt.pointer) {
				t.Errorf("errors = %+v, want pointer %s first", p.Errors, tt.pointer)
			}
		})
	}
	if after := api.eventCount(); after != before {
		t.Errorf("bad input appended %d events", after-before)
	}
}

// TestEveryFieldErrorAtOnce: a request with several bad fields lists them all.
func TestEveryFieldErrorAtOnce(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	r := api.do("POST", "/v1/subscriptions", `{"customer_id": "", "plan_id": "gold", "seats": 0, "trial_days": 9999}`)
	p := r.problem(t)
	got := map[string]bool{}
	for _, e := range p.Errors {
		got[e.Pointer] = true
	}
	for _, want := range []string{"/customer_id", "/plan_id", "/seats", "/trial_days"} {
		if !got[want] {
			t.Errorf("errors %+v lack %s", p.Errors, want)
		}
	}
}

func TestAuthAndScopes(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	create := `{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1}`
	tests := []struct {
		name, method, path, body string
		opts                     []requestOption
		status                   int
	}{
		{"no key", "GET", "/v1/plans", "", []requestOption{withoutHeader("Authorization")}, 401},
		{"not bearer", "GET", "/v1/plans", "", []requestOption{withHeader("Authorization", "Basic abc")}, 401},
		{"unknown key", "GET", "/v1/plans", "", []requestOption{withKey("bk_not-a-real-key")}, 401},
		{"read key reads", "GET", "/v1/plans", "", []requestOption{withKey(api.keys["read"])}, 200},
		{"read key cannot write", "POST", "/v1/subscriptions", create, []requestOption{withKey(api.keys["read"])}, 403},
		{"write key cannot set the clock", "POST", "/v1/test/clock", `{"now": "2030-01-01T00:00:00Z"}`, nil, 403},
		{"read key reads the clock", "GET", "/v1/test/clock", "", []requestOption{withKey(api.keys["read"])}, 200},
		{"admin sets the clock", "POST", "/v1/test/clock", `{"now": "2030-01-01T00:00:00Z"}`, []requestOption{withKey(api.keys["admin"])}, 200},
		{"clock never goes back", "POST", "/v1/test/clock", `{"now": "2029-01-01T00:00:00Z"}`, []requestOption{withKey(api.keys["admin"])}, 422},
		{"health needs no key", "GET", "/healthz", "", []requestOption{withoutHeader("Authorization")}, 200},
	}
	for _, tt := range tests {
		r := api.do(tt.method, tt.path, tt.body, tt.opts...)
		if r.status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.status, tt.status, r.body)
		}
		if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
		if r.status >= 400 {
			r.problem(t)
		}
	}
	if n := api.eventCount(); n != 0 {
		t.Errorf("%d events appended by refused requests", n)
	}
}

func TestTestClockIsOffByDefault(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	srv := httptest.NewServer(httpapi.New(httpapi.Config{
		DB: api.db, Redis: failingPinger{}, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: slog.New(slog.DiscardHandler),
	}))
	defer srv.Close()
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, srv.URL+"/v1/test/clock", strings.NewReader(`{"now": "2030-01-01T00:00:00Z"}`))
		req.Header.Set("Authorization", "Bearer "+api.keys["admin"])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s /v1/test/clock without BILLING_TEST_CLOCK: %d, want 404", method, resp.StatusCode)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	api.must(http.StatusOK, "GET", "/healthz", nil)
	api.must(http.StatusOK, "GET", "/readyz", nil)

	// Redis down: not ready, but alive.
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: api.db, Redis: failingPinger{}, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("readyz with redis down: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestDatabaseDownIs503: when Postgres cannot be reached the API answers 503 with a problem,
// never a 500.
func TestDatabaseDownIs503(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	srv := httptest.NewServer(httpapi.New(httpapi.Config{DB: pool, Redis: failingPinger{}, Catalog: domain.DefaultCatalog(),
		Clock: httpapi.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/subscriptions/"+uuid.NewString()+"/pause", nil)
	req.Header.Set("Authorization", "Bearer bk_anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("database down: %d %s, want 503 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

type failingPinger struct{}

func (failingPinger) Ping(ctx context.Context) error { return errors.New("connection refused") }
