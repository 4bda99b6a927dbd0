package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
)

// upgradeResult is a paid change's 200 answer.
type upgradeResult struct {
	changeResult
	Upgrade *struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		Amount    int64  `json:"amount"`
		InvoiceID string `json:"invoice_id"`
		ChargeID  string `json:"charge_id"`
	} `json:"upgrade"`
}

func TestPaidUpgradeChargesThenApplies(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 2)
	api.setClock(testStart.AddDate(0, 0, 10))

	var got upgradeResult
	r := api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/change-plan", map[string]any{"plan_id": "business_monthly"},
		withHeader("Idempotency-Key", "upgrade-1"))
	r.decode(t, &got)
	if got.Subscription.PlanID != "business_monthly" || got.Upgrade == nil || got.Upgrade.Status != "completed" ||
		got.Upgrade.Amount != got.Proration.Total || got.Upgrade.ChargeID == "" {
		t.Fatalf("paid upgrade answered %s", r.body)
	}
	// A replay answers with the same saga, charging nothing more.
	replay := api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/change-plan", map[string]any{"plan_id": "business_monthly"},
		withHeader("Idempotency-Key", "upgrade-1"))
	var again upgradeResult
	replay.decode(t, &again)
	if replay.header.Get("Idempotent-Replayed") != "true" || again.Upgrade == nil || again.Upgrade.ID != got.Upgrade.ID {
		t.Errorf("replay answered %s", replay.body)
	}
	var saga struct {
		Status    string `json:"status"`
		InvoiceID string `json:"invoice_id"`
	}
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+s.ID+"/upgrades/"+got.Upgrade.ID, nil).decode(t, &saga)
	if saga.Status != "completed" || saga.InvoiceID != got.Upgrade.InvoiceID {
		t.Errorf("GET upgrade: %+v", saga)
	}
	if r := api.do("GET", "/v1/subscriptions/"+uuid.NewString()+"/upgrades/"+got.Upgrade.ID, nil); r.status != http.StatusNotFound {
		t.Errorf("an upgrade under another subscription: status %d, want 404", r.status)
	}
	charges := api.charges("cus_test")
	if len(charges) != 2 || charges[1] != got.Proration.Total {
		t.Errorf("charges %v, want the first invoice and one upgrade charge of %d", charges, got.Proration.Total)
	}
}

// TestPaidChangeReplaysTheFirstAnswer: a replayed paid change answers with the subscription as
// the change left it, like any other replayed command, not as later commands made it.
func TestPaidChangeReplaysTheFirstAnswer(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 2)
	api.setClock(testStart.AddDate(0, 0, 10))
	body := map[string]any{"seats": 5}
	var first upgradeResult
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", body,
		withHeader("Idempotency-Key", "seats-up")).decode(t, &first)
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", map[string]any{"seats": 3})

	var replayed upgradeResult
	r := api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/seats", body, withHeader("Idempotency-Key", "seats-up"))
	r.decode(t, &replayed)
	if r.header.Get("Idempotent-Replayed") != "true" || replayed.Subscription.Seats != 5 ||
		replayed.Subscription.Version != first.Subscription.Version {
		t.Errorf("replay answered seats %d at version %d, want the first answer's seats 5 at version %d",
			replayed.Subscription.Seats, replayed.Subscription.Version, first.Subscription.Version)
	}
}

func TestDeclinedUpgradeAnswers402AndChangesNothing(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("pro_monthly", 2)
	api.setClock(testStart) // the first invoice is paid with the card it was created with
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+s.ID+"/payment-method", map[string]any{"payment_method": "pm_card_insufficient_funds"})
	api.setClock(testStart.AddDate(0, 0, 10))

	r := api.do("POST", "/v1/subscriptions/"+s.ID+"/change-plan", map[string]any{"plan_id": "business_monthly"})
	if r.status != http.StatusPaymentRequired {
		t.Fatalf("status %d, want 402: %s", r.status, r.body)
	}
	p := r.problem(t)
	if p.Type != "/problems/payment-declined" || p.DeclineCode != domain.DeclineInsufficientFunds || p.UpgradeID == "" {
		t.Errorf("problem %+v", p)
	}
	var after subscription
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+s.ID+"?consistent=true", nil).decode(t, &after)
	if after.PlanID != "pro_monthly" || after.Seats != 2 {
		t.Errorf("after a declined upgrade: %s × %d", after.PlanID, after.Seats)
	}
	if charges := api.charges("cus_test"); len(charges) != 1 {
		t.Errorf("charges %v: the declined upgrade charged", charges)
	}
}

func TestPaymentMethodValidation(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	s := api.create("starter_monthly", 1)
	for _, bad := range []string{`{}`, `{"payment_method": ""}`, `{"payment_method": "card"}`, `{"payment_method": "pm_CARD"}`} {
		before := api.eventCount()
		r := api.do("POST", "/v1/subscriptions/"+s.ID+"/payment-method", bad)
		if r.status != http.StatusUnprocessableEntity || api.eventCount() != before {
			t.Errorf("%s: status %d, %d events appended", bad, r.status, api.eventCount()-before)
		}
	}
	if r := api.do("POST", "/v1/subscriptions/"+s.ID+"/payment-method", `{"payment_method": "pm_card_ok"}`); r.status != http.StatusUnprocessableEntity || r.problem(t).Type != "/problems/no-change" {
		t.Errorf("the same method again: %d %s", r.status, r.body)
	}
	if r := api.do("POST", "/v1/subscriptions", map[string]any{"customer_id": "c", "plan_id": "pro_monthly", "seats": 1, "payment_method": "visa"}); r.status != http.StatusUnprocessableEntity {
		t.Errorf("create with a bad payment method: %d", r.status)
	}
}

// TestTestClockRunsTheBillingThatCameDue: moving the test clock a year renews a monthly
// subscription 12 times, each invoice paid, and dunning takes a declined one to cancellation.
func TestTestClockRunsTheBillingThatCameDue(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	paying := api.create("pro_monthly", 3)
	var declined subscription
	api.must(http.StatusCreated, "POST", "/v1/subscriptions", map[string]any{"customer_id": "cus_declined",
		"plan_id": "starter_monthly", "seats": 1, "trial_days": 0, "payment_method": "pm_card_declined"}).decode(t, &declined)

	var clock struct {
		Processed *int `json:"processed"`
	}
	api.must(http.StatusOK, "POST", "/v1/test/clock", map[string]any{"now": testStart.AddDate(1, 0, 0)},
		withKey(api.keys["admin"])).decode(t, &clock)
	if clock.Processed == nil || *clock.Processed < 12 {
		t.Errorf("the move worked through %v items, want the year's renewals and payments", clock.Processed)
	}
	var s subscription
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+paying.ID+"?consistent=true", nil).decode(t, &s)
	if s.Status != "active" || s.CurrentPeriodEnd.Format("2006-01-02") != "2027-02-28" {
		t.Errorf("after a year: %s until %s", s.Status, s.CurrentPeriodEnd)
	}
	if charges := api.charges("cus_test"); len(charges) != 13 {
		t.Errorf("%d charges in a year, want 13", len(charges))
	}
	api.must(http.StatusOK, "GET", "/v1/subscriptions/"+declined.ID+"?consistent=true", nil).decode(t, &s)
	if s.Status != "canceled" {
		t.Errorf("declined card after a year: %s, want canceled", s.Status)
	}
	events, err := eventstore.Load(context.Background(), api.db, uuid.MustParse(declined.ID), eventstore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := eventstore.DecodeEvent(events[len(events)-1])
	if c, ok := last.(domain.Canceled); !ok || c.Reason != domain.CancelReasonNonpayment {
		t.Errorf("last event %#v, want canceled for nonpayment", last)
	}
}

// charges lists the amounts the sandbox gateway charged a customer successfully, in order.
func (api *testAPI) charges(customer string) []int64 {
	api.t.Helper()
	rows, err := api.db.Query(context.Background(),
		`SELECT amount FROM sandbox_charges WHERE customer_id = $1 AND status = 'succeeded' ORDER BY created_at, id`, customer)
	if err != nil {
		api.t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var a int64
		if err := rows.Scan(&a); err != nil {
			api.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}
