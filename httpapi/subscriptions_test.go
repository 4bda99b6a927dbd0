package httpapi_test

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/google/uuid"
)

func TestSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)

	var created subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_42", "plan_id": "pro_monthly", "seats": 3}).decode(t, &created)
	pro, _ := domain.DefaultCatalog().Plan("pro_monthly")
	trialEnd := testStart.AddDate(0, 0, pro.TrialDays)
	if created.Status != "trialing" || created.TrialEnd == nil || !created.TrialEnd.Equal(trialEnd) ||
		created.Seats != 3 || created.UnitAmount != pro.UnitAmount || created.Currency != "USD" ||
		created.MRR != 0 || created.Version != 1 || !created.CreatedAt.Equal(testStart) {
		t.Fatalf("created = %+v, want a 3-seat pro trial ending %s with no MRR yet", created, trialEnd)
	}
	if _, err := uuid.Parse(created.ID); err != nil {
		t.Fatalf("id %q is not a UUID", created.ID)
	}

	var got subscription
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+created.ID, nil, withKey(api.keys["read"])).decode(t, &got)
	if got.ID != created.ID || got.Version != 1 || got.Status != "trialing" {
		t.Errorf("GET = %+v, want the created subscription", got)
	}

	path := "/v1/subscriptions/" + created.ID
	var s subscription
	api.must(http.StatusOK, "POST", path+"/cancel", map[string]any{"at_period_end": true}).decode(t, &s)
	if !s.CancelAtPeriodEnd || s.Version != 2 {
		t.Errorf("after cancel at period end: %+v", s)
	}
	api.must(http.StatusOK, "POST", path+"/undo-cancel", nil).decode(t, &s)
	if s.CancelAtPeriodEnd || s.Version != 3 {
		t.Errorf("after undo cancel: %+v", s)
	}
	api.must(http.StatusOK, "POST", path+"/seats", map[string]any{"seats": 5}).decode(t, new(changeResult))

	// A paid subscription can pause and resume.
	paid := api.create("starter_monthly", 2)
	paidPath := "/v1/subscriptions/" + paid.ID
	if paid.Status != "active" || paid.MRR != 2*1500 {
		t.Fatalf("paid = %+v, want active with MRR 3000", paid)
	}
	api.must(http.StatusOK, "POST", paidPath+"/pause", "{}").decode(t, &s)
	if s.Status != "paused" || s.PausedAt == nil || s.MRR != 0 {
		t.Errorf("after pause: %+v", s)
	}
	api.must(http.StatusOK, "POST", paidPath+"/resume", nil).decode(t, &s)
	if s.Status != "active" || s.PausedAt != nil {
		t.Errorf("after resume: %+v", s)
	}
	api.must(http.StatusOK, "POST", paidPath+"/cancel", map[string]any{"at_period_end": false}).decode(t, &s)
	if s.Status != "canceled" || s.CanceledAt == nil || s.MRR != 0 {
		t.Errorf("after cancel: %+v", s)
	}

	// Nothing changes a canceled subscription.
	before := api.eventCount()
	for _, tc := range []struct{ path, body string }{
		{"/seats", `{"seats": 9}`}, {"/pause", `{}`}, {"/resume", `{}`}, {"/cancel", `{}`},
		{"/change-plan", `{"plan_id": "business_monthly"}`}, {"/undo-cancel", `{}`},
	} {
		r := api.do("POST", paidPath+tc.path, tc.body)
		if r.status != http.StatusConflict || r.problem(t).Type != "/problems/subscription-canceled" {
			t.Errorf("POST %s on canceled: %d %s, want 409 subscription-canceled", tc.path, r.status, r.body)
		}
	}
	if after := api.eventCount(); after != before {
		t.Errorf("refused commands appended %d events", after-before)
	}
}

// TestUpgradeProratesToTheSecond checks the API's proration against an independent exact
// computation, on a month-end anchor.
func TestUpgradeProratesToTheSecond(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 2) // anchored Jan 31 10:00; period ends Feb 28 10:00
	wantEnd := time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC)
	if !s.CurrentPeriodEnd.Equal(wantEnd) {
		t.Fatalf("period end %s, want %s (Jan 31 anchor clamps to Feb 28)", s.CurrentPeriodEnd, wantEnd)
	}
	at := time.Date(2026, 2, 11, 17, 33, 20, 0, time.UTC)
	api.setClock(at)

	var res changeResult
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/change-plan",
		map[string]any{"plan_id": "business_monthly", "seats": 3}).decode(t, &res)

	period := wantEnd.Sub(s.CurrentPeriodStart).Seconds()
	remaining := wantEnd.Sub(at).Seconds()
	credit := -roundHalfEven(4900*2*remaining, period)
	debit := roundHalfEven(9900*3*remaining, period)
	if len(res.Proration.Lines) != 2 {
		t.Fatalf("proration lines = %+v, want a credit and a debit", res.Proration.Lines)
	}
	if got := res.Proration.Lines[0].Amount; got != credit {
		t.Errorf("credit = %d, want %d", got, credit)
	}
	if got := res.Proration.Lines[1].Amount; got != debit {
		t.Errorf("debit = %d, want %d", got, debit)
	}
	if res.Proration.Total != credit+debit || res.Proration.Currency != "USD" {
		t.Errorf("total = %d %s, want %d USD", res.Proration.Total, res.Proration.Currency, credit+debit)
	}
	sub := res.Subscription
	if sub.PlanID != "business_monthly" || sub.Seats != 3 || sub.MRR != 9900*3 || !sub.CurrentPeriodEnd.Equal(wantEnd) {
		t.Errorf("after upgrade: %+v", sub)
	}

	// A downgrade defaults to the period end: scheduled, nothing charged now.
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/change-plan",
		map[string]any{"plan_id": "starter_monthly"}).decode(t, &res)
	if len(res.Proration.Lines) != 0 || res.Subscription.PlanID != "business_monthly" ||
		res.Subscription.ScheduledChange == nil || res.Subscription.ScheduledChange.PlanID != "starter_monthly" ||
		!res.Subscription.ScheduledChange.EffectiveAt.Equal(wantEnd) {
		t.Errorf("downgrade = %+v, want starter scheduled for %s", res, wantEnd)
	}
}

func roundHalfEven(num, den float64) int64 {
	// Exact: both are whole numbers well inside float64's integer range.
	q := new(big.Rat).SetFrac(big.NewInt(int64(num)), big.NewInt(int64(den)))
	fl := new(big.Int).Quo(q.Num(), q.Denom()) // truncates toward zero; inputs are positive
	rem := new(big.Rat).Sub(q, new(big.Rat).SetInt(fl))
	switch rem.Cmp(big.NewRat(1, 2)) {
	case 1:
		fl.Add(fl, big.NewInt(1))
	case 0:
		if fl.Bit(0) == 1 {
			fl.Add(fl, big.NewInt(1))
		}
	}
	return fl.Int64()
}

// TestEventsRecordWhoAndWhy: every event carries the caller's correlation id, the request
// that caused it, the key that sent it and the idempotency key.
func TestEventsRecordWhoAndWhy(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	r := api.must(http.StatusCreated, "POST", "/v1/subscriptions",
		map[string]any{"customer_id": "cus_1", "plan_id": "pro_monthly", "seats": 1},
		withHeader("X-Correlation-ID", "checkout-7f3a"), withHeader("Idempotency-Key", "create-cus_1"))
	if got := r.header.Get("X-Correlation-ID"); got != "checkout-7f3a" {
		t.Errorf("X-Correlation-ID echoed %q", got)
	}
	var s subscription
	r.decode(t, &s)
	events, err := eventstore.Load(context.Background(), api.db, uuid.MustParse(s.ID), eventstore.LoadOptions{})
	if err != nil || len(events) != 1 {
		t.Fatalf("events = %v, %v; want one", events, err)
	}
	want := eventstore.Metadata{
		CorrelationID: "checkout-7f3a", CausationID: r.header.Get("X-Request-ID"), Actor: api.names["write"],
		Source: "api POST /v1/subscriptions", IdempotencyKey: "create-cus_1",
	}
	if events[0].Metadata != want {
		t.Errorf("metadata = %+v, want %+v", events[0].Metadata, want)
	}
	if events[0].Type != "subscription.created" || events[0].StreamType != "subscription" || !events[0].OccurredAt.Equal(testStart) {
		t.Errorf("event = %+v", events[0])
	}

	// Without a correlation id the service makes one and still records it.
	r = api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", `{"seats": 2}`)
	corr := r.header.Get("X-Correlation-ID")
	events, _ = eventstore.Load(context.Background(), api.db, uuid.MustParse(s.ID), eventstore.LoadOptions{AfterVersion: 1})
	if corr == "" || len(events) != 1 || events[0].Metadata.CorrelationID != corr {
		t.Errorf("generated correlation id %q, event metadata %+v", corr, events)
	}
}

func TestGetSubscriptionErrors(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	r := api.do("GET", "/v1/subscriptions/"+uuid.NewString(), nil)
	if r.status != http.StatusNotFound || r.problem(t).Type != "/problems/not-found" {
		t.Errorf("unknown id: %d %s", r.status, r.body)
	}
	r = api.do("GET", "/v1/subscriptions/not-a-uuid", nil)
	if r.status != http.StatusBadRequest || r.problem(t).Type != "/problems/invalid-id" {
		t.Errorf("bad id: %d %s", r.status, r.body)
	}
	r = api.do("POST", "/v1/subscriptions/"+uuid.NewString()+"/pause", nil)
	if r.status != http.StatusNotFound {
		t.Errorf("command on unknown id: %d %s", r.status, r.body)
	}
	if n := api.eventCount(); n != 0 {
		t.Errorf("%d events appended", n)
	}
}

func TestPlans(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	var plans struct {
		CatalogVersion int           `json:"catalog_version"`
		Data           []domain.Plan `json:"data"`
	}
	api.must(http.StatusOK, "GET", "/v1/plans", nil, withKey(api.keys["read"])).decode(t, &plans)
	want := domain.DefaultCatalog().Plans()
	if plans.CatalogVersion != domain.DefaultCatalog().Version() || len(plans.Data) != len(want) {
		t.Fatalf("plans = %+v, want %d plans", plans, len(want))
	}
	for i := range want {
		g, _ := json.Marshal(plans.Data[i])
		w, _ := json.Marshal(want[i])
		if string(g) != string(w) {
			t.Errorf("plan %d = %s, want %s", i, g, w)
		}
	}
}

// TestMetricsCountRequestsAndEvents: /metrics reports requests by route pattern and the events
// commands appended.
func TestMetricsCountRequestsAndEvents(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 1)
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", `{"seats": 4}`)
	api.do("POST", "/v1/subscriptions/"+s.ID+"/seats", `{"seats": 4}`) // refused: no event
	body := string(api.must(http.StatusOK, "GET", "/metrics", nil).body)
	for _, want := range []string{
		`billing_http_requests_total{method="POST",route="/v1/subscriptions",status="201"} 1`,
		`billing_http_requests_total{method="POST",route="/v1/subscriptions/{id}/seats",status="200"} 1`,
		`billing_http_requests_total{method="POST",route="/v1/subscriptions/{id}/seats",status="422"} 1`,
		`billing_events_appended_total{type="subscription.created"} 1`,
		`billing_events_appended_total{type="subscription.seats_changed"} 1`,
		`billing_http_request_duration_seconds_count{method="POST",route="/v1/subscriptions"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
