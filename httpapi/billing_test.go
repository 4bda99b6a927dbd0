package httpapi_test

import (
	"context"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
	"github.com/billing-oss/billing/eventstore"
	"github.com/billing-oss/billing/internal/testenv"
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

// TestBillingFlowsAppearConsistentlyInTheReadModels runs renewals, a paid upgrade, a credit, a
// trial conversion and dunning to cancellation through the API, projects the whole log, and checks
// every read model against an independent fold of the store: each invoice as listed equals the
// invoice folded from its stream, the dashboard's MRR and revenue equal sums over the folds, and
// each customer's entitlements are the union of its live subscriptions' features.
func TestBillingFlowsAppearConsistentlyInTheReadModels(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t)
	ctx := context.Background()
	create := func(customer, plan string, seats, trialDays int, pm string) subscription {
		t.Helper()
		var s subscription
		api.must(http.StatusCreated, "POST", "/v1/subscriptions", map[string]any{"customer_id": customer, "plan_id": plan,
			"seats": seats, "trial_days": trialDays, "payment_method": pm}).decode(t, &s)
		return s
	}
	up := create("cus_up", "pro_monthly", 2, 0, "pm_card_ok")
	down := create("cus_down", "business_monthly", 5, 0, "pm_card_ok")
	create("cus_trial", "pro_yearly", 3, 14, "pm_card_ok")
	create("cus_dunned", "starter_monthly", 1, 0, "pm_card_declined")
	api.setClock(testStart.AddDate(0, 0, 10))
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+up.ID+"/change-plan", map[string]any{"plan_id": "business_monthly"})
	api.must(http.StatusOK, "POST", "/v1/subscriptions/"+down.ID+"/seats", map[string]any{"seats": 2})
	api.setClock(testStart.AddDate(0, 3, 0))
	projectAll(t, api.db, testenv.WholeLog(t, api.db))

	// Invoices: the list (read model) equals each invoice's own fold (GET /v1/invoices/{id}).
	var subs struct {
		Data []subscription `json:"data"`
	}
	api.must(http.StatusOK, "GET", "/v1/subscriptions?limit=100", nil).decode(t, &subs)
	var invoiced, collected, mrr int64
	statuses := map[string]int{}
	for _, s := range subs.Data {
		var list struct {
			Data []invoice `json:"data"`
		}
		api.must(http.StatusOK, "GET", "/v1/subscriptions/"+s.ID+"/invoices", nil).decode(t, &list)
		for _, listed := range list.Data {
			var folded invoice
			api.must(http.StatusOK, "GET", "/v1/invoices/"+listed.ID, nil).decode(t, &folded)
			if !reflect.DeepEqual(listed, folded) {
				t.Errorf("invoice %s listed as\n%s\nfolds to\n%s", listed.Number, show(listed), show(folded))
			}
			invoiced += folded.Total
			collected += folded.AmountPaid
			statuses[folded.Status]++
		}
		sub, _, err := eventstore.LoadSubscription(ctx, api.db, uuid.MustParse(s.ID), eventstore.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != sub.Version || s.MRR != sub.MRR() || s.Status != string(sub.Status) {
			t.Errorf("subscription %s: view v%d %s MRR %d, fold v%d %s MRR %d", s.ID, s.Version, s.Status, s.MRR, sub.Version, sub.Status, sub.MRR())
		}
		mrr += sub.MRR()

		var ent struct {
			Features []string `json:"features"`
		}
		api.must(http.StatusOK, "GET", "/v1/customers/"+sub.CustomerID+"/entitlements", nil).decode(t, &ent)
		want := []string{}
		if sub.Status == domain.StatusActive || sub.Status == domain.StatusTrialing {
			want = slices.Sorted(slices.Values(sub.Plan.Features))
		}
		if !slices.Equal(ent.Features, want) {
			t.Errorf("%s (%s on %s): entitlements %v, want %v", sub.CustomerID, sub.Status, sub.Plan.PlanID, ent.Features, want)
		}
	}
	if statuses["paid"] < 8 || statuses["uncollectible"] != 1 {
		t.Errorf("invoice statuses %v: want renewals paid and the dunned one uncollectible", statuses)
	}

	var summary struct {
		MRR int64 `json:"mrr"`
	}
	api.must(http.StatusOK, "GET", "/v1/dashboard/summary?currency=USD", nil).decode(t, &summary)
	if summary.MRR != mrr {
		t.Errorf("dashboard MRR %d, folds %d", summary.MRR, mrr)
	}
	var revenue struct {
		Currencies []struct {
			Currency string `json:"currency"`
			Totals   struct {
				Invoiced  int64 `json:"invoiced"`
				Collected int64 `json:"collected"`
			} `json:"totals"`
		} `json:"currencies"`
	}
	api.must(http.StatusOK, "GET", "/v1/dashboard/revenue?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z&interval=month&currency=USD",
		nil).decode(t, &revenue)
	if len(revenue.Currencies) != 1 || revenue.Currencies[0].Totals.Collected != collected ||
		revenue.Currencies[0].Totals.Invoiced != invoiced {
		t.Errorf("revenue %+v; the invoices' folds say invoiced %d, collected %d", revenue, invoiced, collected)
	}
	if got := api.charges("cus_up"); len(got) != 5 {
		t.Errorf("cus_up charges %v: want the first period, the upgrade and three renewals", got)
	}
}
